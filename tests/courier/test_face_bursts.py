# ruff: noqa: RUF001
"""Face pickup by liveness challenge (protocol 1.2) through the link's entry point and the
Celery task (eager here; tests/live/test_face_liveness_live.py runs real processes): real
dlib on a GRID clip of a person enrolled from two other frames of the same clip."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.models import CabinetCommand, CabinetMessage, Compartment
from core.actors import Actor
from courier.access import face_bursts
from courier.codes import pickup_code_hash
from courier.models import AccessAttempt, FaceChallenge, FaceFrameSeen, ParcelStatus
from courier.services.parcels import parcel_transition
from identity import services as identity_services
from identity.services import consent_give, enrollment_photo_submit
from tests.courier.conftest import cabinet_says, results, unlocks
from tests.factories import IdentityFactory, ParcelFactory
from tests.identity.clips import (
    clip_burst,
    clip_frames,
    grid_path,
    held_print,
    jpeg,
    session_encoder,
    still_burst,
)
from tests.identity.faces import requires_faces

pytestmark = [pytest.mark.django_db, requires_faces]
CLIP = grid_path("bbaf2n")  # blinks at frames 42-46 (SOURCES.md)
BLINK_FRAMES = range(28, 60, 2)
PHONE = "+8613800004321"


@pytest.fixture(autouse=True)
def _liveness(settings, monkeypatch):  # type: ignore[no-untyped-def]
    # GRID clips are frontal and still: a deployment may keep only blink (docs/identity.md).
    settings.FACE_CHALLENGE_ACTIONS = ["blink"]
    settings.FACE_ALLOW_SINGLE_FRAME = False
    monkeypatch.setattr(identity_services, "liveness_encoder", session_encoder)


@pytest.fixture
def recipient(django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    person = IdentityFactory(name="GRID bbaf2n", phone=PHONE)
    consent_give(identity=person)
    frames, _ = clip_frames(CLIP)
    for index in (0, 70):
        with django_capture_on_commit_callbacks(execute=True):
            enrollment_photo_submit(
                identity=person, data=jpeg(frames[index]), actor=Actor.system("test")
            )
    return person


@pytest.fixture
def parcel(cabinet, carrier, recipient):  # type: ignore[no-untyped-def]
    return _ready(cabinet, carrier, recipient, "A01")


def _ready(cabinet, carrier, recipient, label: str):  # type: ignore[no-untyped-def]
    compartment = Compartment.objects.get(cabinet=cabinet, label=label)
    parcel = ParcelFactory(carrier=carrier, cabinet=cabinet, recipient=recipient)
    return parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=Actor.system("test"),
        changes={
            "compartment": compartment,
            "deposited_at": timezone.now(),
            "pickup_deadline": timezone.now() + timedelta(days=3),
            "pickup_code_hash": pickup_code_hash(parcel_id=parcel.pk, code="123456"),
        },
    )


Say = Callable[[dict[str, Any]], None]


@pytest.fixture
def say(cabinet, django_capture_on_commit_callbacks) -> Say:  # type: ignore[no-untyped-def]
    def send(frame: dict[str, Any]) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            cabinet_says(cabinet, frame)

    return send


def _challenge(say: Say, pushes: list[Any]) -> dict[str, Any]:
    start = protocol.make_face_start(purpose="pickup", at=protocol.now_ms())
    say(start)
    [challenge] = [c for c in results(pushes, "face_challenge") if c["start_id"] == start["id"]]
    return challenge


def _burst(challenge: dict[str, Any], frames: list[Any], *, nonce: str | None = None) -> dict:  # type: ignore[type-arg]
    return protocol.make_face_burst(
        challenge_id=challenge["challenge_id"],
        nonce=nonce or challenge["nonce"],
        frames=[(f.t_ms, f.jpeg) for f in frames],
        light_on=False,
        taken_at=protocol.now_ms(),
    )


def _answer(pushes: list[Any], event_id: str) -> dict[str, Any]:
    [answer] = [r for r in results(pushes, "face_result") if r["scan_id"] == event_id]
    return answer


def test_a_live_burst_of_the_waiting_recipient_opens_the_door(cabinet, parcel, say, pushes) -> None:  # type: ignore[no-untyped-def]
    challenge = _challenge(say, pushes)
    assert challenge["actions"] == ["blink"] and challenge["message"] == "Please blink."
    burst = _burst(challenge, clip_burst(CLIP, BLINK_FRAMES))
    say(burst)
    assert _answer(pushes, burst["id"])["outcome"] == "unlocking"
    assert [c["compartment"] for c in unlocks(pushes)] == ["A01"]
    attempt = AccessAttempt.objects.get(event_id=burst["id"])
    assert attempt.success and attempt.identity_id == parcel.recipient_id
    assert attempt.distance is not None and attempt.distance <= 0.44
    assert attempt.detail.startswith("live")
    # nothing of the frames, the nonce or a picture is stored; only the frames' hashes
    stored = CabinetMessage.objects.get(pk=burst["id"]).payload
    assert not {"frames", "nonce"} & set(stored)
    assert FaceFrameSeen.objects.filter(burst_id=burst["id"]).count() == len(BLINK_FRAMES)
    assert FaceChallenge.objects.get(pk=challenge["challenge_id"]).nonce_hash != challenge["nonce"]


def test_a_photo_of_the_recipient_held_up_to_the_camera_opens_nothing(
    cabinet, parcel, say, pushes
) -> None:  # type: ignore[no-untyped-def]
    frames, _ = clip_frames(CLIP)
    challenge = _challenge(say, pushes)
    burst = _burst(challenge, still_burst(held_print(frames[0], count=12)))
    say(burst)
    answer = _answer(pushes, burst["id"])
    assert (answer["outcome"], answer["message"]) == ("retake", "Please blink.")
    assert unlocks(pushes) == []
    assert AccessAttempt.objects.get(event_id=burst["id"]).detail.startswith("no_blink")


def test_a_burst_replayed_with_the_same_nonce_is_refused(cabinet, parcel, say, pushes) -> None:  # type: ignore[no-untyped-def]
    challenge = _challenge(say, pushes)
    frames = clip_burst(CLIP, BLINK_FRAMES)
    say(_burst(challenge, frames))
    replay = _burst(challenge, frames)  # a new event id, the same challenge and nonce
    say(replay)
    assert _answer(pushes, replay["id"])["outcome"] == "no_match"
    assert AccessAttempt.objects.get(event_id=replay["id"]).detail == "challenge_used"
    assert len(unlocks(pushes)) == 1


def test_a_burst_reusing_frames_under_a_new_challenge_is_refused(
    cabinet, carrier, recipient, parcel, say, pushes
) -> None:  # type: ignore[no-untyped-def]
    frames = clip_burst(CLIP, BLINK_FRAMES)
    first = _burst(_challenge(say, pushes), frames[:14])
    say(first)
    assert _answer(pushes, first["id"])["outcome"] == "unlocking"
    # the door closes, a new parcel waits: a recorded burst must still not open it
    cabinet_says(cabinet, protocol.make_door_event(compartment="A01", event="closed", at=1))
    _ready(cabinet, carrier, recipient, "A02")
    second = _burst(_challenge(say, pushes), frames[2:])
    say(second)
    assert _answer(pushes, second["id"])["outcome"] == "no_match"
    assert AccessAttempt.objects.get(event_id=second["id"]).detail == "frames_reused"


def test_a_burst_with_a_wrong_nonce_or_for_an_unknown_challenge_is_refused(
    cabinet, parcel, say, pushes
) -> None:  # type: ignore[no-untyped-def]
    challenge = _challenge(say, pushes)
    frames = clip_burst(CLIP, BLINK_FRAMES)
    forged = _burst(challenge, frames, nonce=secrets.token_urlsafe(24))
    say(forged)
    unknown = _burst({**challenge, "challenge_id": protocol.new_id()}, frames)
    say(unknown)
    details = [AccessAttempt.objects.get(event_id=b["id"]).detail for b in (forged, unknown)]
    assert details == ["bad_nonce", "unknown_challenge"]
    assert unlocks(pushes) == []


def test_an_expired_challenge_is_answered_retake(cabinet, parcel, say, pushes) -> None:  # type: ignore[no-untyped-def]
    challenge = _challenge(say, pushes)
    FaceChallenge.objects.filter(pk=challenge["challenge_id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    burst = _burst(challenge, clip_burst(CLIP, BLINK_FRAMES))
    say(burst)
    assert _answer(pushes, burst["id"])["outcome"] == "retake"
    assert unlocks(pushes) == []


def test_a_single_frame_scan_answers_use_code_unless_the_operator_allows_it(
    cabinet, parcel, say, pushes, settings
) -> None:  # type: ignore[no-untyped-def]
    frames, _ = clip_frames(CLIP)
    scan = protocol.make_face_scan(
        purpose="pickup", image=jpeg(frames[30]), light_on=False, taken_at=protocol.now_ms()
    )
    say(scan)
    answer = _answer(pushes, scan["id"])
    assert answer["outcome"] == "use_code" and "software version" in answer["message"]
    assert unlocks(pushes) == []
    settings.FACE_ALLOW_SINGLE_FRAME = True
    allowed = protocol.make_face_scan(
        purpose="pickup", image=jpeg(frames[30]), light_on=False, taken_at=protocol.now_ms()
    )
    say(allowed)
    assert _answer(pushes, allowed["id"])["outcome"] == "unlocking"


def test_nobody_waiting_is_answered_use_code_without_a_challenge(cabinet, say, pushes) -> None:  # type: ignore[no-untyped-def]
    start = protocol.make_face_start(purpose="pickup", at=protocol.now_ms())
    say(start)
    assert results(pushes, "face_challenge") == []
    assert _answer(pushes, start["id"])["outcome"] == "use_code"


@pytest.mark.parametrize("seed", range(20))
def test_a_challenge_has_a_turn_whenever_turns_are_allowed(settings, seed: int) -> None:
    import random

    settings.FACE_CHALLENGE_ACTIONS = ["blink", "turn_left", "turn_right"]
    draw = random.Random(seed)
    actions = face_bursts.challenge_actions_draw(draw)  # type: ignore[arg-type]
    assert 1 <= len(actions) <= 2 and len(set(actions)) == len(actions)
    assert {"turn_left", "turn_right"} & set(actions)


# --- the confirm step -----------------------------------------------------------------------


def _confirm(cabinet, say, pushes, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    settings.FACE_DOOR_POLICY_MODE = "always_confirm"
    burst = _burst(_challenge(say, pushes), clip_burst(CLIP, BLINK_FRAMES))
    say(burst)
    asked = _answer(pushes, burst["id"])
    assert asked["outcome"] == "confirm" and "last four digits" in asked["message"]
    assert unlocks(pushes) == []
    return asked


def test_the_right_phone_digits_open_the_door_after_a_confirm(
    cabinet, parcel, say, pushes, settings
) -> None:  # type: ignore[no-untyped-def]
    asked = _confirm(cabinet, say, pushes, settings)
    answer = protocol.make_face_confirm(confirm_id=asked["confirm_id"], digits="4321", at=1)
    say(answer)
    assert _answer(pushes, answer["id"])["outcome"] == "unlocking"
    assert [c["compartment"] for c in unlocks(pushes)] == ["A01"]
    # the answer is pushed before the unlock it announces
    kinds = [m["frame"]["type"] if m["type"] == "link.send" else m["type"] for _, m in pushes]
    assert kinds[-2:] == ["face_result", "command.deliver"]
    assert "digits" not in CabinetMessage.objects.get(pk=answer["id"]).payload
    # one try: a second answer, even right, opens nothing more
    again = protocol.make_face_confirm(confirm_id=asked["confirm_id"], digits="4321", at=2)
    say(again)
    assert _answer(pushes, again["id"])["outcome"] == "no_match"
    assert CabinetCommand.objects.filter(cabinet=cabinet).count() == 1


def test_wrong_phone_digits_lock_face_for_that_parcel_but_not_its_code(
    cabinet, parcel, say, pushes, settings
) -> None:  # type: ignore[no-untyped-def]
    asked = _confirm(cabinet, say, pushes, settings)
    wrong = protocol.make_face_confirm(confirm_id=asked["confirm_id"], digits="1234", at=1)
    say(wrong)
    answer = _answer(pushes, wrong["id"])
    assert answer["outcome"] == "no_match" and "locked" in answer["message"]
    assert unlocks(pushes) == []
    # face is no longer offered for it...
    start = protocol.make_face_start(purpose="pickup", at=protocol.now_ms())
    say(start)
    assert _answer(pushes, start["id"])["outcome"] == "use_code"
    # ...and the pickup code still opens it
    entry = protocol.make_code_entry(code="123456", entered_at=protocol.now_ms())
    say(entry)
    [code] = [r for r in results(pushes, "code_result") if r["entry_id"] == entry["id"]]
    assert code["outcome"] == "unlocking"
    assert [c["compartment"] for c in unlocks(pushes)] == ["A01"]


def test_the_challenge_refusals_and_the_confirm_step_speak_the_cabinet_language(
    cabinet, parcel, say, pushes, settings
) -> None:  # type: ignore[no-untyped-def]
    """Chinese by default in Shanghai: the prompt with the challenge, a refusal from the
    worker (a photo held up), the confirm prompt and the wrong-digits answer. The outcome
    codes stay language-free."""
    settings.CABINET_LANGUAGE_CODE = "zh-hans"
    frames, _ = clip_frames(CLIP)
    challenge = _challenge(say, pushes)
    assert challenge["message"] == "请眨眨眼。"
    burst = _burst(challenge, still_burst(held_print(frames[0], count=12)))
    say(burst)
    assert (_answer(pushes, burst["id"])["outcome"], _answer(pushes, burst["id"])["message"]) == (
        "retake",
        "请眨眨眼。",
    )
    replay = _burst(challenge, clip_burst(CLIP, BLINK_FRAMES))
    say(replay)  # the nonce was used by the first burst
    assert _answer(pushes, replay["id"])["message"] == "刷脸失败：请使用取件码。"

    settings.FACE_DOOR_POLICY_MODE = "always_confirm"
    burst = _burst(_challenge(say, pushes), clip_burst(CLIP, BLINK_FRAMES))
    say(burst)
    asked = _answer(pushes, burst["id"])
    assert (asked["outcome"], asked["message"]) == ("confirm", "请输入您手机号码的后四位。")
    wrong = protocol.make_face_confirm(confirm_id=asked["confirm_id"], digits="1234", at=1)
    say(wrong)
    answer = _answer(pushes, wrong["id"])
    assert answer["outcome"] == "no_match"
    assert answer["message"] == "号码不正确：此包裹的刷脸取件已锁定。 取件码始终可用。"
    assert unlocks(pushes) == []


def test_the_face_pickup_demo_fails_clearly_when_its_clip_is_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=r"not found: the demo needs \.\./shared/faces/video"):
        call_command("demo_face_pickup", clip=str(tmp_path / "missing.mpg"))


def test_old_frame_hashes_and_challenges_are_purged_and_recent_ones_kept(cabinet) -> None:  # type: ignore[no-untyped-def]
    import uuid

    from courier.tasks import face_challenges_purge_task

    now = timezone.now()
    for age_days in (40, 1):
        FaceChallenge.objects.create(
            id=uuid.uuid4(),
            cabinet=cabinet,
            start_id=uuid.uuid4(),
            purpose="pickup",
            nonce_hash="0" * 64,
            actions=["blink"],
            issued_at=now - timedelta(days=age_days),
            expires_at=now - timedelta(days=age_days),
        )
        seen = FaceFrameSeen.objects.create(
            digest=f"{age_days:064d}", burst_id=uuid.uuid4(), cabinet=cabinet
        )
        FaceFrameSeen.objects.filter(pk=seen.pk).update(seen_at=now - timedelta(days=age_days))
    assert face_challenges_purge_task() == 2
    assert FaceFrameSeen.objects.get().digest == f"{1:064d}"
    assert FaceChallenge.objects.count() == 1
