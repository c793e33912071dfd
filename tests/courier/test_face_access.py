"""Face-scan pickup and sender drop-off with real dlib on real photos, through the cabinet
link's entry point (face_scan frames) and the Celery task (eager here; the end-to-end test
runs a real worker)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.utils import timezone
from PIL import Image

from cabinet_agent import protocol
from cabinets.models import CabinetCommand, Compartment
from cabinets.services.commands import command_mark_sent
from core.actors import Actor
from courier.codes import pickup_code_hash
from courier.models import AccessAttempt, Parcel, ParcelDirection, ParcelStatus
from courier.services.parcels import parcel_announce, parcel_transition
from tests.courier.conftest import cabinet_says, door, results, unlocks
from tests.courier.faces import enroll, verify_real_id
from tests.factories import IdentityFactory, ParcelFactory
from tests.identity.faces import face_bytes, requires_faces

pytestmark = [pytest.mark.django_db, requires_faces]


def _jpeg(photo: str, *, darken: float = 1.0, max_side: int = 640) -> bytes:
    image = Image.open(io.BytesIO(face_bytes(photo))).convert("RGB")
    image.thumbnail((max_side, max_side))
    if darken != 1.0:
        image = Image.fromarray((np.asarray(image) * darken).astype(np.uint8))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _scan(
    cabinet, photo: str, *, purpose: str = "pickup", light_on: bool = False, darken: float = 1.0
) -> None:  # type: ignore[no-untyped-def]
    cabinet_says(
        cabinet,
        protocol.make_face_scan(
            purpose=purpose,
            image=_jpeg(photo, darken=darken),
            light_on=light_on,
            taken_at=protocol.now_ms(),
        ),
    )


def _ready(cabinet, carrier, recipient, label: str) -> Parcel:  # type: ignore[no-untyped-def]
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


# The enrollment shot at another size: as close as a scan a moment after enrolling (0.04 at
# 10 jitters), so the door opens on the face alone (open threshold 0.30).
OBAMA_CLEAR = "examples/obama-720p.jpg"


@pytest.fixture
def two_recipients(cabinet, carrier, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    obama = enroll(
        IdentityFactory(name="Obama"),
        "examples/obama.jpg",
        capture=django_capture_on_commit_callbacks,
    )
    biden = enroll(
        IdentityFactory(name="Biden"),
        "examples/biden.jpg",
        capture=django_capture_on_commit_callbacks,
    )
    return _ready(cabinet, carrier, obama, "A01"), _ready(cabinet, carrier, biden, "A02")


def test_a_recipients_face_opens_only_their_compartment_and_closing_it_completes_the_pickup(
    cabinet, two_recipients, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    obama_parcel, biden_parcel = two_recipients
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, OBAMA_CLEAR)
    [answer] = results(pushes, "face_result")
    assert answer["outcome"] == "unlocking" and "A01" in answer["message"]
    assert [c["compartment"] for c in unlocks(pushes)] == ["A01"]
    # protocol §3: the face_result comes first, the signed unlock it announces follows
    kinds = [m["frame"]["type"] if m["type"] == "link.send" else m["type"] for _, m in pushes]
    assert kinds == ["face_result", "command.deliver"]
    attempt = AccessAttempt.objects.get(method="face")
    assert attempt.success and attempt.identity_id == obama_parcel.recipient_id
    assert attempt.distance is not None and attempt.distance < attempt.threshold
    assert (
        attempt.second_distance is not None
        and attempt.second_distance - attempt.distance >= attempt.margin
    )
    with django_capture_on_commit_callbacks(execute=True):
        door(cabinet, "A01", "opened")
        door(cabinet, "A01", "closed")
    assert Parcel.objects.get(pk=obama_parcel.pk).status == ParcelStatus.PICKED_UP
    assert Parcel.objects.get(pk=biden_parcel.pk).status == ParcelStatus.READY


def test_another_persons_face_opens_nothing(
    cabinet, two_recipients, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, "examples/knn_examples/train/kit_harington/john1.jpeg")
    assert results(pushes, "face_result")[0]["outcome"] == "no_match"
    assert not unlocks(pushes)
    attempt = AccessAttempt.objects.get(method="face")
    assert not attempt.success and attempt.distance > attempt.threshold


def test_the_margin_rule_refuses_when_two_candidates_are_equally_close(
    cabinet, carrier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    # The same face enrolled under two identities (say, twins): the face alone opens for no
    # one; the door policy would ask the nearest one's phone digits, which a single-frame
    # cabinet (protocol 1.0/1.1) cannot, so it is refused.
    first = enroll(
        IdentityFactory(), "examples/obama.jpg", capture=django_capture_on_commit_callbacks
    )
    second = enroll(
        IdentityFactory(), "examples/obama-720p.jpg", capture=django_capture_on_commit_callbacks
    )
    _ready(cabinet, carrier, first, "A01")
    _ready(cabinet, carrier, second, "A02")
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, "examples/obama-1080p.jpg")
    assert results(pushes, "face_result")[0]["outcome"] == "no_match"
    assert not unlocks(pushes)
    attempt = AccessAttempt.objects.get(method="face")
    assert attempt.distance < 0.1 and attempt.second_distance - attempt.distance < attempt.margin
    assert attempt.detail.startswith("no confirm step in this protocol version; single frame")
    assert "not enough to open on the face alone" in attempt.detail


def test_a_single_still_in_the_grey_zone_opens_nothing_on_a_single_frame_cabinet(
    cabinet, two_recipients, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    """Another photo of the recipient, years apart: within the confirm threshold but not the
    open one (0.37 at 10 jitters). A 1.2 cabinet would ask for the phone digits; a
    single-frame scan cannot confirm, so the door policy's confirm is a refusal."""
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, "examples/obama2.jpg")
    assert results(pushes, "face_result")[0]["outcome"] == "no_match"
    assert not unlocks(pushes)
    attempt = AccessAttempt.objects.get(method="face")
    assert not attempt.success and attempt.distance < 0.38
    assert attempt.detail.startswith("no confirm step in this protocol version")


