"""factory_boy factories shared by every app's tests, and the small named cast."""

from __future__ import annotations

from decimal import Decimal

import factory

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


class ParcelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Parcel

    carrier = factory.SubFactory(CarrierFactory)
    tracking_number = factory.Sequence(lambda n: f"TN{n:09d}")
    recipient = factory.SubFactory(IdentityFactory)
    size = CompartmentSize.S
    cabinet = factory.SubFactory(CabinetFactory)
