"""factory_boy factories shared by every app's tests, and the small named cast."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.utils import timezone

from cabinets.models import Cabinet, CabinetState, Compartment, CompartmentSize
from courier.models import Carrier, Courier, Parcel
from identity.models import Identity


class CarrierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Carrier
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"carrier-{n}")
    name = factory.Sequence(lambda n: f"Carrier {n}")


class CourierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Courier

    carrier = factory.SubFactory(CarrierFactory)
    name = "Liu Yang"
    phone = "+8613900000001"
    badge_number = factory.Sequence(lambda n: f"C-{n:04d}")


class CabinetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cabinet

    serial = factory.Sequence(lambda n: f"SH-T-{n:04d}")
    name = factory.Sequence(lambda n: f"Test cabinet {n}")
    address = "1 Test Road"
    city = "Shanghai"
    region = "Shanghai"
    latitude = Decimal("31.2")
    longitude = Decimal("121.4")
    hardware_model = "CB-12"
    firmware_version = "1.0.0"
    state = CabinetState.ACTIVE


class CompartmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Compartment

    cabinet = factory.SubFactory(CabinetFactory)
    label = factory.Sequence(lambda n: f"A{n:02d}")
    size = CompartmentSize.S
    width_mm = 420
    height_mm = 90
    depth_mm = 560
    max_weight_g = 5000


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    phone = factory.Sequence(lambda n: f"+86138{n:08d}")
    name = factory.Sequence(lambda n: f"Person {n}")
    # The cast has proven its phones (a texted code); tests of the unproven set this None.
    phone_verified_at = factory.LazyFunction(timezone.now)


class ParcelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Parcel

    carrier = factory.SubFactory(CarrierFactory)
    tracking_number = factory.Sequence(lambda n: f"TN{n:09d}")
    recipient = factory.SubFactory(IdentityFactory)
    recipient_phone = factory.LazyAttribute(lambda parcel: parcel.recipient.phone)
    recipient_name = factory.LazyAttribute(lambda parcel: parcel.recipient.name)
    sender = None
    sender_phone = factory.LazyAttribute(
        lambda parcel: parcel.sender.phone if parcel.sender else ""
    )
    size = CompartmentSize.S
    cabinet = factory.SubFactory(CabinetFactory)


class StaffUserFactory(factory.django.DjangoModelFactory):
    """A platform staff user (superuser: sees everything in the admin)."""

    class Meta:
        model = "auth.User"
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    is_superuser = True
    password = factory.django.Password("staff-password-123")


class CarrierStaffFactory(factory.django.DjangoModelFactory):
    """A carrier's staff member: an admin login limited to that carrier's parcels."""

    class Meta:
        model = "courier.CarrierStaff"

    user = factory.SubFactory(
        StaffUserFactory,
        username=factory.Sequence(lambda n: f"carrier-staff{n}"),
        is_superuser=False,
    )
    carrier = factory.SubFactory(CarrierFactory)


class BiometricConsentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "identity.BiometricConsent"

    identity = factory.SubFactory(IdentityFactory)
    status = "given"
    policy_version = "2026-1"
    given_at = factory.LazyFunction(timezone.now)
