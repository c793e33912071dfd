"""What every way in shares: the attempt record, lockouts, staleness and the answer."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.utils import timezone, translation

from cabinets.models import CabinetCommand
from cabinets.push import push_after_commit
from cabinets.services.commands import commands_push_after_commit
from courier.models import AccessAttempt, AttemptMethod, Parcel
from courier.selectors import failed_attempts


def in_cabinet_language() -> translation.override:
    """What a cabinet screen shows is in CABINET_LANGUAGE_CODE: cabinets have no browser to
    say which language they want, and the answer comes from a task or the link."""
    return translation.override(settings.CABINET_LANGUAGE_CODE)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def speaks_cabinet_language(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run `func` under `in_cabinet_language()`: every answer a cabinet shows (face_result,
    face_challenge, code_result) is built by a function wearing this, read at call time."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with in_cabinet_language():
            return func(*args, **kwargs)

    return wrapper


def answer_then_open(
    cabinet_id: int, frame: dict[str, Any], commands: Iterable[CabinetCommand] = ()
) -> None:
    """After commit, in this order: the answer (`face_result`, `code_result`,
    `courier_result`), then the unlocks it announces (protocol §3: the unlock follows)."""
    push_after_commit(cabinet_id, {"type": "link.send", "frame": frame})
    commands_push_after_commit(commands)


# Per method: the settings naming how many failures in how many seconds lock it.
_LOCKOUT_SETTINGS: dict[str, tuple[str, str]] = {
    AttemptMethod.CODE: ("CODE_LOCKOUT_ATTEMPTS", "CODE_LOCKOUT_WINDOW_S"),
    AttemptMethod.FACE: ("FACE_LOCKOUT_ATTEMPTS", "FACE_LOCKOUT_WINDOW_S"),
    AttemptMethod.COURIER: ("COURIER_LOCKOUT_ATTEMPTS", "COURIER_LOCKOUT_WINDOW_S"),
}
# Recorded, but not guesses: refusals during a lockout (counting them would extend it without
# end), and a courier asked to choose a carrier.
UNCOUNTED_OUTCOMES = ("locked_out", "carrier_required")


def lockout_subject_courier(*, courier_id: int) -> str:
    return f"courier:{courier_id}"


def lockout_subject_badge(*, carrier: str, badge: str) -> str:
    """A badge no courier has (or an ambiguous one): failures still lock that badge."""
    return f"badge:{carrier}:{badge}"[:80]


def locked_out(
    *, cabinet_id: int, method: str, subject: str | None = None, attempts: int = 0
) -> bool:
    """Whether `subject` (None: everyone at the cabinet) is paused for `method`. After the
    allowed failures within the window, each further failure doubles the pause, from
    ACCESS_LOCKOUT_BACKOFF_S up to the window: a person who mistyped waits seconds, a
    guesser gets a handful of tries an hour. Refusals during a pause are not counted."""
    allowed, window_s = (getattr(settings, name) for name in _LOCKOUT_SETTINGS[method])
    allowed = attempts or allowed
    now = timezone.now()
    failures, last = failed_attempts(
        cabinet_id=cabinet_id,
        method=method,
        subject=subject,
        since=now - timedelta(seconds=window_s),
        uncounted=UNCOUNTED_OUTCOMES,
    )
    if failures < allowed or last is None:
        return False
    pause_s = min(settings.ACCESS_LOCKOUT_BACKOFF_S * 2 ** (failures - allowed), window_s)
    return now < last + timedelta(seconds=pause_s)


def stale(at: datetime | None) -> bool:
    """Older than the interactive lifetime plus the clock skew a cabinet may have (protocol
    §4): a person who typed or looked 60 s ago by a cabinet clock 30 s fast is still there."""
    limit = timedelta(
        seconds=settings.ACCESS_REQUEST_MAX_AGE_S,
        milliseconds=settings.CABINET_MAX_CLOCK_SKEW_MS,
    )
    return at is not None and timezone.now() - at > limit


def attempt_record(
    *,
    cabinet_id: int,
    method: str,
    event_id: str,
    success: bool,
    outcome: str,
    parcels: list[Parcel] | None = None,
    **fields: Any,
) -> AccessAttempt:
    attempt = AccessAttempt.objects.create(
        cabinet_id=cabinet_id,
        method=method,
        event_id=event_id,
        success=success,
        outcome=outcome,
        **fields,
    )
    if parcels:
        attempt.parcels.set(parcels)
    return attempt


def doors(parcels: list[Parcel]) -> str:
    labels = sorted(p.compartment.label for p in parcels if p.compartment is not None)
    return ", ".join(labels)
