"""The platform's whole job, end to end, with every real part: the carrier API and the cabinet
websocket on a uvicorn process, channels_redis and a Celery worker on Redis, real dlib, the
database (PostgreSQL in CI), and the reference cabinet agent over a real socket.

announce -> courier deposit -> notification -> face pickup -> door opens -> picked up;
a stranger's face opens nothing; two enrolled recipients: the margin decides; the code works
as a fallback; wrong codes lock the keypad."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from cabinet_agent.config import config_from_mapping
from cabinets.services.credentials import cabinet_credential_issue
from cabinets.services.lifecycle import compartments_create
from core.actors import Actor
from courier.authentication import carrier_api_key_issue
from courier.models import AccessAttempt, Notification, Parcel, ParcelStatus
from identity.models import Identity
from identity.selectors import identity_has_face
from identity.services import consent_give, enrollment_photo_submit
from tests.factories import CabinetFactory, CarrierFactory, CourierFactory
from tests.identity.faces import FACES, requires_faces
from tests.live.agent import AgentThread
from tests.live.server import LiveServer, live_env
from tests.live.worker import WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), requires_faces]
DEADLINE_S = 90.0
LABELS = ["A01", "A02", "B01"]


def eventually(condition: Callable[[], Any], what: str, *, logs: Callable[[], str]) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}\n{logs()[-5000:]}")


@pytest.fixture
def platform(
    celery_worker: WorkerProcess, tmp_path: Path
) -> Iterator[tuple[LiveServer, WorkerProcess]]:
    # The server sends its tasks (face matching, notifications) to this test's real worker.
    env = live_env(CELERY_TASK_ALWAYS_EAGER="0", CELERY_TASK_DEFAULT_QUEUE=celery_worker.queue)
    server = LiveServer(tmp_path / "uvicorn.log", env=env)
    server.start()
    try:
        yield server, celery_worker
    finally:
        server.stop()


def _api(server: LiveServer, key: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{server.url}/api/v1/carrier/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_parcels_go_from_announcement_to_face_pickup_through_every_real_part(
    platform, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    server, worker = platform

    def logs() -> str:
        return f"--- worker\n{worker.log()[-3000:]}\n--- server\n{server.log_tail(40)}"

    cabinet = CabinetFactory(serial="E2E-0001")
    compartments_create(cabinet=cabinet, layout=[("A01", "S"), ("A02", "S"), ("B01", "M")])
    issued = cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    carrier = CarrierFactory(code="e2e", name="E2E Express")
    key = carrier_api_key_issue(carrier=carrier)
    CourierFactory(carrier=carrier, badge_number="E-1", pin_hash=make_password("2468"))

    # 1. The carrier announces two parcels for two people at this cabinet.
    for tracking, phone, name in (
        ("E2E-OBAMA", "+8613900000011", "Obama"),
        ("E2E-BIDEN", "+8613900000012", "Biden"),
    ):
        announced = _api(
            server,
            key,
            "parcels/",
            {
                "tracking_number": tracking,
                "recipient": {"phone": phone, "name": name},
                "size": "S",
                "cabinet": cabinet.serial,
            },
        )
        assert announced["status"] == "announced"
    # They prove their phones with a texted code (that flow: tests/identity/test_page.py).
    Identity.objects.filter(phone__in=["+8613900000011", "+8613900000012"]).update(
        phone_verified_at=timezone.now()
    )
    obama = Identity.objects.get(phone="+8613900000011")
    biden = Identity.objects.get(phone="+8613900000012")

    # 2. Both enroll; the real worker computes their templates.
    for person, photo in ((obama, "examples/obama.jpg"), (biden, "examples/biden.jpg")):
        consent_give(identity=person)
        enrollment_photo_submit(
            identity=person, data=(FACES / photo).read_bytes(), actor=Actor.system("test")
        )
    eventually(
        lambda: identity_has_face(identity=obama) and identity_has_face(identity=biden),
        "enrollment",
        logs=logs,
    )

    # 3. The cabinet connects over the websocket.
    camera = tmp_path / "camera.jpg"
    config = config_from_mapping(
        {
            "server": {"url": server.ws_url},
            "cabinet": {
                "serial": cabinet.serial,
                "credential": issued.credential,
                "signing_key": issued.signing_key_hex,
                "compartments": LABELS,
            },
            "agent": {
                "state_dir": str(tmp_path / "agent"),
                "camera_path": str(camera),
                "ack_timeout": 5,
            },
            "backoff": {"spread": 0.0, "cap": 2.0},
            "simulator": {"auto_close_after": 0.5},
        }
    )
    cabinet_side = AgentThread(config, camera)
    cabinet_side.start()
    agent = cabinet_side.agent
    try:
        eventually(lambda: agent.connected.is_set(), "the cabinet to connect", logs=logs)

        # 4. The courier deposits both parcels at the screen; each door closes by itself.
        for tracking in ("E2E-OBAMA", "E2E-BIDEN"):
            cabinet_side.call(
                agent.courier_request,
                badge="E-1",
                pin="2468",
                action="deposit",
                tracking_number=tracking,
            )
            eventually(
                lambda t=tracking: Parcel.objects.filter(
                    tracking_number=t, status=ParcelStatus.READY
                ).exists(),
                f"{tracking} to be ready",
                logs=logs,
            )
        assert [r["outcome"] for r in agent.courier_results] == ["unlocking", "unlocking"]
        obama_parcel = Parcel.objects.select_related("compartment").get(tracking_number="E2E-OBAMA")
        biden_parcel = Parcel.objects.select_related("compartment").get(tracking_number="E2E-BIDEN")
        assert obama_parcel.compartment.label != biden_parcel.compartment.label

        # 5. The recipients are notified (by the worker), with their pickup code.
        eventually(
            lambda: (
                Notification.objects.filter(
                    parcel__in=[obama_parcel, biden_parcel], kind="ready", sent_at__isnull=False
                ).count()
                == 2
            ),
            "notifications",
            logs=logs,
        )
        codes = dict(re.findall(r"SMS to (\+\d+): .*?Pickup code: (\d{6})", worker.log()))
        assert set(codes) == {obama.phone, biden.phone}

        # 6. A stranger's face opens nothing.
        opened_before = len(agent.executed_commands)
        cabinet_side.sees("examples/knn_examples/train/kit_harington/john1.jpeg")
        cabinet_side.call(agent.scan_face, "pickup")
        eventually(lambda: len(agent.face_results) == 1, "the stranger's face result", logs=logs)
        assert agent.face_results[0]["outcome"] == "no_match"

        # 7. Obama's face opens his compartment only; the door closes; picked up.
        # (the enrollment shot at another size: a clear match; a photo of another day falls in
        # the grey zone, which a single-frame cabinet cannot confirm)
        cabinet_side.sees("examples/obama-720p.jpg")
        cabinet_side.call(agent.scan_face, "pickup")
        eventually(lambda: len(agent.face_results) == 2, "Obama's face result", logs=logs)
        assert agent.face_results[1]["outcome"] == "unlocking", agent.face_results
        eventually(
            lambda: Parcel.objects.get(pk=obama_parcel.pk).status == ParcelStatus.PICKED_UP,
            "Obama's pickup",
            logs=logs,
        )
        assert len(agent.executed_commands) == opened_before + 1
        assert Parcel.objects.get(pk=biden_parcel.pk).status == ParcelStatus.READY
        # two enrolled recipients waiting: the decision kept its margin to the second best
        match = AccessAttempt.objects.get(method="face", success=True)
        assert match.identity_id == obama.pk
        assert match.second_distance - match.distance >= match.margin

        # 8. The code works as a fallback for Biden.
        cabinet_side.call(
            agent.enter_code, "000000" if codes[biden.phone] != "000000" else "111111"
        )
        cabinet_side.call(agent.enter_code, codes[biden.phone])
        eventually(lambda: len(agent.code_results) == 2, "code results", logs=logs)
        assert [r["outcome"] for r in agent.code_results] == ["no_match", "unlocking"]
        eventually(
            lambda: Parcel.objects.get(pk=biden_parcel.pk).status == ParcelStatus.PICKED_UP,
            "Biden's pickup",
            logs=logs,
        )

        # 9. Wrong codes lock the keypad (5 in the window, the wrong one above included).
        for wrong in ("100001", "100002", "100003", "100004", "100005"):
            cabinet_side.call(agent.enter_code, wrong)
        eventually(lambda: len(agent.code_results) == 7, "lockout", logs=logs)
        assert [r["outcome"] for r in agent.code_results[2:]] == ["no_match"] * 4 + ["locked_out"]
    finally:
        cabinet_side.stop()
