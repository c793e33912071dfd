"""The demo cabinet's agent configuration, written by the demo seed for scripts/run.py."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from django.core.management import call_command

from cabinet_agent import protocol
from cabinet_agent.config import load_config
from cabinets.models import Cabinet, CabinetCredential
from cabinets.selectors import cabinet_authenticate
from cabinets.services.credentials import cabinet_credential_issue
from core.actors import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _var_dir(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path


def _seed() -> None:
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115


def test_the_seed_writes_a_private_agent_config_whose_credential_works(tmp_path: Path) -> None:
    _seed()
    path = tmp_path / "agents" / "SH-XH-0001.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = load_config(path)
    assert config.serial == "SH-XH-0001"
    assert config.compartments[0] == "A01" and len(config.compartments) == 12
    auth = cabinet_authenticate(protocol.authorization_header(config.credential))
    assert auth.session is not None and auth.session.serial == "SH-XH-0001"
    assert config.state_dir == tmp_path / "agents" / "SH-XH-0001.state"


def test_seeding_again_keeps_the_credential(tmp_path: Path) -> None:
    _seed()
    first = (tmp_path / "agents" / "SH-XH-0001.toml").read_text()
    _seed()
    assert (tmp_path / "agents" / "SH-XH-0001.toml").read_text() == first
    assert CabinetCredential.objects.filter(cabinet__serial="SH-XH-0001").count() == 1


def test_a_config_that_no_longer_matches_the_active_credential_is_replaced(
    tmp_path: Path,
) -> None:
    _seed()
    cabinet = Cabinet.objects.get(serial="SH-XH-0001")
    cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))  # rotated elsewhere
    _seed()
    config = load_config(tmp_path / "agents" / "SH-XH-0001.toml")
    assert cabinet_authenticate(protocol.authorization_header(config.credential)).session
