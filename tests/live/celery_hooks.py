"""`python -m tests.live.celery_hooks <celery arguments>`: the Celery command line with
test-only hooks, for the worker processes the live tests start. Production code knows
nothing of them; every hook is off unless its environment variable is set.

TEST_FACE_PAUSE_DIR=<dir>: the face encoder (identity.services.face_probe) of this worker
touches `<dir>/matching-<pid>` when a face match starts, then waits until `<dir>/release`
exists. A test sees the worker mid-match and can kill it there.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from celery import signals

PAUSE_DIR = os.environ.get("TEST_FACE_PAUSE_DIR")
_installed = False


@signals.task_prerun.connect
def _pause_face_matching(sender: Any = None, **kwargs: Any) -> None:
    # Patched at the first task, when Django is set up; face_scan_answer imports face_probe
    # from identity.services at each call, so the patch is what it finds.
    global _installed
    if PAUSE_DIR is None or _installed:
        return
    _installed = True
    from identity import services

    original = services.face_probe
    directory = Path(PAUSE_DIR)

    def paused_face_probe(**kwargs: Any) -> Any:
        (directory / f"matching-{os.getpid()}").touch()
        while not (directory / "release").exists():
            time.sleep(0.05)
        return original(**kwargs)

    services.face_probe = paused_face_probe


if __name__ == "__main__":
    from celery.__main__ import main

    sys.argv[0] = "celery"
    sys.exit(main())  # type: ignore[func-returns-value]
