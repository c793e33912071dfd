"""Watch a face pickup happen against the running platform (`./scripts/run.sh`).

A simulated cabinet (the reference agent, demo cabinet HZ-XH-0003) connects over the
websocket, its camera "sees" a photo of the seeded recipient Chen Jie, the platform's worker
matches the face against the recipients waiting at that cabinet, the door opens, the agent
closes it, and the parcel is picked up."""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cabinet_agent.agent import CabinetAgent
from cabinet_agent.config import config_from_mapping
from cabinets.models import Cabinet, Compartment
from cabinets.services.credentials import cabinet_credential_issue
from core.actors import Actor
from core.demo import demo_deposit
from core.servers import SERVER_HELP, cabinet_websocket_url
from courier.models import Carrier, Parcel, ParcelStatus
from courier.services.parcels import parcel_announce
from identity.models import Identity
from identity.selectors import identity_has_face
from identity.services import consent_give, enrollment_photo_process, enrollment_photo_submit

FACES = settings.BASE_DIR.parent / "shared" / "faces"
SERIAL = "HZ-XH-0003"
RECIPIENT_PHONE = "+8613800000004"


def _jpeg(path: Path) -> bytes:
    from PIL import Image

    image = Image.open(path).convert("RGB")
    image.thumbnail((640, 640))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--server", default=None, help=SERVER_HELP)
        parser.add_argument("--enroll-photo", default=str(FACES / "examples" / "obama.jpg"))
        parser.add_argument("--scan-photo", default=str(FACES / "examples" / "obama2.jpg"))
        parser.add_argument("--timeout", type=float, default=60.0)

    def handle(self, *args: Any, **options: Any) -> None:
        enroll_photo, scan_photo = Path(options["enroll_photo"]), Path(options["scan_photo"])
        for photo in (enroll_photo, scan_photo):
            if not photo.is_file():
                raise CommandError(f"{photo} not found: pass --enroll-photo and --scan-photo.")
        cabinet = Cabinet.objects.filter(serial=SERIAL).first()
        person = Identity.objects.filter(phone=RECIPIENT_PHONE).first()
        if cabinet is None or person is None:
            raise CommandError("Demo data missing: run `python manage.py seed_demo` first.")
        actor = Actor.system("face pickup demo")

        if not identity_has_face(identity=person):
            self.stdout.write(f"1. Enrolling {person.name}'s face from {enroll_photo.name} ...")
            consent_give(identity=person, source="demo")
            submitted = enrollment_photo_submit(
                identity=person, data=enroll_photo.read_bytes(), actor=actor
            )
            outcome = enrollment_photo_process(photo_id=submitted.pk)
            if not identity_has_face(identity=person):
                raise CommandError(f"Enrollment failed: {outcome}")
        else:
            self.stdout.write(f"1. {person.name} is enrolled.")

        parcel = (
            Parcel.objects.filter(cabinet=cabinet, recipient=person, status=ParcelStatus.READY)
            .select_related("compartment")
            .first()
        )
        if parcel is None:
            carrier = Carrier.objects.get(code="demo-express")
            count = Parcel.objects.filter(
                carrier=carrier, tracking_number__startswith="DXFACE"
            ).count()
            parcel = parcel_announce(
                carrier=carrier,
                tracking_number=f"DXFACE{count + 1:05d}",
                recipient=person,
                size="S",
                cabinet=cabinet,
                actor=actor,
            )
            demo_deposit(parcel=parcel, actor=actor)
            parcel.refresh_from_db()
        self.stdout.write(
            f"2. Parcel {parcel.tracking_number} waits in {SERIAL}/{parcel.compartment.label}."  # type: ignore[union-attr]
        )
        issued = cabinet_credential_issue(cabinet=cabinet, actor=actor)
        labels = list(Compartment.objects.filter(cabinet=cabinet).values_list("label", flat=True))
        with tempfile.TemporaryDirectory() as work:
            scan = Path(work) / "scan.jpg"
            scan.write_bytes(_jpeg(scan_photo))
            config = config_from_mapping(
                {
                    "server": {"url": cabinet_websocket_url(options["server"])},
                    "cabinet": {
                        "serial": SERIAL,
                        "credential": issued.credential,
                        "signing_key": issued.signing_key_hex,
                        "compartments": labels,
                    },
                    "agent": {"state_dir": work, "camera_path": str(scan)},
                    "backoff": {"spread": 0.0, "cap": 5.0},
                    "simulator": {"auto_close_after": 2.0},
                }
            )
            asyncio.run(self._visit(config, parcel, options["timeout"]))

    async def _visit(self, config: Any, parcel: Parcel, timeout: float) -> None:
        agent = CabinetAgent(config)
        runner = asyncio.create_task(agent.run())
        try:
            try:
                await asyncio.wait_for(agent.connected.wait(), timeout)
            except TimeoutError as exc:
                raise CommandError(
                    f"Could not connect to {config.server_url}: is ./scripts/run.sh running?"
                ) from exc
            self.stdout.write(f"3. Cabinet {SERIAL} connected; the camera sees the recipient ...")
            await agent.scan_face("pickup")
            status = sync_to_async(lambda: Parcel.objects.get(pk=parcel.pk).status)
            deadline = asyncio.get_running_loop().time() + timeout
            shown = 0
            while asyncio.get_running_loop().time() < deadline:
                for result in agent.face_results[shown:]:
                    self.stdout.write(f"4. Platform says: {result['outcome']}: {result['message']}")
                shown = len(agent.face_results)
                if agent.executed_commands:
                    self.stdout.write("5. Door opened; the simulated door closes in 2 s ...")
                    break
                await asyncio.sleep(0.1)
            while asyncio.get_running_loop().time() < deadline:
                if await status() == ParcelStatus.PICKED_UP:
                    self.stdout.write(
                        self.style.SUCCESS(f"6. Parcel {parcel.tracking_number} picked up.")
                    )
                    return
                await asyncio.sleep(0.2)
            raise CommandError(
                "The pickup did not complete in time (is the Celery worker running?)."
            )
        finally:
            agent.stop()
            await runner
