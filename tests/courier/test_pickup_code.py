"""Recipients at the cabinet with their 6-digit code."""

from __future__ import annotations

import pytest

from cabinet_agent import protocol
from cabinets.models import Compartment
from core.actors import Actor
from courier.models import AccessAttempt, Parcel, ParcelEvent, ParcelStatus
from courier.selectors import compartment_use
from courier.services.parcels import parcel_transition
from tests.courier.conftest import cabinet_says, door, results, unlocks

pytestmark = pytest.mark.django_db


def _type(cabinet, code: str) -> None:  # type: ignore[no-untyped-def]
    cabinet_says(cabinet, protocol.make_code_entry(code=code, entered_at=protocol.now_ms()))


def test_the_right_code_opens_the_compartment_and_closing_it_completes_the_pickup(
    cabinet, ready_parcel, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        _type(cabinet, "123456")
    [answer] = results(pushes, "code_result")
    assert answer["outcome"] == "unlocking" and "A01" in answer["message"]
    assert [c["compartment"] for c in unlocks(pushes)] == ["A01"]
    with django_capture_on_commit_callbacks(execute=True):
        door(cabinet, "A01", "opened")
        door(cabinet, "A01", "closed")
    parcel = Parcel.objects.get(pk=ready_parcel.pk)
    assert parcel.status == ParcelStatus.PICKED_UP and parcel.picked_up_at is not None
    # The parcel keeps the compartment it was picked up from; it no longer holds it.
    assert parcel.compartment is not None and parcel.compartment.label == "A01"
    assert (
        compartment_use(compartment_id=Compartment.objects.get(cabinet=cabinet, label="A01").pk)
        == "free"
    )
    attempt = AccessAttempt.objects.get()
    assert attempt.success and attempt.method == "code" and list(attempt.parcels.all()) == [parcel]


def test_a_wrong_code_opens_nothing_and_is_recorded(
    cabinet, ready_parcel, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        _type(cabinet, "654321")
    assert results(pushes, "code_result")[0]["outcome"] == "no_match"
    assert not unlocks(pushes)
    assert not AccessAttempt.objects.get().success


def test_wrong_codes_lock_the_keypad_even_for_the_right_code(
    cabinet, ready_parcel, pushes, settings, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    settings.CODE_LOCKOUT_ATTEMPTS = 3
    with django_capture_on_commit_callbacks(execute=True):
        for wrong in ("111111", "222222", "333333"):
            _type(cabinet, wrong)
        _type(cabinet, "123456")
    assert [r["outcome"] for r in results(pushes, "code_result")] == [
        "no_match",
        "no_match",
        "no_match",
        "locked_out",
    ]
    assert not unlocks(pushes)


def test_the_door_closing_without_an_authorised_opening_picks_up_nothing(
    cabinet, ready_parcel, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        door(cabinet, "A01", "forced")
        door(cabinet, "A01", "closed")
    assert Parcel.objects.get(pk=ready_parcel.pk).status == ParcelStatus.READY


def test_an_expired_parcel_no_longer_opens_with_its_code(
    cabinet, ready_parcel, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    parcel_transition(
        parcel_id=ready_parcel.pk, to_status=ParcelStatus.EXPIRED, actor=Actor.system("t")
    )
    with django_capture_on_commit_callbacks(execute=True):
        _type(cabinet, "123456")
    assert results(pushes, "code_result")[0]["outcome"] == "no_match"


def test_typing_the_code_twice_opens_the_door_once(
    cabinet, ready_parcel, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        _type(cabinet, "123456")
        _type(cabinet, "123456")
    assert len(unlocks(pushes)) == 1
    assert [r["outcome"] for r in results(pushes, "code_result")] == ["unlocking", "unlocking"]


def test_a_replayed_code_entry_is_answered_once(
    cabinet, ready_parcel, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    entry = protocol.make_code_entry(code="123456", entered_at=protocol.now_ms())
    with django_capture_on_commit_callbacks(execute=True):
        cabinet_says(cabinet, entry)
        cabinet_says(cabinet, entry)
    assert len(results(pushes, "code_result")) == 1
    assert ParcelEvent.objects.filter(parcel=ready_parcel).count() == 1
