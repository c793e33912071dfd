"""`manage.py demo_face_pickup` finds the platform where it runs: PUBLIC_BASE_URL (which
follows PORT) by default, or --server as a base URL or the full endpoint."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.identity.faces import requires_faces
from tests.live.server import free_port

pytestmark = [pytest.mark.django_db, requires_faces]


def test_it_connects_to_the_platforms_base_url_or_the_server_given(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    call_command("seed_demo", stdout=StringIO())
    port = free_port()  # nothing listens there: the error names the URL it tried
    settings.PUBLIC_BASE_URL = f"http://127.0.0.1:{port}"
    with pytest.raises(CommandError, match=rf"ws://127\.0\.0\.1:{port}/ws/cabinet/"):
        call_command("demo_face_pickup", "--timeout", "1", stdout=StringIO())

    other = free_port()
    with pytest.raises(CommandError, match=rf"ws://127\.0\.0\.1:{other}/ws/cabinet/"):
        call_command(
            "demo_face_pickup", "--server", f"ws://127.0.0.1:{other}", "--timeout", "1",
            stdout=StringIO(),
        )  # fmt: skip
