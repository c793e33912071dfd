"""The data migration of issue 10, item 1, on rows written before it: each parcel keeps the
contact its carrier gave (the seeded email only on the seeding carrier's parcels), the email
leaves the shared person record, and a phone counts as proven only where its owner once
used a texted code."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [
    ("courier", "0005_admin_action_permissions"),
    ("identity", "0004_admin_action_permissions"),
]
AFTER = [("courier", "0006_parcel_contact_per_carrier")]


@pytest.mark.django_db(transaction=True)
def test_existing_parcels_keep_their_carriers_contact_and_the_seeded_email_is_cleared() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Identity = old.get_model("identity", "Identity")
    OneTimeCode = old.get_model("identity", "OneTimeCode")
    cabinet = old.get_model("cabinets", "Cabinet").objects.create(
        serial="MIG-1",
        name="M",
        address="a",
        city="c",
        region="r",
        latitude=Decimal("31.2"),
        longitude=Decimal("121.4"),
        hardware_model="CB",
    )
    carrier = old.get_model("courier", "Carrier").objects.create(code="b", name="B")
    other = old.get_model("courier", "Carrier").objects.create(code="a", name="A")
    seeded = Identity.objects.create(phone="+8613800007777", name="Chen", email="x@rogue.test")
    proven = Identity.objects.create(phone="+8613800007778", name="Wu")
    used_at = timezone.now()
    OneTimeCode.objects.create(identity=proven, code_hash="h", expires_at=used_at, used_at=used_at)
    Parcel = old.get_model("courier", "Parcel")
    Parcel.objects.create(
        carrier=carrier, tracking_number="T1", recipient=seeded, size="S", cabinet=cabinet
    )
    Parcel.objects.create(
        carrier=carrier,
        tracking_number="T2",
        recipient=proven,
        sender=seeded,
        size="S",
        cabinet=cabinet,
    )
    # Carrier B mentioned the number first, so the email is B's: A's parcel must not get it.
    Parcel.objects.create(
        carrier=other, tracking_number="T3", recipient=seeded, size="S", cabinet=cabinet
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    parcels = new.get_model("courier", "Parcel").objects.order_by("tracking_number")
    assert list(parcels.values_list("recipient_phone", "recipient_name", "recipient_email")) == [
        ("+8613800007777", "Chen", "x@rogue.test"),
        ("+8613800007778", "Wu", ""),
        ("+8613800007777", "Chen", ""),
    ]
    assert parcels.get(tracking_number="T2").sender_phone == "+8613800007777"
    people = new.get_model("identity", "Identity").objects.order_by("phone")
    assert list(people.values_list("email", flat=True)) == ["", ""]
    assert [p.phone_verified_at is not None for p in people] == [False, True]

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
