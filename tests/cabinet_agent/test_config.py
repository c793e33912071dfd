from __future__ import annotations

from pathlib import Path

import pytest

from cabinet_agent.config import ConfigError, config_from_mapping, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "cabinet_agent" / "example.toml"


def settings(**server):
    return {
        "server": {"url": "wss://lockers.example.org/ws/cabinet/", **server},
        "cabinet": {
            "serial": "CAB-0001",
            "credential": "k3y1d0001.c2VjcmV0LXNlY3JldC1zZWNyZXQ",
            "signing_key": "00" * 32,
            "compartments": ["A01"],
        },
    }


def test_the_example_config_loads_with_paths_relative_to_it():
    config = load_config(EXAMPLE)
    assert config.serial == "CAB-0001"
    assert config.state_path == EXAMPLE.parent / "../var/cabinet-agent/agent.sqlite3"
    assert len(config.signing_key) == 32
    assert "secret" not in repr(config) and config.credential not in repr(config)


def test_it_refuses_plain_ws_to_a_remote_host():
    with pytest.raises(ConfigError):
        config_from_mapping(settings(url="ws://lockers.example.org/ws/cabinet/"))
    config = config_from_mapping(
        settings(url="ws://lockers.example.org/ws/cabinet/", allow_insecure=True)
    )
    assert config.allow_insecure


@pytest.mark.parametrize(
    "url", ["https://lockers.example.org/ws/cabinet/", "wss://h/ws/cabinet/?token=x"]
)
def test_it_refuses_other_schemes_and_credentials_in_the_url(url):
    with pytest.raises(ConfigError):
        config_from_mapping(settings(url=url))


def test_a_missing_key_is_reported_by_name():
    data = settings()
    del data["cabinet"]["signing_key"]
    with pytest.raises(ConfigError, match="signing_key"):
        config_from_mapping(data)
