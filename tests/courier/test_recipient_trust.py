"""A malicious carrier against another carrier's recipient (issue 10, item 1), end to end:
carrier B announces and cancels a parcel for phone P with B's own email; carrier A announces
for P; A's notification must not reach B, nothing B received may enroll a face for P, and
B's face at the cabinet must release nothing. Real dlib on the shared photos."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from cabinet_agent import protocol
from cabinets.models import Cabinet, Compartment
from core.actors import Actor
from courier.authentication import carrier_api_key_issue
from courier.codes import pickup_code_hash
from courier.models import Carrier, Notification, Parcel, ParcelStatus
from courier.notifications import parcel_notify
from courier.services.parcels import parcel_transition
from identity import services as identity_services
from identity.models import FaceTemplate, Identity
from identity.selectors import identity_has_face
from tests.courier.conftest import cabinet_says, results, unlocks
from tests.courier.faces import enroll
from tests.courier.test_face_access import _jpeg
from tests.factories import CarrierFactory, IdentityFactory
from tests.identity.faces import requires_faces

pytestmark = [pytest.mark.django_db, requires_faces]

P = "+8613800005555"
ROGUE_EMAIL = "inbox@rogue-carrier.test"
CUSTOMER_EMAIL = "chen.jie@customer.test"
API = "/api/v1/carrier/"


def _carrier_client(carrier: Carrier) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {carrier_api_key_issue(carrier=carrier)}")
    return client


def _announce(client: APIClient, cabinet: Cabinet, tracking: str, email: str) -> Any:
    response = client.post(
        API + "parcels/",
        {
            "tracking_number": tracking,
            "recipient": {"phone": P, "name": "Chen Jie", "email": email},
            "size": "S",
            "cabinet": cabinet.serial,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response


def _deposited(parcel: Parcel, cabinet: Cabinet) -> Parcel:
    return parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=Actor.system("test"),
        changes={
            "compartment": Compartment.objects.get(cabinet=cabinet, label="A01"),
            "deposited_at": timezone.now(),
            "pickup_deadline": timezone.now() + timedelta(days=3),
            "pickup_code_hash": pickup_code_hash(parcel_id=parcel.pk, code="246810"),
        },
    )


def _scan(cabinet: Cabinet, photo: str) -> None:
    cabinet_says(
        cabinet,
        protocol.make_face_scan(
            purpose="pickup", image=_jpeg(photo), light_on=False, taken_at=protocol.now_ms()
        ),
    )


def test_a_carrier_cannot_seed_a_persons_email_enroll_their_face_or_open_their_parcel(
    cabinet: Cabinet,
    carrier: Carrier,
    pushes: list[tuple[int, dict[str, Any]]],
    sms: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    rogue = CarrierFactory(code="rogue", name="Rogue Logistics")
    as_a, as_b = _carrier_client(carrier), _carrier_client(rogue)
    received_by_b: list[str] = []

    # 1. B announces a parcel for P with B's own email, and cancels it.
    received_by_b.append(_announce(as_b, cabinet, "RG-0001", ROGUE_EMAIL).content.decode())
    cancelled = as_b.post(API + "parcels/RG-0001/cancel/")
    assert cancelled.status_code == 200
    received_by_b.append(cancelled.content.decode())

    # 2. A announces its parcel for P, with the email its customer gave A.
    _announce(as_a, cabinet, "DX-0001", CUSTOMER_EMAIL)
    person = Identity.objects.get(phone=P)
    # Nothing B sent reached the shared record: the contact data stays on B's parcel.
    assert (person.name, person.email, person.phone_verified_at) == ("", "", None)
    assert Parcel.objects.get(carrier=rogue).recipient_email == ROGUE_EMAIL

    # 3. A's parcel is deposited and notified: SMS to P, email to A's customer, none to B.
    parcel = _deposited(Parcel.objects.get(carrier=carrier), cabinet)
    with django_capture_on_commit_callbacks(execute=True):
        parcel_notify(parcel_id=parcel.pk, kind="ready", code="246810")
    assert [m.to for m in mail.outbox] == [[CUSTOMER_EMAIL]]
    assert [m.phone for m in sms] == [P]
    assert set(Notification.objects.values_list("to", flat=True)) == {P, CUSTOMER_EMAIL}
    received_by_b += [m.body for m in mail.outbox if ROGUE_EMAIL in m.to]
    # The email carries no enrollment link (the SMS, to the phone itself, does).
    assert "/enroll/link/" not in mail.outbox[0].body
    assert "/enroll/link/#" in sms[0].text

    # 4. B tries to enroll a face for P with whatever it received: there is no link or
    # token in any of it. Even holding the SMS link, B gets only a code texted to P.
    assert not any("/enroll/" in text or "token" in text for text in received_by_b)
    link = re.search(r"(/enroll/link/)#(\S+)", sms[0].text)
    assert link is not None
    browser = Client()
    with django_capture_on_commit_callbacks(execute=True):
        redeemed = browser.post(link.group(1), {"token": link.group(2)})
    assert redeemed["Location"] == "/enroll/login/code/"
    assert [m.phone for m in sms] == [P, P]  # the code went to P's phone, not to B
    for guess in ("000000", "111111", "222222"):
        assert browser.post("/enroll/login/code/", {"code": guess}).status_code == 400
    assert browser.get("/enroll/")["Location"] == "/enroll/login/"
    assert browser.post("/enroll/consent/", {"agree": "yes"}).status_code == 302
    with pytest.raises(identity_services.PhoneNotProven):
        identity_services.consent_give(identity=person)
    assert not identity_has_face(identity=person)

    # 5. B's face at the cabinet releases nothing: B's people have no parcel for P, and even
    # a face stored on P's record before this fix (B enrolled through the old reusable link)
    # does not count while P's phone is unproven.
    attacker = enroll(
        IdentityFactory(phone="+8613800006666", name="Rogue courier"),
        "examples/biden.jpg",
        capture=django_capture_on_commit_callbacks,
    )
    Identity.objects.filter(pk=person.pk).update(phone_verified_at=timezone.now())
    enroll(person, "examples/biden.jpg", capture=django_capture_on_commit_callbacks)
    Identity.objects.filter(pk=person.pk).update(phone_verified_at=None)
    assert FaceTemplate.objects.filter(identity=person).exists()
    assert identity_has_face(identity=attacker)
    with django_capture_on_commit_callbacks(execute=True):
        _scan(cabinet, "examples/knn_examples/train/biden/biden2.jpg")
    assert results(pushes, "face_result")[0]["outcome"] == "use_code"
    assert not unlocks(pushes)
    assert Parcel.objects.get(pk=parcel.pk).status == ParcelStatus.READY
    assert Parcel.objects.get(pk=parcel.pk).release_authorized_at is None


def test_the_person_who_proves_the_phone_enrolls_and_their_face_opens_the_parcel(
    cabinet: Cabinet,
    carrier: Carrier,
    pushes: list[tuple[int, dict[str, Any]]],
    sms: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    _announce(_carrier_client(carrier), cabinet, "DX-0002", CUSTOMER_EMAIL)
    person = Identity.objects.get(phone=P)
    with django_capture_on_commit_callbacks(execute=True):
        identity_services.login_code_send(phone=P, client_address="198.51.100.1")
    code = re.search(r"\b(\d{6})\b", sms[-1].text)
    assert code is not None
    identity_services.login_code_verify(phone=P, code=code.group(1), client_address="198.51.100.1")
    person.refresh_from_db()
    assert person.phone_verified_at is not None
    enroll(person, "examples/obama.jpg", capture=django_capture_on_commit_callbacks)
    parcel = _deposited(Parcel.objects.get(carrier=carrier), cabinet)
    with django_capture_on_commit_callbacks(execute=True):
        # the enrollment shot at another size: a clear match on a single-frame cabinet
        _scan(cabinet, "examples/obama-720p.jpg")
    assert results(pushes, "face_result")[0]["outcome"] == "unlocking"
    assert [c["compartment"] for c in unlocks(pushes)] == ["A01"]
    assert Parcel.objects.get(pk=parcel.pk).release_authorized_at is not None
