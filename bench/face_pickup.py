"""Face pickup latency, end to end: a cabinet sends a face scan -> the unlock reaches it.

Real parts: uvicorn (Channels consumer) + channels_redis + a Celery worker on Redis + real
dlib, and the reference cabinet agent over a websocket. Next to it, in the same run: the bare
dlib work for the same photo (HOG detection + encoding, and our whole probe pipeline).

Run: `make bench` (or `.venv/bin/python scripts/with_redis.py -- .venv/bin/python
bench/face_pickup.py`). Uses a throwaway SQLite database unless BENCH_DATABASE_URL is set.
Bounded: ROUNDS scans, each with a 15 s deadline; stops its processes at the end.

`--burst` (protocol 1.2): the cabinet asks for a challenge, answers it with a burst of 16
frames of a GRID clip, and the time is from the burst sent to the unlock received; next to
it, bare dlib (HOG detection, 68 landmarks, encoding) on the same 16 frames, and the whole
liveness check (identity.liveness.burst_check) on them. BURST_ROUNDS bursts (default 8).
"""

from __future__ import annotations

import asyncio
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FACES = Path(os.environ.get("FACES_DIR", ROOT.parent / "shared" / "faces"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
BURST_ROUNDS = int(os.environ.get("BENCH_BURST_ROUNDS", "8"))
CLIP = FACES / "video" / "grid" / "bbaf2n.mpg"  # blinks at frames 42-46
BURST = "--burst" in sys.argv
if BURST:
    # The clip is frontal and still: the platform draws blink challenges.
    os.environ["FACE_CHALLENGE_ACTIONS"] = "blink"
else:
    # Single frames (protocol 1.0/1.1) answer use_code unless an operator allows them.
    os.environ["FACE_ALLOW_SINGLE_FRAME"] = "true"
WORK = Path(tempfile.mkdtemp(prefix="bench-face-pickup-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", f"sqlite:///{WORK / 'db.sqlite3'}"
)
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ["LOG_LEVEL"] = "WARNING"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _jpeg_640(path: Path) -> bytes:
    from PIL import Image

    image = Image.open(path).convert("RGB")
    image.thumbnail((640, 640))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def setup_data(scan: bytes) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from cabinets.models import Compartment
    from cabinets.services.credentials import cabinet_credential_issue
    from cabinets.services.lifecycle import compartments_create
    from core.actors import Actor
    from courier.models import Carrier, Parcel, ParcelStatus
    from courier.services.parcels import parcel_transition
    from identity.models import Identity
    from identity.services import consent_give, enrollment_photo_process, enrollment_photo_submit
    from tests.factories import CabinetFactory

    call_command("migrate", verbosity=0)
    actor = Actor.system("bench")
    cabinet = CabinetFactory(serial="BENCH-0001")
    compartments_create(cabinet=cabinet, layout=[("A01", "S"), ("A02", "S")])
    issued = cabinet_credential_issue(cabinet=cabinet, actor=actor)
    person = Identity.objects.create(
        phone="+8613800009999", name="Bench Recipient", phone_verified_at=timezone.now()
    )
    consent_give(identity=person)
    if BURST:
        from cabinet_agent.camera import VideoBurstCamera

        enroll = [VideoBurstCamera(CLIP, count=1).read(i)[0][1] for i in (0, 70)]
    else:
        enroll = [(FACES / "examples" / "obama.jpg").read_bytes()]
    for data in enroll:
        photo = enrollment_photo_submit(identity=person, data=data, actor=actor)
        enrollment_photo_process(photo_id=photo.pk)
    compartment = Compartment.objects.get(cabinet=cabinet, label="A01")
    parcel = Parcel.objects.create(
        carrier=Carrier.objects.create(code="bench", name="Bench"),
        tracking_number="BENCH1",
        recipient=person,
        recipient_phone=person.phone,
        size="S",
        cabinet=cabinet,
    )
    now = timezone.now()
    parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=actor,
        changes={
            "compartment": compartment,
            "deposited_at": now,
            "pickup_deadline": now + timezone.timedelta(days=3),
        },
    )
    return {"serial": cabinet.serial, "issued": issued, "parcel_id": parcel.pk}


def bare_dlib(scan: bytes, rounds: int) -> dict[str, float]:
    import face_recognition
    import numpy as np
    from django.conf import settings
    from PIL import Image

    from identity.services import face_probe

    jitters = settings.FACE_ENCODER_JITTERS  # as the platform encodes a still
    rgb = np.asarray(Image.open(io.BytesIO(scan)).convert("RGB"))
    face_probe(image=scan)  # load the models
    detect, encode, probe = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        boxes = face_recognition.face_locations(rgb)
        t1 = time.perf_counter()
        face_recognition.face_encodings(rgb, boxes, num_jitters=jitters)
        t2 = time.perf_counter()
        face_probe(image=scan)
        t3 = time.perf_counter()
        detect.append(t1 - t0)
        encode.append(t2 - t1)
        probe.append(t3 - t2)
    return {
        "detect": statistics.median(detect),
        "encode": statistics.median(encode),
        "detect+encode": statistics.median([d + e for d, e in zip(detect, encode, strict=True)]),
        "probe": statistics.median(probe),
        "jitters": float(jitters),
    }


def bare_dlib_burst(frames: list[tuple[int, bytes]], rounds: int) -> dict[str, float]:
    """dlib alone on the burst's frames (decode, HOG detection, 68 landmarks, encoding), and
    the whole liveness check, in this process."""
    from identity.liveness import (
        BurstFrame,
        burst_check,
        decode_frame,
        get_default_landmark_encoder,
    )

    encoder = get_default_landmark_encoder()
    burst = [BurstFrame(t_ms=t, jpeg=jpeg) for t, jpeg in frames]
    bare, check = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for frame in burst:
            rgb = decode_frame(frame.jpeg, max_side=1280)
            [face] = encoder.observe(rgb)
            encoder.encode(rgb, face)
        t1 = time.perf_counter()
        result = burst_check(burst, ["blink"], encoder=encoder)
        t2 = time.perf_counter()
        assert result.ok, result.explain()
        bare.append(t1 - t0)
        check.append(t2 - t1)
    return {"bare": statistics.median(bare), "check": statistics.median(check)}


async def burst_pickups(
    data: dict[str, Any], scan_path: Path, port: int
) -> tuple[list[float], dict[str, float]]:
    from asgiref.sync import sync_to_async

    from cabinet_agent.agent import CabinetAgent
    from cabinet_agent.camera import VideoBurstCamera
    from cabinet_agent.config import config_from_mapping
    from cabinet_agent.drivers import SimulatedLockDriver
    from courier.models import Parcel

    unlocked_at: list[float] = []
    sent_at: list[float] = []
    last: list[list[tuple[int, bytes]]] = []

    class TimedLock(SimulatedLockDriver):
        async def unlock(self, label: str) -> bool:
            unlocked_at.append(time.perf_counter())
            return await super().unlock(label)

    class TimedCamera(VideoBurstCamera):
        async def burst(self, actions: list[str], light_on: bool) -> list[tuple[int, bytes]]:
            # Each burst's frames are new bytes (a frame is never accepted twice).
            self.quality = 80 + len(sent_at) % 15
            frames = await super().burst(actions, light_on)
            last[:] = [frames]
            sent_at.append(time.perf_counter())  # the agent queues and sends it now
            return frames

    config = config_from_mapping(
        {
            "server": {"url": f"ws://127.0.0.1:{port}/ws/cabinet/"},
            "cabinet": {
                "serial": data["serial"],
                "credential": data["issued"].credential,
                "signing_key": data["issued"].signing_key_hex,
                "compartments": ["A01", "A02"],
            },
            "agent": {"state_dir": str(WORK / "agent"), "camera_path": str(scan_path)},
            "backoff": {"spread": 0.0},
        }
    )
    camera = TimedCamera(CLIP, start=28, step=2, count=16)
    agent = CabinetAgent(config, lock=TimedLock(["A01", "A02"]), burst_camera=camera)
    runner = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.connected.wait(), 30)
    reset = sync_to_async(
        lambda: Parcel.objects.filter(pk=data["parcel_id"]).update(release_authorized_at=None)
    )
    latencies, bare, check = [], [], []
    # The machine is shared: each burst's bare dlib work is measured right after it, so that
    # both see the same load.
    bare_dlib_burst(camera.read(28), 1)  # load the models here
    for n in range(BURST_ROUNDS + 1):
        await reset()
        before = len(unlocked_at)
        agent.start_face("pickup")
        deadline = time.monotonic() + 30
        while len(unlocked_at) == before and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        if len(unlocked_at) == before:
            raise RuntimeError(f"no unlock for burst {n}: {agent.face_results[-1:]}")
        if n:  # the first burst loads the models in the worker
            latencies.append(unlocked_at[-1] - sent_at[-1])
            alone = await asyncio.to_thread(bare_dlib_burst, last[0], 1)
            bare.append(alone["bare"])
            check.append(alone["check"])
        await asyncio.sleep(0.3)
    agent.stop()
    await runner
    return latencies, {"bare": statistics.median(bare), "check": statistics.median(check)}


def start(cmd: list[str], log: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=open(WORK / log, "wb"), stderr=subprocess.STDOUT
    )


def wait_http(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


async def pickups(data: dict[str, Any], scan_path: Path, port: int) -> list[float]:
    from asgiref.sync import sync_to_async

    from cabinet_agent.agent import CabinetAgent
    from cabinet_agent.config import config_from_mapping
    from cabinet_agent.drivers import SimulatedLockDriver
    from courier.models import Parcel

    unlocked_at: list[float] = []

    class TimedLock(SimulatedLockDriver):
        async def unlock(self, label: str) -> bool:
            unlocked_at.append(time.perf_counter())
            return await super().unlock(label)

    config = config_from_mapping(
        {
            "server": {"url": f"ws://127.0.0.1:{port}/ws/cabinet/"},
            "cabinet": {
                "serial": data["serial"],
                "credential": data["issued"].credential,
                "signing_key": data["issued"].signing_key_hex,
                "compartments": ["A01", "A02"],
            },
            "agent": {"state_dir": str(WORK / "agent"), "camera_path": str(scan_path)},
            "backoff": {"spread": 0.0},
        }
    )
    agent = CabinetAgent(config, lock=TimedLock(["A01", "A02"]))
    runner = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.connected.wait(), 30)
    reset = sync_to_async(
        lambda: Parcel.objects.filter(pk=data["parcel_id"]).update(release_authorized_at=None)
    )
    latencies = []
    for n in range(ROUNDS + 1):
        await reset()
        before = len(unlocked_at)
        t0 = time.perf_counter()
        await agent.scan_face("pickup")
        deadline = time.monotonic() + 15
        while len(unlocked_at) == before and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        if len(unlocked_at) == before:
            raise RuntimeError(f"no unlock for scan {n}: {agent.face_results[-1:]}")
        if n:  # the first scan loads the models in the worker
            latencies.append(unlocked_at[-1] - t0)
        await asyncio.sleep(0.3)
    agent.stop()
    await runner
    return latencies


def main() -> None:
    # The enrollment shot at another size: a clear match, which a single frame needs (the door
    # policy opens on one frame only within 0.30; a photo of another day asks to confirm).
    scan = _jpeg_640(FACES / "examples" / "obama-720p.jpg")
    scan_path = WORK / "scan.jpg"
    scan_path.write_bytes(scan)
    data = setup_data(scan)
    port = _free_port()
    py = sys.executable
    server = start(
        [
            py,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--port",
            str(port),
            "--loop",
            "asyncio",
            "--ws",
            "websockets",
            "--log-level",
            "warning",
        ],
        "server.log",
    )
    worker = start(
        [py, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "WARNING"],
        "worker.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60)
        if BURST:
            latencies, burst_bare = asyncio.run(burst_pickups(data, scan_path, port))
        else:
            latencies = asyncio.run(pickups(data, scan_path, port))
            bare = bare_dlib(scan, ROUNDS)
    finally:
        for proc in (server, worker):
            proc.terminate()
        for proc in (server, worker):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    ms = lambda v: f"{v * 1000:.0f} ms"  # noqa: E731
    p50, p95 = statistics.median(latencies), _percentile(latencies, 0.95)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    if BURST:
        report = f"""## Face pickup by liveness burst (bench/face_pickup.py --burst)

Machine: {os.cpu_count()} vCPU, {cpu}, Python {platform.python_version()}; database
{os.environ["DATABASE_URL"].split(":")[0]}; one Celery worker (solo pool), one uvicorn process,
the reference agent over a loopback websocket. Burst: 16 frames (360x288 JPEG, every second
frame of the GRID clip bbaf2n from frame 28, 1.2 s, a blink), answering a blink challenge for
a recipient enrolled from two other frames; {BURST_ROUNDS} bursts after one warm-up.

| measure | median | p95 |
|---|---|---|
| burst sent by the cabinet -> unlock received by it | {ms(p50)} | {ms(p95)} |
| bare dlib on the same 16 frames: decode, HOG detection, 68 landmarks, encoding | {ms(burst_bare["bare"])} | |
| the whole liveness check on them (identity.liveness.burst_check) | {ms(burst_bare["check"])} | |

End to end costs {p50 / burst_bare["bare"]:.2f}x the bare dlib work (goal: at most 1.3x). Each
burst's bare dlib work was measured right after it, in the benchmark process, while the
machine was shared with other work: compare the ratio, not the absolute times.
"""
        print(report)
        (ROOT / "bench" / "results" / "face-burst.md").write_text(report)
        return
    report = f"""## Face pickup latency (bench/face_pickup.py)

Machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}; database
{os.environ["DATABASE_URL"].split(":")[0]}, Redis at {os.environ["REDIS_URL"].rsplit("@", 1)[-1]}; one Celery worker
(solo pool), one uvicorn process, the reference agent over a loopback websocket. Scan: a
640 px JPEG of the shot a recipient enrolled from, at another size (a clear match; single frames allowed); {ROUNDS} scans after one warm-up.

| measure | median | p95 |
|---|---|---|
| scan sent by the cabinet -> unlock received by it | {ms(p50)} | {ms(p95)} |
| bare dlib: HOG detection + encoding of the same photo ({int(bare["jitters"])} jitters, as the platform encodes a still) | {ms(bare["detect+encode"])} | |
| (detection / encoding alone) | {ms(bare["detect"])} / {ms(bare["encode"])} | |
| our probe pipeline (decode, checks, detection, encoding) | {ms(bare["probe"])} | |

End to end costs {p50 / bare["detect+encode"]:.1f}x the bare dlib work: the rest is the queue
hop to the worker, database reads and writes, the signed command, and two websocket pushes.
"""
    print(report)
    (ROOT / "bench" / "results" / "face-pickup.md").write_text(report)


if __name__ == "__main__":
    main()
