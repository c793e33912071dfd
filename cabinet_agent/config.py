"""Agent configuration, read from a TOML file (see example.toml)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import protocol

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AgentConfig:
    server_url: str
    serial: str
    credential: str = field(repr=False)
    signing_key: bytes = field(repr=False)
    compartments: tuple[str, ...]
    state_dir: Path
    camera_path: Path | None = None
    # Protocol 1.2: bursts read from a video file (simulator, demo): every burst_step-th frame
    # from burst_start, burst_frames of them.
    burst_path: Path | None = None
    burst_start: int = 0
    burst_step: int = 2
    burst_frames: int = 16
    firmware_version: str = "ref-agent-1"
    heartbeat_interval: float = protocol.DEFAULT_HEARTBEAT_INTERVAL_S
    max_clock_skew_ms: int = protocol.DEFAULT_MAX_CLOCK_SKEW_MS
    hello_timeout: float = 10.0
    ack_timeout: float = 30.0
    interactive_ttl: float = 60.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    reconnect_spread: float = 10.0
    auto_close_after: float | None = None
    allow_insecure: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.server_url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ConfigError("server.url must be a ws:// or wss:// URL")
        if parts.query or parts.username or parts.password:
            raise ConfigError("server.url must not carry a query or credentials")
        # The credential travels in a header: over plain ws:// anyone on the path can read it.
        if (
            parts.scheme == "ws"
            and parts.hostname not in LOOPBACK_HOSTS
            and not self.allow_insecure
        ):
            raise ConfigError("refusing ws:// to a non-loopback host; use wss:// or allow_insecure")
        if not protocol.SERIAL_RE.fullmatch(self.serial):
            raise ConfigError("cabinet.serial is not a valid serial")
        if protocol.parse_credential(protocol.authorization_header(self.credential)) is None:
            raise ConfigError("cabinet.credential must look like <key_id>.<secret>")
        if not self.compartments:
            raise ConfigError("cabinet.compartments must list at least one label")
        bad = [label for label in self.compartments if not protocol.LABEL_RE.fullmatch(label)]
        if bad or len(set(self.compartments)) != len(self.compartments):
            raise ConfigError(f"cabinet.compartments has invalid or repeated labels: {bad}")
        if (
            self.backoff_base <= 0
            or self.backoff_cap < self.backoff_base
            or self.reconnect_spread < 0
        ):
            raise ConfigError("backoff: need 0 < base <= cap and spread >= 0")

    @property
    def state_path(self) -> Path:
        return self.state_dir / "agent.sqlite3"

    def with_overrides(self, **changes: Any) -> AgentConfig:
        return replace(self, **{key: value for key, value in changes.items() if value is not None})


def config_from_mapping(data: Mapping[str, Any], *, base_dir: Path | None = None) -> AgentConfig:
    base_dir = base_dir or Path.cwd()
    server = data.get("server", {})
    cabinet = data.get("cabinet", {})
    agent = data.get("agent", {})
    backoff = data.get("backoff", {})
    simulator = data.get("simulator", {})

    def path(value: str | None) -> Path | None:
        return None if value is None else (base_dir / Path(value).expanduser())

    try:
        signing_key = protocol.parse_signing_key(cabinet["signing_key"])
        state_dir = base_dir / Path(agent.get("state_dir", "state")).expanduser()
        return AgentConfig(
            server_url=server["url"],
            serial=cabinet["serial"],
            credential=cabinet["credential"],
            signing_key=signing_key,
            compartments=tuple(cabinet["compartments"]),
            firmware_version=cabinet.get("firmware_version", "ref-agent-1"),
            state_dir=state_dir,
            camera_path=path(agent.get("camera_path")),
            burst_path=path(agent.get("burst_path")),
            burst_start=int(agent.get("burst_start", 0)),
            burst_step=int(agent.get("burst_step", 2)),
            burst_frames=int(agent.get("burst_frames", 16)),
            heartbeat_interval=float(
                agent.get("heartbeat_interval", protocol.DEFAULT_HEARTBEAT_INTERVAL_S)
            ),
            max_clock_skew_ms=int(
                agent.get("max_clock_skew_ms", protocol.DEFAULT_MAX_CLOCK_SKEW_MS)
            ),
            hello_timeout=float(agent.get("hello_timeout", 10.0)),
            ack_timeout=float(agent.get("ack_timeout", 30.0)),
            interactive_ttl=float(agent.get("interactive_ttl", 60.0)),
            backoff_base=float(backoff.get("base", 1.0)),
            backoff_cap=float(backoff.get("cap", 60.0)),
            reconnect_spread=float(backoff.get("spread", 10.0)),
            auto_close_after=simulator.get("auto_close_after"),
            allow_insecure=bool(server.get("allow_insecure", False)),
        )
    except KeyError as exc:
        raise ConfigError(f"missing configuration key {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from exc


def load_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return config_from_mapping(data, base_dir=path.resolve().parent)
