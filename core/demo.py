"""Demo data for the embedded default (`make run`). Idempotent: running it twice adds nothing."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.utils import timezone

from cabinets.models import Cabinet, CabinetState
from cabinets.selectors import active_key_id, compartments_free
from cabinets.services.credentials import cabinet_credential_issue
from cabinets.services.lifecycle import compartments_create
from core.actors import Actor
from courier.authentication import carrier_api_key_issue
from courier.codes import pickup_code_generate, pickup_code_hash
from courier.models import Carrier, CarrierApiKey, Courier, Parcel, ParcelStatus
from courier.services.deposits import parcel_ready
from courier.services.parcels import parcel_announce
from identity.models import Identity

DEMO_LAYOUT: list[tuple[str, str]] = (
    [(f"A{i:02d}", "S") for i in range(1, 7)]
    + [(f"B{i:02d}", "M") for i in range(1, 5)]
    + [(f"C{i:02d}", "L") for i in range(1, 3)]
)

DEMO_CABINETS = [
    (
        "SH-XH-0001",
        "Xuhui Metro Station",
        "1 Caoxi North Rd",
        "Shanghai",
        "Shanghai",
        "31.193500",
        "121.437600",
    ),
    (
        "SH-PD-0002",
        "Lujiazui Tower Lobby",
        "88 Century Ave",
        "Shanghai",
        "Shanghai",
        "31.235000",
        "121.505000",
    ),
    (
        "HZ-XH-0003",
        "West Lake Community",
        "12 Nanshan Rd",
        "Hangzhou",
        "Zhejiang",
        "30.245000",
        "120.150000",
    ),
]

DEMO_PEOPLE = [
    ("+8613800000001", "Li Wei"),
    ("+8613800000002", "Wang Fang"),
    ("+8613800000003", "Zhang Min"),
    ("+8613800000004", "Chen Jie"),
]

# (tracking, recipient phone, size, cabinet serial, deposit it?)
DEMO_PARCELS = [
    ("DX100000001", "+8613800000001", "S", "SH-XH-0001", True),
    ("DX100000002", "+8613800000002", "M", "SH-XH-0001", True),
    ("DX100000003", "+8613800000003", "S", "SH-XH-0001", False),
    ("DX100000004", "+8613800000001", "L", "SH-PD-0002", False),
    ("DX100000005", "+8613800000004", "S", "HZ-XH-0003", True),
]


@dataclass
class DemoSeedResult:
    admin_username: str
    admin_password: str
    courier_badge: str = ""
    courier_pin: str = ""
    carrier_api_key: str = ""
    created: dict[str, int] = field(default_factory=dict)
    pickup_codes: dict[str, str] = field(default_factory=dict)
    # Configurations of the simulated agents scripts/run.py starts (var/agents/<serial>.toml).
    agent_configs: list[Path] = field(default_factory=list)


def _demo_secret(name: str, make: Callable[[], str]) -> str:
    """A demo secret kept in var/ (mode 0600), so repeated seeds print the same one."""
    path = settings.VAR_DIR / name
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    path.chmod(0o600)
    return value


def _admin_password() -> str:
    return _demo_secret("demo-admin-password", lambda: secrets.token_urlsafe(12))


def _carrier_api_key(carrier: Carrier) -> str:
    key = _demo_secret("demo-carrier-api-key", lambda: carrier_api_key_issue(carrier=carrier))
    prefix = key.partition(".")[0]
    if not CarrierApiKey.objects.filter(carrier=carrier, prefix=prefix).exists():
        # A fresh database with an old var/ file: issue a key that exists.
        (settings.VAR_DIR / "demo-carrier-api-key").unlink()
        key = _demo_secret("demo-carrier-api-key", lambda: carrier_api_key_issue(carrier=carrier))
    return key


def _count(created: dict[str, int], key: str, was_created: bool) -> None:
    created[key] = created.get(key, 0) + int(was_created)


def demo_seed(*, admin_username: str = "admin") -> DemoSeedResult:
    actor = Actor.system("demo seed")
    result = DemoSeedResult(admin_username=admin_username, admin_password=_admin_password())
    created = result.created

    User = get_user_model()
    with transaction.atomic():
        user, was_created = User.objects.get_or_create(
            username=admin_username, defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(result.admin_password)
        user.save(update_fields=["password"])
        _count(created, "users", was_created)

        carrier, was_created = Carrier.objects.get_or_create(
            code="demo-express", defaults={"name": "Demo Express"}
        )
        _count(created, "carriers", was_created)
        _, was_created = Carrier.objects.get_or_create(
            code="swift-parcel", defaults={"name": "Swift Parcel"}
        )
        _count(created, "carriers", was_created)
        courier, was_created = Courier.objects.get_or_create(
            carrier=carrier,
            badge_number="C-0001",
            defaults={"name": "Liu Yang", "phone": "+8613900000001"},
        )
        _count(created, "couriers", was_created)
        result.courier_badge = courier.badge_number
        result.courier_pin = _demo_secret(
            "demo-courier-pin", lambda: f"{secrets.randbelow(10**4):04d}"
        )
        if not courier.pin_hash or not check_password(result.courier_pin, courier.pin_hash):
            courier.pin_hash = make_password(result.courier_pin)
            courier.save(update_fields=["pin_hash"])
        result.carrier_api_key = _carrier_api_key(carrier)

        cabinets: dict[str, Cabinet] = {}
        for serial, name, address, city, region, lat, lng in DEMO_CABINETS:
            cabinet, was_created = Cabinet.objects.get_or_create(
                serial=serial,
                defaults={
                    "name": name,
                    "address": address,
                    "city": city,
                    "region": region,
                    "latitude": Decimal(lat),
                    "longitude": Decimal(lng),
                    "hardware_model": "CB-12",
                    "firmware_version": "1.0.0",
                    "config_version": "1",
                    "state": CabinetState.ACTIVE,
                },
            )
            _count(created, "cabinets", was_created)
            if was_created:
                created["compartments"] = created.get("compartments", 0) + len(
                    compartments_create(cabinet=cabinet, layout=DEMO_LAYOUT)
                )
            cabinets[serial] = cabinet

        people: dict[str, Identity] = {}
        for phone, name in DEMO_PEOPLE:
            person, was_created = Identity.objects.get_or_create(
                phone=phone, defaults={"name": name}
            )
            _count(created, "identities", was_created)
            people[phone] = person
        # Demo people stand for persons who have proven their phones with a texted code
        # (also in a demo database seeded before phones had to be proven).
        Identity.objects.filter(
            phone__in=[phone for phone, _ in DEMO_PEOPLE], phone_verified_at__isnull=True
        ).update(phone_verified_at=timezone.now())

    for tracking, phone, size, serial, deposit in DEMO_PARCELS:
        existing = Parcel.objects.filter(carrier=carrier, tracking_number=tracking).first()
        if existing is not None:
            if deposit:
                code = demo_pickup_code_reissue(parcel=existing)
                if code:
                    result.pickup_codes[tracking] = code
            continue
        parcel = parcel_announce(
            carrier=carrier,
            tracking_number=tracking,
            recipient=people[phone],
            size=size,
            cabinet=cabinets[serial],
            actor=actor,
        )
        _count(created, "parcels", True)
        if deposit:
            result.pickup_codes[tracking] = demo_deposit(parcel=parcel, actor=actor)
    result.agent_configs = [
        demo_agent_config(cabinet=cabinets[serial], actor=actor) for serial in DEMO_AGENT_SERIALS
    ]
    return result


def demo_deposit(*, parcel: Parcel, actor: Actor) -> str:
    """Put a demo parcel straight into a free compartment of its size."""
    compartment = (
        compartments_free()
        .filter(cabinet=parcel.cabinet, size=parcel.size)
        .order_by("label")
        .first()
    )
    if compartment is None:
        return ""
    _, code = parcel_ready(
        parcel=parcel,
        actor=actor,
        reason="demo deposit",
        door=compartment.label,
        compartment=compartment,
    )
    return code


def demo_pickup_code_reissue(*, parcel: Parcel) -> str:
    """A new code for a demo parcel still waiting, so that every demo run can print one: only
    keyed hashes are stored, the earlier code cannot be shown again. "" if it is not waiting.
    Demo data only: a real parcel's code changes only through its deposit."""
    code = pickup_code_generate()
    # Compare-and-set: a parcel picked up meanwhile keeps its (used) code.
    changed = Parcel.objects.filter(pk=parcel.pk, status=ParcelStatus.READY).update(
        pickup_code_hash=pickup_code_hash(parcel_id=parcel.pk, code=code)
    )
    return code if changed == 1 else ""


