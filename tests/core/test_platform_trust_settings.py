"""Keys and files of the platform itself: the embedded default generates its own secrets
owner-only in var/, pickup codes have their own rotating key, and responses carry the security
headers. (Production settings and `check --deploy`: tests/core/test_settings.py.)"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from config.settings.embedded import install_secret, owner_only_dir, owner_only_file
from courier.codes import pickup_code_hash, pickup_code_matches

ROOT = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_install_secret_is_generated_once_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "secret-key"
    first = install_secret(path)
    assert len(first) >= 50 and _mode(path) == 0o600
    assert install_secret(path) == first
    assert install_secret(tmp_path / "other") != first


def test_processes_starting_at_once_share_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret-key"
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def read() -> None:
        barrier.wait()
        seen.append(install_secret(path))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(seen) == 8 and len(set(seen)) == 1


def test_a_readable_database_file_and_var_dir_become_owner_only(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    owner_only_dir(var)
    assert _mode(var) == 0o700
    db = var / "db.sqlite3"
    owner_only_file(db)
    assert db.exists() and _mode(db) == 0o600
    db.chmod(0o644)
    owner_only_file(db)
    assert _mode(db) == 0o600


def test_the_embedded_default_uses_its_generated_secrets() -> None:
    script = (
        "from django.conf import settings; from pathlib import Path; import stat;"
        "v = settings.VAR_DIR;"
        "print(settings.SECRET_KEY == (v / 'secret-key').read_text().strip());"
        "print(settings.PICKUP_CODE_KEYS == [(v / 'pickup-code-key').read_text().strip()]);"
        "print(settings.SECRET_KEY != settings.PICKUP_CODE_KEYS[0]);"
        "print(oct(stat.S_IMODE((v / 'secret-key').stat().st_mode)));"
        "print(oct(stat.S_IMODE(Path(settings.DATABASES['default']['NAME']).stat().st_mode)))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings.local"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.split() == ["True", "True", "True", "0o600", "0o600"], result.stderr


def test_pickup_codes_survive_a_secret_key_rotation(settings: Any) -> None:
    code_hash = pickup_code_hash(parcel_id=7, code="123456")
    settings.SECRET_KEY = "a-completely-different-secret-key-after-rotation-0123456789"
    assert pickup_code_matches(parcel_id=7, code="123456", code_hash=code_hash)


def test_pickup_code_keys_rotate_newest_signs_all_verify(settings: Any) -> None:
    old = pickup_code_hash(parcel_id=7, code="123456")
    settings.PICKUP_CODE_KEYS = ["new-pickup-key", *settings.PICKUP_CODE_KEYS]
    new = pickup_code_hash(parcel_id=7, code="123456")
    assert new != old
    assert pickup_code_matches(parcel_id=7, code="123456", code_hash=old)
    assert pickup_code_matches(parcel_id=7, code="123456", code_hash=new)
    assert not pickup_code_matches(parcel_id=7, code="654321", code_hash=new)
    settings.PICKUP_CODE_KEYS = ["new-pickup-key"]  # the old key retired
    assert not pickup_code_matches(parcel_id=7, code="123456", code_hash=old)


@pytest.mark.django_db
def test_the_camera_is_allowed_only_on_the_enrollment_page() -> None:
    from tests.factories import IdentityFactory
    from tests.identity.test_page import logged_in

    client = logged_in(Client(), IdentityFactory())
    enroll = client.get("/enroll/")
    assert enroll.status_code == 200
    assert "camera=(self)" in enroll["Permissions-Policy"]
    for path in ("/enroll/login/", "/admin/login/", "/api/docs/"):
        policy = client.get(path)["Permissions-Policy"]
        assert "camera=()" in policy and "microphone=()" in policy, path


@pytest.mark.django_db
def test_pages_carry_a_csp_whose_nonce_marks_the_inline_blocks() -> None:
    from identity.services import consent_give
    from tests.factories import IdentityFactory
    from tests.identity.test_page import logged_in

    person = IdentityFactory()
    consent_give(identity=person, source="test")
    client = Client()
    logged_in(client, person)
    page = client.get("/enroll/")
    policy = page["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy and "object-src 'none'" in policy
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    html = page.content.decode()
    executable = html.count("<script") - html.count('type="application/json"')
    assert executable == html.count(f'<script nonce="{nonce}"') >= 1
    assert html.count("<style") == html.count(f'<style nonce="{nonce}"') >= 1
    assert page["Cache-Control"] == "no-store"
    admin = client.get("/admin/login/")
    assert "default-src 'self'" in admin["Content-Security-Policy"]
