"""Face pickup by liveness challenge end to end: uvicorn serving the cabinet link, a real
Celery worker checking bursts with dlib, Redis, and the reference agent in this process
taking its bursts from a GRID clip of a person enrolled from two other frames of it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cabinet_agent.camera import FramesBurstCamera, VideoBurstCamera
from cabinet_agent.config import config_from_mapping
from cabinets.models import CabinetCommand
from cabinets.services.credentials import cabinet_credential_issue
from cabinets.services.lifecycle import compartments_create
from core.actors import Actor
from courier.models import AccessAttempt, Parcel, ParcelStatus
from identity.services import consent_give, enrollment_photo_submit
from tests.factories import CabinetFactory, IdentityFactory
from tests.identity.clips import clip_frames, grid_path, held_print, jpeg
from tests.identity.faces import requires_faces
from tests.live.agent import AgentThread
from tests.live.fixtures import parcel_ready_in
from tests.live.server import LiveServer, live_env
from tests.live.wait import eventually
from tests.live.worker import WorkerProcess, worker_database_url, worker_start

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), requires_faces]
TEST = Actor.system("test")
CLIP = grid_path("bbaf2n")  # blinks at frames 42-46 (SOURCES.md)
PHONE = "+8613800004321"


class Cabinet:
    """A cabinet with an enrolled recipient, and the processes serving it."""

    def __init__(self, tmp_path: Path, worker_env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.cabinet = CabinetFactory(serial=f"LIVE-FACE-{uuid.uuid4().hex[:6]}")
        compartments_create(cabinet=self.cabinet, layout=[("A01", "S"), ("A02", "S"), ("A03", "S")])
        self.issued = cabinet_credential_issue(cabinet=self.cabinet, actor=TEST)
        self.recipient = IdentityFactory(name="GRID bbaf2n", phone=PHONE)
        consent_give(identity=self.recipient)
        frames, _ = clip_frames(CLIP)
        for index in (0, 70):  # eager here: the templates exist before any worker runs
            enrollment_photo_submit(identity=self.recipient, data=jpeg(frames[index]), actor=TEST)
        queue = f"test-liveness-{uuid.uuid4().hex[:12]}"
        self.worker: WorkerProcess = worker_start(
            queue=queue,
            log_path=tmp_path / "worker.log",
            database_url=worker_database_url(),
            env={"FACE_ALLOW_SINGLE_FRAME": "0", **worker_env},
        )
        self.server = LiveServer(
            tmp_path / "uvicorn.log",
            env=live_env(
                CELERY_TASK_ALWAYS_EAGER="0",
                CELERY_TASK_DEFAULT_QUEUE=queue,
                # GRID clips are frontal and still: this deployment draws blinks only.
                FACE_CHALLENGE_ACTIONS="blink",
            ),
        )
        self.server.start()
        config = config_from_mapping(
            {
                "server": {"url": self.server.ws_url},
                "cabinet": {
                    "serial": self.cabinet.serial,
                    "credential": self.issued.credential,
                    "signing_key": self.issued.signing_key_hex,
                    "compartments": ["A01", "A02", "A03"],
                },
                "agent": {
                    "state_dir": str(tmp_path / "agent"),
                    "camera_path": str(tmp_path / "camera.jpg"),
                    # the agent's own video capture: every second frame from 28, 16 frames
                    "burst_path": CLIP,
                    "burst_start": 28,
                    "burst_step": 2,
                    "burst_frames": 16,
                },
                "backoff": {"spread": 0.0, "cap": 2.0},
                "simulator": {"auto_close_after": 0.5},
            }
        )
        self.side = AgentThread(config, tmp_path / "camera.jpg")
        self.side.start()
        self.agent = self.side.agent
        eventually(lambda: self.agent.connected.is_set(), "the cabinet to connect", logs=self.logs)
        assert self.agent.server_revision == 2

    def logs(self) -> str:
        return f"--- worker\n{self.worker.log()[-3000:]}\n--- uvicorn\n{self.server.log_tail(40)}"

    def face(self) -> dict[str, Any]:
        """The person chooses face; the agent answers the challenge; the burst's result."""
        agent = self.agent
        start_id = self.side.call(agent.start_face, "pickup")
        burst_id = eventually(
            lambda: agent.face_bursts.get(start_id), "the burst to be sent", logs=self.logs
        )
        return eventually(
            lambda: next((r for r in agent.face_results if r["scan_id"] == burst_id), None),
            "the answer to the burst",
            logs=self.logs,
        )

    def answer(self, event_id: str) -> dict[str, Any]:
        return eventually(
            lambda: next((r for r in self.agent.face_results if r["scan_id"] == event_id), None),
            "the answer",
            logs=self.logs,
        )

    def stop(self) -> None:
        self.side.stop()
        self.server.stop()
        self.worker.stop()