# --- The demo cabinet's agent ------------------------------------------------------------------

# Cabinets that scripts/run.py connects with a simulated reference agent.
DEMO_AGENT_SERIALS = ("SH-XH-0001",)


def demo_agent_config(*, cabinet: Cabinet, actor: Actor) -> Path:
    """var/agents/<serial>.toml (mode 0600): the agent configuration holding the cabinet's
    credential and signing key. Kept while it matches the cabinet's active credential; the
    platform stores only a hash of the secret, so a lost file means a new credential."""
    path = settings.VAR_DIR / "agents" / f"{cabinet.serial}.toml"
    key_id = active_key_id(cabinet.pk)
    if key_id is not None and path.exists() and f'credential = "{key_id}.' in path.read_text():
        return path
    issued = cabinet_credential_issue(cabinet=cabinet, actor=actor)
    labels = list(cabinet.compartments.order_by("label").values_list("label", flat=True))
    text = f"""# Simulated agent of the demo cabinet {cabinet.serial}, written by seed_demo.
# Holds the cabinet's credential and signing key: keep it private (mode 0600).
# scripts/run.py starts it: python -m cabinet_agent --config {path.name}

[server]
url = "ws://127.0.0.1:8000/ws/cabinet/"

[cabinet]
serial = "{cabinet.serial}"
credential = "{issued.credential}"
signing_key = "{issued.signing_key_hex}"
compartments = [{", ".join(f'"{label}"' for label in labels)}]

[agent]
state_dir = "{cabinet.serial}.state"

[backoff]
spread = 1.0

[simulator]
auto_close_after = 8.0
"""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created 0600 from the start: the secret is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)
    return path
