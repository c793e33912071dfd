"""Lockouts at the cabinet: a pause that doubles with each further failure, refusals during a
pause not counted again, courier PINs locked per badge (not every courier at the cabinet),
and badges looked up within the courier's carrier (two carriers' C-0001 do not collide)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.hashers import make_password
from django.db.models import F

from cabinet_agent import protocol
from courier.models import AccessAttempt, Parcel, ParcelStatus
from tests.courier.conftest import COURIER_PIN, cabinet_says, results, unlocks
from tests.courier.test_deposit import _announce
from tests.courier.test_pickup_code import _type
from tests.factories import CarrierFactory, CourierFactory

pytestmark = pytest.mark.django_db


def _later(seconds: float) -> None:
    """Time passes for the lockout: every recorded attempt moves into the past."""
    AccessAttempt.objects.update(at=F("at") - timedelta(seconds=seconds))


@pytest.fixture
def fast_lockouts(settings):  # type: ignore[no-untyped-def]
    settings.CODE_LOCKOUT_ATTEMPTS = 3
    settings.COURIER_LOCKOUT_ATTEMPTS = 3
    settings.ACCESS_LOCKOUT_BACKOFF_S = 30
    settings.CODE_LOCKOUT_WINDOW_S = settings.COURIER_LOCKOUT_WINDOW_S = 900


def _code_outcomes(pushes) -> list[str]:  # type: ignore[no-untyped-def]
    return [r["outcome"] for r in results(pushes, "code_result")]


@pytest.mark.usefixtures("ready_parcel")
def test_typing_on_during_a_code_lockout_does_not_extend_it(
    cabinet, pushes, fast_lockouts, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        for wrong in ("111111", "222222", "333333"):
            _type(cabinet, wrong)
        for wrong in ("444444", "555555", "666666", "777777"):  # hammering during the pause
            _type(cabinet, wrong)
        _later(31)  # the first pause is 30 s; counted, the hammering would have made it 8 min
        _type(cabinet, "123456")
    assert _code_outcomes(pushes) == ["no_match"] * 3 + ["locked_out"] * 4 + ["unlocking"]
    assert len(unlocks(pushes)) == 1


@pytest.mark.usefixtures("ready_parcel")
def test_each_failure_after_a_pause_doubles_the_next_pause(
    cabinet, pushes, fast_lockouts, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        for wrong in ("111111", "222222", "333333"):
            _type(cabinet, wrong)
        _later(31)
        _type(cabinet, "444444")  # a 4th counted failure: the pause is now 60 s
        _later(31)
        _type(cabinet, "123456")  # still paused
        _later(30)
        _type(cabinet, "123456")
    assert _code_outcomes(pushes) == ["no_match"] * 4 + ["locked_out", "unlocking"]


def _courier_asks(cabinet, *, badge: str, pin: str, carrier: str | None = None, tracking=None):  # type: ignore[no-untyped-def]
    cabinet_says(
        cabinet,
        protocol.make_courier_request(
            badge=badge,
            pin=pin,
            action="deposit",
            tracking_number=tracking,
            at=protocol.now_ms(),
            carrier=carrier,
        ),
    )


def _courier_outcomes(pushes) -> list[str]:  # type: ignore[no-untyped-def]
    return [r["outcome"] for r in results(pushes, "courier_result")]


def test_one_couriers_wrong_pins_do_not_lock_out_another_courier(
    cabinet, carrier, courier, pushes, fast_lockouts, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    CourierFactory(carrier=carrier, badge_number="C-0002", pin_hash=make_password("7777"))
    _announce(carrier, cabinet, "SF0001")
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            _courier_asks(cabinet, badge="C-0001", pin="0000")
        _courier_asks(cabinet, badge="C-0001", pin=COURIER_PIN, tracking="SF0001")
        _courier_asks(cabinet, badge="C-0002", pin="7777", tracking="SF0001")
    assert _courier_outcomes(pushes) == (
        ["not_authorized"] * 3 + ["locked_out"] * 3 + ["unlocking"]
    )


def test_guessing_across_many_badges_pauses_the_cabinet(
    cabinet, carrier, courier, pushes, fast_lockouts, settings, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    settings.COURIER_LOCKOUT_CABINET_ATTEMPTS = 4
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(4):
            _courier_asks(cabinet, badge=f"X-{n}", pin="0000")
        _courier_asks(cabinet, badge="C-0001", pin=COURIER_PIN)
    assert _courier_outcomes(pushes) == ["not_authorized"] * 4 + ["locked_out"]


@pytest.fixture
def twin_badges(carrier, courier):  # type: ignore[no-untyped-def]
    """Two carriers, each with a courier whose badge is C-0001 (different PINs)."""
    other = CarrierFactory(code="swift", name="Swift Parcels")
    CourierFactory(carrier=other, badge_number="C-0001", pin_hash=make_password("9999"))
    return carrier, other


def test_a_badge_two_carriers_issued_needs_the_carrier(
    cabinet, twin_badges, pushes, fast_lockouts, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    demo, swift = twin_badges
    _announce(swift, cabinet, "SW0001")
    with django_capture_on_commit_callbacks(execute=True):
        _courier_asks(cabinet, badge="C-0001", pin="9999", tracking="SW0001")
        for _ in range(4):  # asking again without the carrier is not a guess
            _courier_asks(cabinet, badge="C-0001", pin="9999", tracking="SW0001")
        _courier_asks(cabinet, badge="C-0001", pin="9999", carrier="swift", tracking="SW0001")
    answers = results(pushes, "courier_result")
    assert [a["outcome"] for a in answers] == ["not_authorized"] * 5 + ["unlocking"]
    assert "Choose your company" in answers[0]["message"]
    assert len(unlocks(pushes)) == 1


def test_the_carrier_picks_the_courier_and_the_other_carriers_pin_fails(
    cabinet, twin_badges, pushes, fast_lockouts, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    demo, swift = twin_badges
    _announce(demo, cabinet, "DX0001")
    with django_capture_on_commit_callbacks(execute=True):
        # Swift's courier's PIN with Demo's badge: refused, and counted for Demo's badge only.
        _courier_asks(cabinet, badge="C-0001", pin="9999", carrier=demo.code, tracking="DX0001")
        _courier_asks(
            cabinet, badge="C-0001", pin=COURIER_PIN, carrier=demo.code, tracking="DX0001"
        )
    assert _courier_outcomes(pushes) == ["not_authorized", "unlocking"]
    assert Parcel.objects.get(tracking_number="DX0001").status == ParcelStatus.ANNOUNCED
    assert len(unlocks(pushes)) == 1
    failed = AccessAttempt.objects.get(success=False)
    assert failed.lockout_subject == f"courier:{demo.couriers.get().pk}"


def test_a_carrier_longer_than_the_protocol_allows_is_a_protocol_error() -> None:
    frame = protocol.make_courier_request(
        badge="C-0001", pin="1234", action="deposit", tracking_number=None, at=1, carrier="x" * 33
    )
    with pytest.raises(protocol.ProtocolError):
        protocol.validate_cabinet_frame(frame)