def test_a_scan_in_the_dark_asks_for_the_light_then_for_a_retake(
    cabinet, two_recipients, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, "examples/obama2.jpg", darken=0.02)
        _scan(cabinet, "examples/obama2.jpg", darken=0.02, light_on=True)
    outcomes = [r["outcome"] for r in results(pushes, "face_result")]
    assert outcomes == ["retake_light_on", "retake"]
    assert "dark" in results(pushes, "face_result")[1]["message"].lower()
    assert not unlocks(pushes)


def test_repeated_face_failures_pause_face_scans_but_the_code_still_works(
    cabinet, two_recipients, pushes, settings, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    settings.FACE_LOCKOUT_ATTEMPTS = 2
    stranger = "examples/knn_examples/train/rose_leslie/img1.jpg"
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, stranger)
        _scan(cabinet, stranger)
        _scan(cabinet, "examples/obama2.jpg")
        cabinet_says(cabinet, protocol.make_code_entry(code="123456", entered_at=protocol.now_ms()))
    assert [r["outcome"] for r in results(pushes, "face_result")] == [
        "no_match",
        "no_match",
        "locked_out",
    ]
    assert results(pushes, "code_result")[0]["outcome"] == "unlocking"


def test_a_cabinet_without_enrolled_recipients_points_to_the_code(
    cabinet, carrier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    _ready(cabinet, carrier, IdentityFactory(), "A01")
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, "examples/obama2.jpg")
    assert results(pushes, "face_result")[0]["outcome"] == "use_code"


# --- Sender drop-off ---------------------------------------------------------------------------


