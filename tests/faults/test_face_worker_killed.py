"""A Celery worker killed (SIGKILL) in the middle of a face pickup: the face task is
acknowledged late and rejected when its worker is lost, so the message survives and runs
again (in a new pool child, or on the next worker); the person gets one door opening, and
the parcel is picked up once.

Real processes: uvicorn serving the cabinet link, prefork Celery workers as in production
(held mid-match by a test-only hook of tests.live.celery_hooks, then killed), Redis, real
dlib, and the reference agent in this process."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cabinet_agent import protocol
from cabinet_agent.config import config_from_mapping
from cabinets.models import CabinetCommand, CabinetMessage
from cabinets.services.credentials import cabinet_credential_issue
from cabinets.services.lifecycle import compartments_create
from core.actors import Actor
from courier.models import AccessAttempt, Parcel, ParcelStatus
from identity.selectors import identity_has_face
from identity.services import consent_give, enrollment_photo_submit
from tests.factories import CabinetFactory, IdentityFactory
from tests.identity.faces import FACES, requires_faces
from tests.live.agent import AgentThread
from tests.live.fixtures import parcel_ready_in
from tests.live.server import LiveServer, live_env
from tests.live.wait import eventually
from tests.live.worker import WorkerProcess, worker_database_url, worker_start

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), requires_faces]
TEST = Actor.system("test")


@pytest.fixture
def processes(redis_required: None, tmp_path: Path) -> Iterator[dict[str, object]]:
    """Stopped in any case at the end; the test starts and kills them."""
    started: dict[str, object] = {"workers": []}
    try:
        yield started
    finally:
        for worker in started["workers"]:  # type: ignore[attr-defined]
            worker.stop()
        for name in ("agent", "server"):
            if name in started:
                started[name].stop()  # type: ignore[attr-defined]


def _face_pickup_through_a_crash(processes, tmp_path, *, crash: str) -> None:  # type: ignore[no-untyped-def]
    """`crash`: "child" kills the prefork pool child that is matching (its parent requeues
    the task: reject_on_worker_lost); "worker" kills the whole worker, parent and child, and
    starts another (the broker gives the unacknowledged message back after its visibility
    timeout)."""
    cabinet = CabinetFactory(serial="FAULT-FACE-1")
    compartments_create(cabinet=cabinet, layout=[("A01", "S"), ("A02", "S")])
    issued = cabinet_credential_issue(cabinet=cabinet, actor=TEST)
    obama = IdentityFactory(name="Obama")
    consent_give(identity=obama)
    # Eager in this process: the template is computed here, before any worker runs.
    enrollment_photo_submit(
        identity=obama, data=(FACES / "examples/obama.jpg").read_bytes(), actor=TEST
    )
    assert identity_has_face(identity=obama)
    parcel = parcel_ready_in(cabinet, obama, "A01")

    queue = f"test-faults-{uuid.uuid4().hex[:12]}"
    pause = tmp_path / "pause"
    pause.mkdir()
    database_url = worker_database_url()
    workers: list[WorkerProcess] = processes["workers"]

    def start_worker(name: str, **env: str) -> WorkerProcess:
        worker = worker_start(
            queue=queue,
            log_path=tmp_path / f"{name}.log",
            database_url=database_url,
            env={"TEST_FACE_PAUSE_DIR": str(pause), **env},
            pool="prefork",
        )
        workers.append(worker)
        return worker

    first = start_worker("worker-1")
    server = LiveServer(
        tmp_path / "uvicorn.log",
        env=live_env(CELERY_TASK_ALWAYS_EAGER="0", CELERY_TASK_DEFAULT_QUEUE=queue),
    )
    processes["server"] = server
    server.start()

    def logs() -> str:
        parts = [f"--- {w.log_path.name}\n{w.log()[-2500:]}" for w in workers]
        return "\n".join([*parts, f"--- uvicorn\n{server.log_tail(40)}"])

    camera = tmp_path / "camera.jpg"
    config = config_from_mapping(
        {
            "server": {"url": server.ws_url},
            "cabinet": {
                "serial": cabinet.serial,
                "credential": issued.credential,
                "signing_key": issued.signing_key_hex,
                "compartments": ["A01", "A02"],
            },
            "agent": {"state_dir": str(tmp_path / "agent"), "camera_path": str(camera)},
            "backoff": {"spread": 0.0, "cap": 2.0},
            "simulator": {"auto_close_after": 0.5},
        }
    )
    side = AgentThread(config, camera)
    processes["agent"] = side
    side.start()
    agent = side.agent
    eventually(lambda: agent.connected.is_set(), "the cabinet to connect", logs=logs)

    # the enrollment shot at another size: a clear match, which a single frame needs
    side.sees("examples/obama-720p.jpg")
    scan_id = side.call(agent.scan_face, "pickup")
    # A pool child took the task and its encoder is matching: kill it there.
    [marker] = eventually(lambda: list(pause.glob("matching-*")), "a worker mid-match", logs=logs)
    matching_pid = int(marker.name.split("-")[1])
    if crash == "child":
        os.kill(matching_pid, signal.SIGKILL)
    else:
        first.kill()
    assert not AccessAttempt.objects.filter(event_id=scan_id).exists()
    assert not CabinetCommand.objects.filter(cabinet=cabinet).exists()
    (pause / "release").touch()
    if crash == "worker":
        # Restarted: it finds the unacknowledged message once the visibility timeout passed.
        start_worker("worker-2", CELERY_VISIBILITY_TIMEOUT_S="2")

    eventually(
        lambda: Parcel.objects.get(pk=parcel.pk).status == ParcelStatus.PICKED_UP,
        "the pickup after the task ran again",
        logs=logs,
    )
    # the match ran twice, in two processes, and was decided once
    assert len(list(pause.glob("matching-*"))) == 2
    attempt = AccessAttempt.objects.get(event_id=scan_id)
    assert attempt.success and attempt.identity_id == obama.pk
    [unlock] = CabinetCommand.objects.filter(cabinet=cabinet)
    assert (unlock.compartment.label, unlock.status) == ("A01", "succeeded")
    assert agent.executed_commands == [str(unlock.pk)]
    assert side.call(lambda: dict(agent.lock.unlock_counts)) == {"A01": 1}
    assert {r["outcome"] for r in agent.face_results if r["scan_id"] == scan_id} == {"unlocking"}
    opened = CabinetMessage.objects.filter(
        cabinet=cabinet, type=protocol.DOOR_EVENT, payload__event="opened"
    )
    assert opened.count() == 1
    assert Parcel.objects.get(pk=parcel.pk).picked_up_at is not None


def test_a_face_pickup_whose_pool_child_is_killed_mid_match_runs_again_and_opens_once(
    processes, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _face_pickup_through_a_crash(processes, tmp_path, crash="child")


def test_a_face_pickup_whose_whole_worker_is_killed_mid_match_runs_on_the_next_worker_and_opens_once(
    processes, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _face_pickup_through_a_crash(processes, tmp_path, crash="worker")