@pytest.fixture
def live(redis_required: None, tmp_path: Path) -> Iterator[Any]:
    started: list[Cabinet] = []

    def start(**worker_env: str) -> Cabinet:
        started.append(Cabinet(tmp_path, worker_env))
        return started[-1]

    try:
        yield start
    finally:
        for cabinet in started:
            cabinet.stop()


def test_a_burst_from_a_clip_opens_a_photo_does_not_and_a_single_frame_scan_answers_use_code(
    live,
) -> None:  # type: ignore[no-untyped-def]
    site = live()
    cabinet, agent = site.cabinet, site.agent
    first = parcel_ready_in(cabinet, site.recipient, "A01")

    # A photo of the same person, held up to the camera like a print: refused, no door.
    frames, _ = clip_frames(CLIP)
    held = held_print(frames[0], count=12)
    photo_burst = [(i * 110, jpeg(image)) for i, image in enumerate(held)]
    live_camera = agent.burst_camera
    site.side.call(lambda: setattr(agent, "burst_camera", FramesBurstCamera(photo_burst)))
    refused = site.face()
    assert (refused["outcome"], refused["message"]) == ("retake", "Please blink.")

    # An old-version single-frame scan of the same person: use_code, no door.
    (site.tmp_path / "camera.jpg").write_bytes(jpeg(frames[30]))
    scan_id = site.side.call(agent.scan_face, "pickup")
    assert site.answer(scan_id)["outcome"] == "use_code"
    assert not CabinetCommand.objects.filter(cabinet=cabinet).exists()

    # The person, live, blinking: the door opens, the parcel is picked up.
    assert isinstance(live_camera, VideoBurstCamera)
    site.side.call(lambda: setattr(agent, "burst_camera", live_camera))
    opened = site.face()
    assert opened["outcome"] == "unlocking"
    eventually(
        lambda: Parcel.objects.get(pk=first.pk).status == ParcelStatus.PICKED_UP,
        "the pickup",
        logs=site.logs,
    )
    assert site.side.call(lambda: dict(agent.lock.unlock_counts)) == {"A01": 1}
    attempt = AccessAttempt.objects.get(event_id=agent.face_bursts[next(iter(agent.face_bursts))])
    assert not attempt.success and attempt.detail.startswith("no_blink")


def test_the_confirm_step_on_the_cabinet_screen_opens_with_the_right_digits_only(live) -> None:  # type: ignore[no-untyped-def]
    site = live(FACE_DOOR_POLICY_MODE="always_confirm")
    cabinet, agent = site.cabinet, site.agent
    parcel = parcel_ready_in(cabinet, site.recipient, "A01")

    asked = site.face()
    assert asked["outcome"] == "confirm" and "last four digits" in asked["message"]
    wrong = site.side.call(agent.confirm_face, asked["confirm_id"], "9999")
    assert site.answer(wrong)["outcome"] == "no_match"
    assert not CabinetCommand.objects.filter(cabinet=cabinet).exists()

    # Another parcel for her: face is offered again for it (the locked one keeps its code).
    second = parcel_ready_in(cabinet, site.recipient, "A02")
    camera = agent.burst_camera
    assert isinstance(camera, VideoBurstCamera)
    camera.start = 29  # the odd frames: a burst never reuses a frame
    asked = site.face()
    assert asked["outcome"] == "confirm"
    right = site.side.call(agent.confirm_face, asked["confirm_id"], PHONE[-4:])
    assert site.answer(right)["outcome"] == "unlocking"
    eventually(
        lambda: Parcel.objects.get(pk=second.pk).status == ParcelStatus.PICKED_UP,
        "the confirmed pickup",
        logs=site.logs,
    )
    assert site.side.call(lambda: dict(agent.lock.unlock_counts)) == {"A02": 1}
    assert Parcel.objects.get(pk=parcel.pk).status == ParcelStatus.READY
