"""Admission control and closing once, in-process (WebsocketCommunicator, real Redis layer and
database). The HTTP 503 path and the reference agent honouring it run against a real uvicorn
in tests/cabinets/test_fleet_processes.py."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from cabinet_agent import protocol
from cabinets import consumers
from cabinets.admission import admission
from cabinets.push import cabinet_group
from cabinets.selectors import AuthResult, cabinet_authenticate
from cabinets.services.credentials import cabinet_credential_issue
from core.actors import Actor
from tests.cabinets.link import communicator, receive
from tests.factories import CabinetFactory, CompartmentFactory

pytestmark = pytest.mark.django_db(transaction=True)
STAFF = Actor.system("test")


@pytest.fixture
def issued():  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory(serial="SH-ADM-1")
    CompartmentFactory(cabinet=cabinet, label="A01")
    return cabinet_credential_issue(cabinet=cabinet, actor=STAFF)


async def _until(condition: Any, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_busy_process_refuses_a_handshake_at_once_with_4429_and_a_retry_hint(
    issued, settings, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_HANDSHAKE_MAX_IN_FLIGHT = 1
    settings.CABINET_ADMISSION_RETRY_S = 3
    settings.CABINET_ADMISSION_RETRY_MAX_S = 20
    release = threading.Event()
    opened: list[str | None] = []

    def slow_authenticate(authorization: str | None) -> AuthResult:
        # The one admitted handshake stays in flight (in its database call) until released.
        opened.append(authorization)
        assert release.wait(30)
        return cabinet_authenticate(authorization)

    async def authenticate(authorization: str | None) -> AuthResult:
        return await sync_to_async(slow_authenticate, thread_sensitive=False)(authorization)

    monkeypatch.setattr(consumers, "cabinet_authenticate_on_loop", authenticate)

    async def scenario() -> None:
        first = communicator(issued.credential)
        first_connect = asyncio.ensure_future(first.connect(timeout=30))
        await _until(lambda: admission.in_flight == 1)
        refused_before = admission.refused_total

        busy = communicator(issued.credential)
        connected, _ = await busy.connect(timeout=10)
        assert connected  # accepted only to say why (no denial-response extension here)
        closed = await busy.receive_output(timeout=10)
        assert closed["type"] == "websocket.close"
        assert closed["code"] == protocol.CloseCode.TRY_AGAIN_LATER
        hint = protocol.parse_retry_after(closed["reason"])
        assert hint is not None and 3 <= hint <= 20
        assert admission.refused_total == refused_before + 1
        # Refused before any database work: only the admitted handshake reached the credential check.
        assert len(opened) == 1
        await busy.wait()

        release.set()
        assert (await first_connect)[0]
        assert (await receive(first))["type"] == "hello"
        await first.disconnect()
        await _until(lambda: admission.in_flight == 0)
        # A free slot admits the next one.
        again = communicator(issued.credential)
        assert (await again.connect(timeout=10))[0]
        assert (await receive(again))["type"] == "hello"
        await again.disconnect()

    try:
        async_to_sync(scenario)()
    finally:
        release.set()


def test_a_refused_handshake_gets_no_consumer_and_no_channel(issued, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The gate refuses before Channels makes a consumer: no channel name, no receive on Redis.
    settings.CABINET_HANDSHAKE_MAX_IN_FLIGHT = 0
    made: list[object] = []
    real_init = consumers.CabinetConsumer.__init__

    def counting_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(consumers.CabinetConsumer, "__init__", counting_init)

    async def scenario() -> None:
        busy = communicator(issued.credential)
        connected, _ = await busy.connect(timeout=10)
        assert connected  # accepted only to say why (no denial-response extension here)
        closed = await busy.receive_output(timeout=10)
        assert (closed["type"], closed["code"]) == (
            "websocket.close",
            protocol.CloseCode.TRY_AGAIN_LATER,
        )
        assert protocol.parse_retry_after(closed["reason"]) is not None
        await busy.wait()

    async_to_sync(scenario)()
    assert made == []
    assert admission.in_flight == 0


def test_a_link_closed_by_a_revocation_is_not_closed_again_by_a_replacement(issued) -> None:  # type: ignore[no-untyped-def]
    # Under load a replacement, a revocation and a silence timeout can all reach the same
    # socket; a second close made uvicorn raise "Unexpected ASGI message 'websocket.close',
    # after sending 'websocket.close'" and kill the consumer before its disconnect cleanup.
    async def scenario() -> None:
        comm = communicator(issued.credential)
        assert (await comm.connect(timeout=10))[0]
        assert (await receive(comm))["type"] == "hello"
        layer = get_channel_layer()
        group = cabinet_group(issued.cabinet_id)
        await layer.group_send(group, {"type": "link.revoke", "reason": "revoked"})
        closed = await comm.receive_output(timeout=10)
        assert closed == {"type": "websocket.close", "code": protocol.CloseCode.REVOKED}
        await layer.group_send(group, {"type": "link.replace", "by": "another.connection"})
        await layer.group_send(group, {"type": "link.send", "frame": {"type": "ack", "ref": "x"}})
        assert await comm.receive_nothing(timeout=1.0)
        await comm.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("retry-after=12", 12.0), (" 3 ", 3.0), ("100000", 300.0)],
)
def test_a_retry_hint_is_read_from_the_header_or_the_close_reason(value, seconds) -> None:  # type: ignore[no-untyped-def]
    assert protocol.parse_retry_after(value) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "-1", "nan", "retry-after="])
def test_a_missing_or_broken_retry_hint_is_none(value) -> None:  # type: ignore[no-untyped-def]
    assert protocol.parse_retry_after(value) is None


def test_the_agent_waits_between_the_hint_and_half_as_long_again() -> None:
    import random

    rng = random.Random(1)
    delays = [protocol.admission_delay(10.0, rng=rng) for _ in range(1000)]
    assert min(delays) >= 10.0 and max(delays) <= 15.0
    assert max(delays) - min(delays) > 4.0  # spread, not one instant


def test_a_process_whose_event_loop_runs_late_refuses_until_it_catches_up(settings) -> None:  # type: ignore[no-untyped-def]
    import time

    from cabinets.admission import HandshakeAdmission

    settings.CABINET_HANDSHAKE_MAX_IN_FLIGHT = 100
    settings.CABINET_ADMISSION_MAX_LAG_S = 0.1
    gate = HandshakeAdmission()

    async def scenario() -> None:
        assert gate.try_enter()  # starts sampling this loop
        gate.leave(completed=True)
        time.sleep(0.5)  # the loop is blocked: every socket in the process waits
        await _until(lambda: gate.lag_s > 0.1)
        assert not gate.try_enter()
        assert gate.refused_total == 1
        await _until(lambda: gate.lag_s < 0.1)
        assert gate.try_enter()

    async_to_sync(scenario)()


def test_uvicorns_error_after_a_denial_response_is_dropped_only_for_a_refused_handshake() -> None:
    # uvicorn's websockets-sansio logs "ASGI callable returned without completing handshake."
    # after every denial response (a storm wrote 13,776); the line stays for any other app.
    import contextvars
    import logging

    from cabinets.admission import SPURIOUS_DENIAL_ERROR, SpuriousDenialError, admission_refuse

    sent: list[dict] = []  # type: ignore[type-arg]

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        sent.append(message)

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, message, None, None)

    log_filter = SpuriousDenialError()
    scope = {"type": "websocket", "extensions": {"websocket.http.response": {}}}

    async def refused_then_logged() -> tuple[bool, bool]:
        await admission_refuse(scope, send)
        return log_filter.filter(record(SPURIOUS_DENIAL_ERROR)), log_filter.filter(
            record("Exception in ASGI application")
        )

    async def only_logged() -> bool:
        return log_filter.filter(record(SPURIOUS_DENIAL_ERROR))

    # Each in a context of its own, as uvicorn runs each connection in a task of its own.
    refused = contextvars.copy_context().run(async_to_sync(refused_then_logged))
    assert refused == (False, True)
    assert sent[0]["status"] == protocol.ADMISSION_HTTP_STATUS
    assert contextvars.copy_context().run(async_to_sync(only_logged)) is True
