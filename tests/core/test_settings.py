"""Production settings refuse to start without their secrets; the deploy check is clean."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]
GOOD_ENV = {
    "DJANGO_SECRET_KEY": "x7#pL9@qR2$vT5^wY8&zA1*bC4(dE6)fG3_hJ0+kM-nP=sU~oI`aQ|eW}rX{yZ",
    "DATABASE_URL": "postgres://app@db.internal:5432/cabinets",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "DJANGO_ALLOWED_HOSTS": "cabinets.example.com",
    "CABINET_SIGNING_MASTER_KEY": "a-long-random-master-key-for-signing-cabinet-commands",
    "FACE_TEMPLATE_KEYS": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "ID_NUMBER_HASH_KEY": "a-long-random-key-for-hashing-resident-id-numbers",
    "SMS_BACKEND": "gateway.sms.ProviderBackend",
    "PICKUP_CODE_KEYS": "a-long-random-key-for-the-pickup-code-hmac",
}
# Warnings `check --deploy` may print under production settings, each with its reason.
EXPLAINED_DEPLOY_WARNINGS = {
    # HSTS preload is a one-way commitment for the whole domain; the operator opts in
    # with DJANGO_SECURE_HSTS_PRELOAD=true once every subdomain serves HTTPS.
    "security.W021",
}


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in GOOD_ENV and k != "DJANGO_SETTINGS_MODULE"
    }
    clean.update(env)
    clean["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("missing", sorted(GOOD_ENV))
def test_production_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in GOOD_ENV.items() if k != missing}
    result = _run("import django; django.setup()", env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert missing in result.stderr


def test_production_refuses_the_console_sms_backend() -> None:
    result = _run(
        "import django; django.setup()",
        {**GOOD_ENV, "SMS_BACKEND": "identity.notify.ConsoleSmsBackend"},
    )
    assert result.returncode != 0 and "real SMS gateway" in result.stderr


def test_production_refuses_a_short_secret_key() -> None:
    result = _run("import django; django.setup()", {**GOOD_ENV, "DJANGO_SECRET_KEY": "short"})
    assert result.returncode != 0 and "at least 50 characters" in result.stderr


def test_check_deploy_reports_nothing_unexplained() -> None:
    code = (
        "import django; django.setup()\n"
        "from django.core import checks\n"
        "for m in checks.run_checks(include_deployment_checks=True): print('ID', m.id)\n"
    )
    result = _run(code, GOOD_ENV)
    assert result.returncode == 0, result.stderr
    ids = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("ID ")}
    assert ids <= EXPLAINED_DEPLOY_WARNINGS, ids - EXPLAINED_DEPLOY_WARNINGS


def test_manage_check_deploy_passes_at_warning_level() -> None:
    """What an operator runs: only the explained warnings, and those silenced in
    production.py with their reason."""
    result = _run(
        "from django.core.management import execute_from_command_line;"
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        GOOD_ENV,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"no issues ({len(EXPLAINED_DEPLOY_WARNINGS)} silenced)" in result.stdout


def test_manage_check_deploy_fails_when_production_is_weakened() -> None:
    result = _run(
        "from django.core.management import execute_from_command_line;"
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        {**GOOD_ENV, "DJANGO_SECURE_SSL_REDIRECT": "false"},
    )
    assert result.returncode != 0 and "security.W008" in result.stderr


@pytest.mark.django_db
def test_migrations_match_the_models() -> None:
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


def test_every_beat_entry_names_a_task_the_worker_registers() -> None:
    from django.conf import settings

    from config.celery_app import app

    app.loader.import_default_modules()
    missing = {
        entry: spec["task"]
        for entry, spec in settings.CELERY_BEAT_SCHEDULE.items()
        if spec["task"] not in app.tasks
    }
    assert not missing, missing
