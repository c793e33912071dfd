"""Records in the admin read as records: audit rows name what moved, a picked-up parcel says
from which compartment and by what it was opened, attempts link to their parcels, face
figures are rounded, a person's page says where consent and enrollment stand."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.models import CabinetEvent, CabinetState, Compartment, CompartmentEvent
from cabinets.services.lifecycle import cabinet_transition, compartment_service_set
from core.actors import Actor
from courier.access.attempts import attempt_record
from courier.codes import pickup_code_hash
from courier.models import AccessAttempt, Parcel, ParcelEvent, ParcelStatus
from courier.services.parcels import parcel_transition
from courier.services.releases import parcels_release
from identity.models import EnrollmentEvent, EnrollmentStatus, FaceEnrollment
from tests.courier.conftest import cabinet_says, door
from tests.factories import BiometricConsentFactory, IdentityFactory, ParcelFactory

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("test")


@pytest.fixture
def ready_parcel(cabinet, carrier):  # type: ignore[no-untyped-def]
    parcel = ParcelFactory(carrier=carrier, cabinet=cabinet, recipient=IdentityFactory())
    parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=SYSTEM,
        changes={
            "compartment": Compartment.objects.get(cabinet=cabinet, label="B01"),
            "deposited_at": timezone.now(),
            "pickup_deadline": timezone.now() + timezone.timedelta(days=3),
            "pickup_code_hash": pickup_code_hash(parcel_id=parcel.pk, code="123456"),
        },
    )
    return parcel


def parcel_page(client, parcel: Parcel) -> str:  # type: ignore[no-untyped-def]
    response = client.get(reverse("admin:courier_parcel_change", args=[parcel.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_audit_rows_read_as_what_moved_when_and_by_whom(ready_parcel, cabinet) -> None:  # type: ignore[no-untyped-def]
    compartment = Compartment.objects.get(cabinet=cabinet, label="A01")
    compartment_service_set(
        compartment_id=compartment.pk, to_state="out_of_service", actor=SYSTEM, reason="hinge"
    )
    cabinet_transition(
        cabinet_id=cabinet.pk, to_state=CabinetState.MAINTENANCE, actor=SYSTEM, reason="x"
    )
    consent = BiometricConsentFactory()
    enrollment = FaceEnrollment.objects.create(identity=consent.identity, consent=consent)
    EnrollmentEvent.objects.create(
        enrollment=enrollment,
        from_status="",
        to_status=EnrollmentStatus.PENDING,
        actor_kind="system",
    )
    rows = [
        str(ParcelEvent.objects.filter(parcel=ready_parcel).last()),
        str(CompartmentEvent.objects.get()),
        str(CabinetEvent.objects.get()),
        str(EnrollmentEvent.objects.get()),
    ]
    for row in rows:
        assert "object (" not in row
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row), row
    assert rows[0].startswith(f"parcel {ready_parcel.pk}: Announced → Deposited, ready for pickup")
    assert rows[0].endswith("by test")
    assert rows[1].startswith(f"compartment {compartment.pk}: In service → Out of service")
    assert rows[2].startswith(f"cabinet {cabinet.pk}: Active → Maintenance")
    assert rows[3].startswith(f"enrollment {enrollment.pk}: Waiting for photos")


def test_a_parcel_picked_up_with_its_code_says_where_and_how(
    admin_client, cabinet, ready_parcel, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        cabinet_says(cabinet, protocol.make_code_entry(code="123456", entered_at=protocol.now_ms()))
        door(cabinet, "B01", "opened")
        door(cabinet, "B01", "closed")
    assert Parcel.objects.get(pk=ready_parcel.pk).status == ParcelStatus.PICKED_UP

    page = parcel_page(admin_client, ready_parcel)
    assert re.search(
        r"Picked up at \d{4}-\d\d-\d\d [\d:]+ \w+: compartment SH-FLOW-1/B01, opened by Pickup code",
        page,
    ), page
    attempt = AccessAttempt.objects.get()
    assert reverse("admin:courier_accessattempt_change", args=[attempt.pk]) in page
    attempt_page = admin_client.get(
        reverse("admin:courier_accessattempt_change", args=[attempt.pk])
    ).content.decode()
    assert reverse("admin:courier_parcel_change", args=[ready_parcel.pk]) in attempt_page


def test_a_face_pickup_says_face_and_its_distance_is_rounded(
    admin_client, cabinet, ready_parcel, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        # What courier.access.faces records and does for a match.
        attempt_record(
            cabinet_id=cabinet.pk,
            method="face",
            event_id="5f7d2a9e-2b1c-4b8e-9a51-6f1f8f1c0d11",
            success=True,
            outcome="match",
            parcels=[ready_parcel],
            distance=0.37310608403807977,
            threshold=0.5,
            margin=0.12689391596192023,
        )
        parcels_release(
            parcels=[Parcel.objects.get(pk=ready_parcel.pk)], actor=SYSTEM, reason="face pickup"
        )
        door(cabinet, "B01", "opened")
        door(cabinet, "B01", "closed")
    assert Parcel.objects.get(pk=ready_parcel.pk).status == ParcelStatus.PICKED_UP

    page = parcel_page(admin_client, ready_parcel)
    assert "compartment SH-FLOW-1/B01, opened by Face scan" in page
    assert "0.373" in page and "0.3731060" not in page
    listing = admin_client.get(reverse("admin:courier_accessattempt_changelist")).content.decode()
    assert "0.373" in listing and "0.127" in listing and "0.3731060" not in listing
    detail = admin_client.get(
        reverse("admin:courier_accessattempt_change", args=[AccessAttempt.objects.get().pk])
    ).content.decode()
    assert "0.500" in detail and "0.3731060" not in detail


def test_a_parcel_still_waiting_says_nothing_was_taken_out(admin_client, ready_parcel) -> None:  # type: ignore[no-untyped-def]
    page = parcel_page(admin_client, ready_parcel)
    assert "opened by" not in page and 'id="parcel-attempts"' not in page


def test_a_persons_page_shows_consent_and_enrollment(admin_client) -> None:  # type: ignore[no-untyped-def]
    nobody = IdentityFactory()
    consent = BiometricConsentFactory(policy_version="2026-1")
    FaceEnrollment.objects.create(
        identity=consent.identity, consent=consent, status=EnrollmentStatus.ENROLLED
    )

    def page(identity) -> str:  # type: ignore[no-untyped-def]
        url = reverse("admin:identity_identity_change", args=[identity.pk])
        return admin_client.get(url).content.decode()

    enrolled = page(consent.identity)
    assert re.search(r"given \d{4}-\d\d-\d\d [\d:]+ \w+ \(policy 2026-1", enrolled)
    assert "Enrolled: 0 usable face template(s)" in enrolled
    blank = page(nobody)
    assert "never given" in blank and "not enrolled" in blank
