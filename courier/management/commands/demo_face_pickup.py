"""Watch a face pickup happen against the running platform (`./scripts/run.sh`).

The seeded recipient Chen Jie is enrolled from two frames of a video clip (a GRID clip of
../shared/faces/video by default). A simulated cabinet (the reference agent, demo cabinet
HZ-XH-0003) connects over the websocket; the person chooses face, the platform draws a
liveness challenge, the agent answers with a burst of frames read from the clip, the worker
checks that it is a live person doing what was asked and matches the burst against the
recipients waiting there, the door opens, the agent closes it, and the parcel is picked up.
(The clip must be able to do what is asked: GRID clips blink, so `./scripts/run.sh` draws
blink challenges; `--single-frame` shows the old one-photo scan, answered use_code.)"""

from __future__ import annotations

import asyncio
import os
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
from identity.services import (
    consent_give,
    enrollment_photo_process,
    enrollment_photo_submit,
    face_data_delete,
)

FACES = settings.BASE_DIR.parent / "shared" / "faces"
DEFAULT_CLIP = os.environ.get("DEMO_FACE_CLIP", str(FACES / "video" / "grid" / "bbaf2n.mpg"))
SERIAL = "HZ-XH-0003"
RECIPIENT_PHONE = "+8613800000004"


def _clip_jpegs(clip: Path, indices: list[int]) -> list[bytes]:
    """Frames of the clip as JPEG, as the cabinet's camera would take them."""
    from cabinet_agent.camera import CameraError, VideoBurstCamera

    try:
        return [VideoBurstCamera(clip, count=1).read(index)[0][1] for index in indices]
    except CameraError as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--server", default=None, help=SERVER_HELP)
        parser.add_argument(
            "--clip",
            default=DEFAULT_CLIP,
            help="video the cabinet's camera sees (default: $DEMO_FACE_CLIP or the shared "
            "GRID clip bbaf2n, which blinks at frames 42-46)",
        )
        parser.add_argument("--clip-start", type=int, default=28, help="first burst frame")
        parser.add_argument(
            "--enroll-frames", default="0,70", help="clip frames the person is enrolled from"
        )
        parser.add_argument(
            "--single-frame", action="store_true", help="scan one frame, as a 1.1 cabinet"
        )
        parser.add_argument("--timeout", type=float, default=60.0)

    def handle(self, *args: Any, **options: Any) -> None:
        clip = Path(options["clip"])
        if not clip.is_file():
            raise CommandError(
                f"Video clip {clip} not found: the demo needs ../shared/faces/video next to "
                "the repository, or pass --clip (or set DEMO_FACE_CLIP)."
            )
        frames = _clip_jpegs(clip, [int(i) for i in options["enroll_frames"].split(",")])
        cabinet = Cabinet.objects.filter(serial=SERIAL).first()
        person = Identity.objects.filter(phone=RECIPIENT_PHONE).first()
        if cabinet is None or person is None:
            raise CommandError("Demo data missing: run `python manage.py seed_demo` first.")
        actor = Actor.system("face pickup demo")

        self.stdout.write(f"1. Enrolling {person.name}'s face from frames of {clip.name} ...")
        # Enrolled again each run: the templates must be of the person in the clip.
        face_data_delete(identity=person, actor=actor, reason="face pickup demo")
        consent_give(identity=person, source="demo")
        for jpeg in frames:
            submitted = enrollment_photo_submit(identity=person, data=jpeg, actor=actor)
            outcome = enrollment_photo_process(photo_id=submitted.pk)
        if not identity_has_face(identity=person):
            raise CommandError(f"Enrollment failed: {outcome}")

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
            scan.write_bytes(_clip_jpegs(clip, [options["clip_start"]])[0])
            config = config_from_mapping(
                {
                    "server": {"url": cabinet_websocket_url(options["server"])},
                    "cabinet": {
                        "serial": SERIAL,
                        "credential": issued.credential,
                        "signing_key": issued.signing_key_hex,
                        "compartments": labels,
                    },
                    "agent": {
                        "state_dir": work,
                        "camera_path": str(scan),
                        "burst_path": str(clip),
                        "burst_start": options["clip_start"],
                        "burst_step": 2,
                        "burst_frames": 16,
                    },
                    "backoff": {"spread": 0.0, "cap": 5.0},
                    "simulator": {"auto_close_after": 2.0},
                }
            )
            asyncio.run(
                self._visit(config, parcel, options["timeout"], single=options["single_frame"])
            )

    async def _visit(self, config: Any, parcel: Parcel, timeout: float, *, single: bool) -> None:
        agent = CabinetAgent(config)
        runner = asyncio.create_task(agent.run())
        try:
            try:
                await asyncio.wait_for(agent.connected.wait(), timeout)
            except TimeoutError as exc:
                raise CommandError(
                    f"Could not connect to {config.server_url}: is ./scripts/run.sh running?"
                ) from exc
            if single or agent.server_revision < 2:
                self.stdout.write(f"3. Cabinet {SERIAL} connected; one frame is scanned ...")
                await agent.scan_face("pickup")
            else:
                self.stdout.write(f"3. Cabinet {SERIAL} connected; the person chooses face ...")
                agent.start_face("pickup")
            status = sync_to_async(lambda: Parcel.objects.get(pk=parcel.pk).status)
            deadline = asyncio.get_running_loop().time() + timeout
            shown = 0
            challenged = 0
            while asyncio.get_running_loop().time() < deadline:
                for challenge in agent.face_challenges[challenged:]:
                    self.stdout.write(
                        f"   Challenge {challenge['actions']}: {challenge['message']} "
                        "(the camera takes a burst from the clip)"
                    )
                challenged = len(agent.face_challenges)
                if agent.burst_errors:
                    raise CommandError(f"The camera could not take a burst: {agent.burst_errors}")
                for result in agent.face_results[shown:]:
                    self.stdout.write(f"4. Platform says: {result['outcome']}: {result['message']}")
                    if result["outcome"] != "unlocking":
                        raise CommandError("No door opens (see the message above).")
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