@pytest.fixture
def dropoff(cabinet, carrier, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    sender = enroll(
        IdentityFactory(name="Obama"),
        "examples/obama.jpg",
        capture=django_capture_on_commit_callbacks,
    )
    parcel = parcel_announce(
        carrier=carrier,
        tracking_number="OUT-1",
        recipient=IdentityFactory(),
        sender=sender,
        size="S",
        cabinet=cabinet,
        direction=ParcelDirection.DROPOFF,
        actor=Actor.system("test"),
    )
    return sender, parcel


def test_a_verified_sender_drops_off_with_a_face_scan(
    cabinet, dropoff, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    sender, parcel = dropoff
    verify_real_id(
        sender,
        "tests/test_images/obama3.jpg",
        capture=django_capture_on_commit_callbacks,
    )
    assert sender.real_name_verified_at is not None
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, "examples/knn_examples/test/obama1.jpg", purpose="dropoff")
    [answer] = results(pushes, "face_result")
    assert answer["outcome"] == "unlocking", answer
    [command] = unlocks(pushes)
    with django_capture_on_commit_callbacks(execute=True):
        door(cabinet, command["compartment"], "closed")
    parcel.refresh_from_db()
    assert parcel.status == ParcelStatus.DROPPED_OFF and parcel.sender_id == sender.pk
    attempt = AccessAttempt.objects.get(method="face", success=True)
    assert attempt.purpose == "dropoff" and attempt.distance <= attempt.threshold


def test_a_drop_off_is_refused_for_an_unverified_sender(
    cabinet, dropoff, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, "examples/knn_examples/test/obama1.jpg", purpose="dropoff")
    answer = results(pushes, "face_result")[0]
    assert answer["outcome"] == "no_match" and "verif" in answer["message"].lower()
    assert not unlocks(pushes)


def test_a_drop_off_is_refused_for_someone_else(
    cabinet, dropoff, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    sender, _ = dropoff
    verify_real_id(
        sender,
        "tests/test_images/obama3.jpg",
        capture=django_capture_on_commit_callbacks,
    )
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, "examples/knn_examples/train/biden/biden2.jpg", purpose="dropoff")
    assert results(pushes, "face_result")[0]["outcome"] == "no_match"
    assert not unlocks(pushes)


def _scan_frame(photo: str) -> dict:  # type: ignore[type-arg]
    return protocol.make_face_scan(
        purpose="pickup", image=_jpeg(photo), light_on=False, taken_at=protocol.now_ms()
    )


def _run_task_again(cabinet, frame) -> str:  # type: ignore[no-untyped-def]
    """What a second worker does with the same task message (late acknowledgement)."""
    from courier.tasks import face_scan_task

    taken_at = datetime.fromtimestamp(frame["taken_at"] / 1000, tz=UTC).isoformat()
    args = (cabinet.pk, frame["id"], frame["purpose"], frame["image"], False, taken_at)
    return face_scan_task.apply(args=args).get()


def test_a_face_scan_task_run_again_opens_nothing_more_and_repeats_its_answer(
    cabinet, two_recipients, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    obama_parcel, _ = two_recipients
    frame = _scan_frame(OBAMA_CLEAR)
    with django_capture_on_commit_callbacks(execute=True):
        cabinet_says(cabinet, frame)
    [unlock] = unlocks(pushes)
    assert command_mark_sent(command_id=unlock["id"])  # the cabinet's connection sent it
    with django_capture_on_commit_callbacks(execute=True):
        assert _run_task_again(cabinet, frame) == "answered"
    assert [r["outcome"] for r in results(pushes, "face_result")] == ["unlocking", "unlocking"]
    assert unlocks(pushes) == [unlock]
    assert CabinetCommand.objects.filter(compartment=obama_parcel.compartment).count() == 1
    assert AccessAttempt.objects.filter(event_id=frame["id"]).count() == 1


def test_a_face_scan_task_run_again_after_its_worker_died_before_pushing_sends_the_unlock(
    cabinet, two_recipients, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    """The worker committed the attempt and the unlock, then died before its after-commit
    pushes: the rerun (late acknowledgement) repeats the answer, then pushes that unlock."""
    obama_parcel, _ = two_recipients
    frame = _scan_frame(OBAMA_CLEAR)
    with django_capture_on_commit_callbacks(execute=False) as dropped:  # died with the worker
        assert _run_task_again(cabinet, frame) == "unlocking"
    assert dropped and pushes == []
    [stored] = CabinetCommand.objects.filter(compartment=obama_parcel.compartment)
    with django_capture_on_commit_callbacks(execute=True):
        assert _run_task_again(cabinet, frame) == "answered"
    assert [m["type"] for _, m in pushes] == ["link.send", "command.deliver"]
    assert [r["outcome"] for r in results(pushes, "face_result")] == ["unlocking"]
    assert [c["id"] for c in unlocks(pushes)] == [str(stored.pk)]
    assert CabinetCommand.objects.filter(compartment=obama_parcel.compartment).count() == 1


def test_two_runs_of_one_face_scan_at_once_open_the_door_once(
    cabinet, two_recipients, pushes, django_capture_on_commit_callbacks, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The second run started before the first recorded the scan (a redelivery racing a
    slow worker): its doors and answer are rolled back, and it repeats the first answer."""
    from courier.access import faces as access

    obama_parcel, _ = two_recipients
    frame = _scan_frame(OBAMA_CLEAR)
    with django_capture_on_commit_callbacks(execute=True):
        cabinet_says(cabinet, frame)
    checks: list[bool] = []
    answered_again = access.face_answered_again

    def late_check(**kwargs):  # type: ignore[no-untyped-def]
        if not checks:  # the early check ran before the first run's commit
            checks.append(False)
            return False
        checks.append(answered_again(**kwargs))
        return checks[-1]

    monkeypatch.setattr(access, "face_answered_again", late_check)
    with django_capture_on_commit_callbacks(execute=True):
        assert _run_task_again(cabinet, frame) == "answered"
    assert checks == [False, True]
    assert [r["outcome"] for r in results(pushes, "face_result")] == ["unlocking", "unlocking"]
    # One command (pushed again while no connection has sent it: a cabinet runs an id once).
    assert {(c["id"], c["compartment"]) for c in unlocks(pushes)} == {
        (str(CabinetCommand.objects.get(compartment=obama_parcel.compartment).pk), "A01")
    }
    assert CabinetCommand.objects.filter(compartment=obama_parcel.compartment).count() == 1
    assert AccessAttempt.objects.filter(event_id=frame["id"]).count() == 1
