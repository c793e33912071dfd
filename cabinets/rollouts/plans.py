"""Wave plans: how many cabinets each wave of a rollout reaches. Pure functions."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from django.utils.translation import gettext

from core.errors import ApplicationError

DEFAULT_WAVE_PLAN = ("5", "1%", "10%", "50%", "100%")
_WAVE_SPEC = re.compile(r"^(?:(?P<count>\d+)|(?P<pct>\d+(?:\.\d+)?)%)$")


def wave_plan_parse(text: str | Iterable[str]) -> list[str]:
    """ "5, 1%, 10%, 50%, 100%" -> ["5", "1%", "10%", "50%", "100%"]; the last wave always
    covers every target (a plan that stops short gets a final "100%")."""
    items = text.replace(";", ",").split(",") if isinstance(text, str) else list(text)
    plan = [item.strip().replace(" ", "") for item in items if item.strip()]
    if not plan:
        raise ApplicationError(
            gettext("A rollout needs at least one wave."), code="invalid_wave_plan"
        )
    for spec in plan:
        match = _WAVE_SPEC.match(spec)
        if match is None:
            raise ApplicationError(
                gettext("Wave %(spec)r is neither a count (5) nor a percentage (10%%).")
                % {"spec": spec},
                code="invalid_wave_plan",
            )
        if match["pct"] is not None and not 0 < float(match["pct"]) <= 100:
            raise ApplicationError(
                gettext("Wave %(spec)r: a percentage is between 0 and 100.") % {"spec": spec},
                code="invalid_wave_plan",
            )
        if match["count"] is not None and int(match["count"]) == 0:
            raise ApplicationError(
                gettext("A wave of 0 cabinets is empty."), code="invalid_wave_plan"
            )
    if plan[-1] != "100%":
        plan.append("100%")
    return plan


def wave_sizes(plan: list[str], total: int) -> list[int]:
    """Sizes of the waves for `total` targets; the plan is cumulative and never shrinks."""
    sizes, reached = [], 0
    for spec in plan:
        match = _WAVE_SPEC.match(spec)
        assert match is not None  # validated by wave_plan_parse
        if match["count"] is not None:
            cumulative = int(match["count"])
        else:
            cumulative = math.ceil(total * float(match["pct"]) / 100)
        cumulative = max(reached, min(cumulative, total))
        sizes.append(cumulative - reached)
        reached = cumulative
    return sizes
