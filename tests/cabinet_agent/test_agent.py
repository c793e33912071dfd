from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cabinet_agent import protocol
from cabinet_agent.agent import CabinetAgent
from cabinet_agent.camera import FileCamera
from cabinet_agent.config import AgentConfig
from cabinet_agent.drivers import SimulatedLockDriver, SimulatedSensors
from cabinet_agent.outbox import Outbox

from .fakes import CREDENTIAL, SERIAL, SIGNING_KEY, FakePlatform, eventually, signed_command


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))


def make_config(state_dir: Path, url: str, **changes: Any) -> AgentConfig:
    values: dict[str, Any] = {
        "server_url": url,
        "serial": SERIAL,
        "credential": CREDENTIAL,
        "signing_key": SIGNING_KEY,
        "compartments": ("A01", "A02"),
        "state_dir": state_dir,
        "firmware_version": "test-fw-1",
        "hello_timeout": 2.0,
        "backoff_base": 0.05,
        "backoff_cap": 0.2,
        "reconnect_spread": 0.0,
    }
    return AgentConfig(**{**values, **changes})


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "gray").save(buffer, "JPEG")
    return buffer.getvalue()


@contextlib.asynccontextmanager
async def running(
    agent: CabinetAgent, *, wait_connected: bool = True
) -> AsyncIterator[CabinetAgent]:
    task = asyncio.create_task(agent.run())
    try:
        if wait_connected:
            await asyncio.wait_for(agent.connected.wait(), 20)
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 20)


@contextlib.asynccontextmanager
async def platform(**options: Any) -> AsyncIterator[FakePlatform]:
    server = FakePlatform(**options)
    await server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(AssertionError):
            await server.stop()


def test_it_connects_with_the_credential_header_and_reports_telemetry(tmp_path):
    async def scenario():
        async with platform() as server:
            sensors = SimulatedSensors(temperature_c=3.5, power="battery", battery_pct=64)
            agent = CabinetAgent(make_config(tmp_path, server.url), sensors=sensors)
            async with running(agent):
                heartbeat = (await server.wait_for(lambda: server.of_type("heartbeat")))[0]
            request = server.requests[0]
            assert request.headers["Authorization"] == f"Cabinet {CREDENTIAL}"
            assert request.headers[protocol.PROTOCOL_HEADER] == "1"
            assert request.path == "/ws/cabinet/"
            assert agent.hello["heartbeat_interval"] == 30
            assert heartbeat["telemetry"] == {
                "temperature_c": 3.5,
                "power": "battery",
                "battery_pct": 64,
                "firmware_version": "test-fw-1",
                "config_version": 0,
                "doors": {"A01": "closed", "A02": "closed"},
            }

    run(scenario())


def test_a_wrong_credential_is_refused_at_the_handshake(tmp_path):
    async def scenario():
        async with platform() as server:
            config = make_config(
                tmp_path, server.url, credential="k3y1d0001.wrong-wrong-wrong-wrong-wrong"
            )
            agent = CabinetAgent(config)
            async with running(agent, wait_connected=False):
                await server.wait_for(lambda: len(server.requests) >= 2)
            assert server.sessions == 0 and agent.sessions == 0

    run(scenario())


def test_a_signed_unlock_opens_the_door_once_then_reports_receipt_result_and_door(tmp_path):
    async def scenario():
        async with platform() as server:
            lock = SimulatedLockDriver(["A01", "A02"])
            agent = CabinetAgent(make_config(tmp_path, server.url), lock=lock)
            async with running(agent):
                frame = signed_command(compartment="A01")
                await server.send(frame)
                await server.wait_for(lambda: server.of_type("door_event"))
                command_id = frame["command"]["id"]
                events = [f for f in server.received if f["type"] != "heartbeat"]
                assert [f["type"] for f in events] == [
                    "command_receipt",
                    "command_result",
                    "door_event",
                ]
                receipt, result, door = events
                assert receipt["command_id"] == result["command_id"] == command_id
                assert (result["status"], result["door"]) == ("succeeded", "open")
                assert (door["compartment"], door["event"]) == ("A01", "opened")
                assert lock.unlock_counts == {"A01": 1}
                assert agent.executed_commands == [command_id]
                await eventually(lambda: len(agent.outbox) == 0)

    run(scenario())


def test_a_command_delivered_twice_unlocks_once_and_resends_the_same_result(tmp_path):
    async def scenario():
        async with platform() as server:
            lock = SimulatedLockDriver(["A01", "A02"])
            agent = CabinetAgent(make_config(tmp_path, server.url), lock=lock)
            async with running(agent):
                frame = signed_command(compartment="A02")
                await server.send(frame)
                await server.send(frame)  # while the first copy is still running
                await server.wait_for(lambda: server.of_type("door_event"))
                await eventually(lambda: len(agent.outbox) == 0)
                await server.send(frame)  # after its result was acknowledged
                await server.wait_for(lambda: len(server.of_type("command_result")) == 2)
                results = server.of_type("command_result")
                assert results[0]["id"] == results[1]["id"]
                assert lock.unlock_counts == {"A02": 1}
                assert agent.duplicate_commands == [frame["command"]["id"]] * 2
                assert len(server.of_type("command_receipt")) == 1

    run(scenario())


def test_a_command_replayed_after_an_agent_restart_does_not_unlock_again(tmp_path):
    async def scenario():
        async with platform() as server:
            frame = signed_command(compartment="A01")
            first_lock = SimulatedLockDriver(["A01", "A02"])
            async with running(CabinetAgent(make_config(tmp_path, server.url), lock=first_lock)):
                await server.send(frame)
                await server.wait_for(lambda: server.of_type("door_event"))
            first_result = server.of_type("command_result")[0]

            second_lock = SimulatedLockDriver(["A01", "A02"])
            restarted = CabinetAgent(make_config(tmp_path, server.url), lock=second_lock)
            async with running(restarted):
                await server.send(frame)
                await server.wait_for(lambda: len(server.of_type("command_result")) == 2)
            assert second_lock.unlock_counts == {}
            assert restarted.duplicate_commands == [frame["command"]["id"]]
            assert server.of_type("command_result")[1] == first_result

    run(scenario())


def test_a_command_interrupted_by_a_crash_is_reported_failed_and_never_rerun(tmp_path):
    async def scenario():
        async with platform() as server:
            frame = signed_command(compartment="A01")
            crashed = Outbox(tmp_path / "agent.sqlite3")
            crashed.claim_command(
                frame["command"]["id"], expires_ms=frame["command"]["expires_at"], now_ms=1
            )
            crashed.close()
            lock = SimulatedLockDriver(["A01", "A02"])
            async with running(CabinetAgent(make_config(tmp_path, server.url), lock=lock)):
                await server.send(frame)
                result = (await server.wait_for(lambda: server.of_type("command_result")))[0]
            assert lock.unlock_counts == {}
            assert result["status"] == "failed" and result["detail"].startswith("interrupted")

    run(scenario())


@pytest.mark.parametrize(
    ("make_frame", "reason"),
    [
        (lambda: signed_command(issued_at=protocol.now_ms() - 600_000, ttl_ms=60_000), "expired"),
        (lambda: signed_command(key=b"forged-key-forged-key-forged-key"), "bad_signature"),
        (lambda: {**signed_command(), "signature": "00" * 32}, "bad_signature"),
        (lambda: signed_command(cabinet="CAB-0002"), "wrong_cabinet"),
        (lambda: signed_command(compartment="Z99"), "unknown_compartment"),
    ],
)
def test_a_command_that_fails_verification_is_rejected_and_never_executed(
    tmp_path, make_frame, reason
):
    async def scenario():
        async with platform() as server:
            lock = SimulatedLockDriver(["A01", "A02"])
            agent = CabinetAgent(make_config(tmp_path, server.url), lock=lock)
            async with running(agent):
                frame = make_frame()
                await server.send(frame)
                rejected = (await server.wait_for(lambda: server.of_type("command_rejected")))[0]
            assert (rejected["command_id"], rejected["reason"]) == (frame["command"]["id"], reason)
            assert lock.unlock_counts == {}
            assert agent.executed_commands == []
            assert not server.of_type("command_receipt")

    run(scenario())


def test_a_tampered_compartment_is_rejected(tmp_path):
    async def scenario():
        async with platform() as server:
            lock = SimulatedLockDriver(["A01", "A02"])
            async with running(CabinetAgent(make_config(tmp_path, server.url), lock=lock)):
                frame = signed_command(compartment="A01")
                frame["command"]["compartment"] = "A02"
                await server.send(frame)
                rejected = (await server.wait_for(lambda: server.of_type("command_rejected")))[0]
            assert rejected["reason"] == "bad_signature"
            assert lock.unlock_counts == {}

    run(scenario())


def test_events_raised_offline_are_replayed_in_order_and_removed_once_acked(tmp_path):
    async def scenario():
        server = FakePlatform(auto_ack=False)
        await server.start()
        lock = SimulatedLockDriver(["A01", "A02"])
        camera_file = tmp_path / "face.jpg"
        camera_file.write_bytes(jpeg())
        agent = CabinetAgent(
            make_config(tmp_path, server.url), lock=lock, camera=FileCamera(camera_file)
        )
        async with running(agent):
            await server.stop()
            await eventually(lambda: agent.disconnected.is_set())
            lock.force_door("A01")
            lock.close_door("A01")
            scan_id = await agent.scan_face("pickup")
            code_id = agent.enter_code("123456")
            assert len(agent.outbox) == 4

            await server.start()
            await asyncio.wait_for(agent.connected.wait(), 20)

            def events():
                return [f for f in server.received if f["type"] != "heartbeat"]

            await server.wait_for(lambda: len(events()) >= 4)
            replayed = events()
            assert [(f["type"], f.get("event")) for f in replayed] == [
                ("door_event", "forced"),
                ("door_event", "closed"),
                ("face_scan", None),
                ("code_entry", None),
            ]
            assert replayed[2]["id"] == scan_id and replayed[3]["id"] == code_id
            assert replayed[3]["code"] == "123456"
            assert len(agent.outbox) == 4  # nothing is dropped before the server acks it

            for frame in replayed:
                await server.ack(frame["id"])
            await eventually(lambda: len(agent.outbox) == 0)
            assert agent.acked == [f["id"] for f in replayed]
        await server.stop()

    run(scenario())


def test_an_unacknowledged_event_is_sent_again_with_the_same_id(tmp_path):
    async def scenario():
        async with platform(auto_ack=False) as server:
            lock = SimulatedLockDriver(["A01", "A02"])
            config = make_config(tmp_path, server.url, ack_timeout=0.2)
            async with running(CabinetAgent(config, lock=lock)) as agent:
                lock.force_door("A02")
                events = await server.wait_for(lambda: len(server.of_type("door_event")) >= 2)
                events = server.of_type("door_event")
                assert events[0] == events[1]
                await server.ack(events[0]["id"])
                await eventually(lambda: len(agent.outbox) == 0)

    run(scenario())


def test_a_face_scan_is_sent_and_retaken_with_the_light_when_the_server_asks(tmp_path):
    async def scenario():
        async with platform() as server:
            camera_file = tmp_path / "face.jpg"
            camera_file.write_bytes(jpeg())
            camera = FileCamera(camera_file)
            config = make_config(tmp_path, server.url)
            async with running(CabinetAgent(config, camera=camera)) as agent:
                scan_id = await agent.scan_face("pickup")
                scan = (await server.wait_for(lambda: server.of_type("face_scan")))[0]
                assert (scan["id"], scan["light_on"], scan["purpose"]) == (scan_id, False, "pickup")
                await server.send(
                    protocol.make_face_result(
                        scan_id=scan_id, outcome="retake_light_on", message="Too dark"
                    )
                )
                await server.wait_for(lambda: len(server.of_type("face_scan")) == 2)
                assert server.of_type("face_scan")[1]["light_on"] is True
                assert camera.light_flags == [False, True]
                assert agent.face_results[0]["message"] == "Too dark"

    run(scenario())


def test_set_config_is_applied_and_reported_in_the_next_heartbeat(tmp_path):
    async def scenario():
        async with (
            platform(heartbeat_interval=1) as server,
            running(CabinetAgent(make_config(tmp_path, server.url))) as agent,
        ):
            frame = signed_command(
                action="set_config", compartment=None, payload={"config_version": 7}
            )
            await server.send(frame)
            result = (await server.wait_for(lambda: server.of_type("command_result")))[0]
            assert (result["status"], result["door"]) == ("succeeded", None)
            assert agent.config_version == 7
            await server.wait_for(
                lambda: server.of_type("heartbeat")[-1]["telemetry"]["config_version"] == 7,
            )

    run(scenario())


def test_stopping_during_an_unlock_lets_it_finish_and_keeps_its_result(tmp_path):
    async def scenario():
        async with platform(auto_ack=False) as server:
            lock = SimulatedLockDriver(["A01", "A02"], unlock_delay=0.3)
            agent = CabinetAgent(make_config(tmp_path, server.url), lock=lock)
            async with running(agent):
                frame = signed_command(compartment="A01")
                await server.send(frame)
                await server.wait_for(lambda: server.of_type("command_receipt"))
            kept = Outbox(tmp_path / "agent.sqlite3")
            try:
                record = kept.executed_command(frame["command"]["id"])
                assert record is not None and record.result["status"] == "succeeded"
                assert "command_result" in [event.type for event in kept.pending()]
            finally:
                kept.close()
            assert lock.unlock_counts == {"A01": 1}

    run(scenario())


def test_the_agent_checks_command_windows_with_the_skew_the_server_announces(tmp_path):
    def late_command():
        # Expired 5 s ago: inside the configured 30 s allowance, outside an announced 1 s.
        return signed_command(issued_at=protocol.now_ms() - 125_000, ttl_ms=120_000)

    async def scenario():
        async with platform(max_clock_skew_ms=1_000) as server:
            agent = CabinetAgent(make_config(tmp_path / "a", server.url))
            async with running(agent):
                assert agent.max_clock_skew_ms == 1_000
                frame = late_command()
                await server.send(frame)
                rejected = (await server.wait_for(lambda: server.of_type("command_rejected")))[0]
            assert (rejected["command_id"], rejected["reason"]) == (
                frame["command"]["id"],
                "expired",
            )
        # A server of 1.0 announces nothing: the configured allowance applies.
        async with platform() as server:
            agent = CabinetAgent(make_config(tmp_path / "b", server.url))
            async with running(agent):
                assert agent.max_clock_skew_ms == protocol.DEFAULT_MAX_CLOCK_SKEW_MS
                await server.send(late_command())
                await server.wait_for(lambda: server.of_type("command_result"))
            assert not server.of_type("command_rejected")

    run(scenario())


def test_the_agent_records_the_cabinet_state_the_server_announces(tmp_path):
    async def scenario():
        async with platform() as server:
            agent = CabinetAgent(make_config(tmp_path, server.url))
            async with running(agent):
                assert agent.cabinet_state is None
                await server.send(protocol.make_cabinet_state(state="maintenance"))
                await eventually(lambda: agent.cabinet_state == "maintenance")
                await server.send(protocol.make_cabinet_state(state="active"))
                await eventually(lambda: agent.cabinet_state == "active")
                assert agent.connected.is_set()

    run(scenario())


def _queue_door_events(state_dir: Path, count: int) -> list[str]:
    """Events raised while the agent was not running: queued, not yet sent."""
    outbox = Outbox(state_dir / "agent.sqlite3")
    try:
        ids = []
        for _ in range(count):
            event = protocol.make_door_event(compartment="A01", event="closed", at=1)
            outbox.enqueue(event, created_ms=1)
            ids.append(event["id"])
        return ids
    finally:
        outbox.close()


def test_an_event_refused_as_invalid_is_dropped_and_one_refused_for_now_stays_queued(tmp_path):
    refused, postponed = _queue_door_events(tmp_path, 2)

    async def scenario():
        async with platform() as server:
            server.refusals = {refused: "invalid_frame", postponed: "retry_later"}
            config = make_config(tmp_path, server.url, ack_timeout=0.2)
            async with running(CabinetAgent(config)) as agent:
                await eventually(lambda: agent.discarded_events == [refused])
                assert [event.id for event in agent.outbox.pending()] == [postponed]
                # retry_later: sent again after the ack timeout, until the server stores it
                await server.wait_for(
                    lambda: [f["id"] for f in server.received].count(postponed) >= 2
                )
                del server.refusals[postponed]
                await eventually(lambda: len(agent.outbox) == 0)
                assert agent.acked == [postponed]
            assert [f["id"] for f in server.received].count(refused) == 1

    run(scenario())


def test_an_event_refused_as_invalid_is_not_replayed_after_a_reconnect(tmp_path):
    (refused,) = _queue_door_events(tmp_path, 1)

    async def scenario():
        server = FakePlatform()
        await server.start()
        server.refusals = {refused: "malformed_json"}
        lock = SimulatedLockDriver(["A01", "A02"])
        async with running(CabinetAgent(make_config(tmp_path, server.url), lock=lock)) as agent:
            await eventually(lambda: agent.discarded_events == [refused])
            await server.stop()
            await eventually(lambda: agent.disconnected.is_set())
            await server.start()
            await eventually(lambda: agent.sessions == 2)
            # Replay sends the queue in order: anything still queued goes before this event.
            lock.force_door("A02")
            marker = await server.wait_for(lambda: server.of_type("door_event")[1:])
            assert marker[-1]["compartment"] == "A02"
            await eventually(lambda: len(agent.outbox) == 0)
        await server.stop()
        assert [f["id"] for f in server.received].count(refused) == 1

    run(scenario())


def test_an_agent_given_an_empty_in_memory_queue_keeps_its_state_there(tmp_path):
    # An empty Outbox is falsy (len 0): it must still be used, not replaced by the state file
    # (a fleet simulator's thousands of agents would otherwise share one file).
    outbox = Outbox(":memory:")
    agent = CabinetAgent(
        make_config(tmp_path / "state", "ws://127.0.0.1:9/ws/cabinet/"), outbox=outbox
    )
    assert agent.outbox is outbox
    assert not (tmp_path / "state").exists()
    outbox.close()


def _burst(count: int = 8) -> list[tuple[int, bytes]]:
    return [(i * 150, jpeg()[:-2] + bytes([i]) + b"\xff\xd9") for i in range(count)]


def test_a_face_challenge_is_answered_with_a_burst_carrying_its_nonce(tmp_path):
    from cabinet_agent.camera import FramesBurstCamera

    async def scenario():
        async with platform() as server:
            camera = FramesBurstCamera(_burst())
            config = make_config(tmp_path, server.url)
            async with running(CabinetAgent(config, burst_camera=camera)) as agent:
                start_id = agent.start_face("pickup")
                start = (await server.wait_for(lambda: server.of_type("face_start")))[0]
                assert (start["id"], start["purpose"]) == (start_id, "pickup")
                challenge = protocol.make_face_challenge(
                    start_id=start_id,
                    challenge_id=protocol.new_id(),
                    nonce="n" * 32,
                    actions=["turn_left", "blink"],
                    expires_at=protocol.now_ms() + 30_000,
                    message="Turn your head slowly to the left. Please blink.",
                )
                await server.send(challenge)
                burst = (await server.wait_for(lambda: server.of_type("face_burst")))[0]
                assert (burst["challenge_id"], burst["nonce"]) == (
                    challenge["challenge_id"],
                    "n" * 32,
                )
                assert [f["t_ms"] for f in burst["frames"]] == [t for t, _ in _burst()]
                assert camera.asked == [["turn_left", "blink"]]
                assert agent.face_bursts == {start_id: burst["id"]}
                # a challenge this cabinet did not ask for is not answered
                await server.send({**challenge, "start_id": protocol.new_id()})
                await asyncio.sleep(0.3)
                assert len(server.of_type("face_burst")) == 1


# --- credential rotation (protocol §17, 1.2) ------------------------------------------------


def _rotation_payload() -> tuple[str, bytes, dict[str, str]]:
    credential, key_id, _ = protocol.new_credential()
    key = protocol.new_signing_key()
    return credential, key, {"key_id": key_id, "credential": credential, "signing_key": key.hex()}


def test_a_delivered_credential_is_stored_and_used_once_the_server_closes_with_4401(tmp_path):
    new, new_key, payload = _rotation_payload()

    async def scenario():
        async with (
            platform() as server,
            running(CabinetAgent(make_config(tmp_path, server.url))) as agent,
        ):
            server.accept(new)
            await server.send(
                signed_command(action="credential_rotate", compartment=None, payload=payload)
            )
            result = (await server.wait_for(lambda: server.of_type("command_result")))[0]
            assert result["status"] == "succeeded"
            assert agent.outbox.get_state("credential")["credential"] == new
            assert server.credential_used() == CREDENTIAL  # the link in use is not dropped

            await server.close(protocol.CloseCode.BAD_CREDENTIAL)
            await server.wait_for(lambda: server.sessions == 2)
            assert server.credential_used() == new
            # Commands on the new link are verified with the new signing key.
            await server.send(signed_command(compartment="A02", key=new_key))
            await server.wait_for(
                lambda: [r for r in server.of_type("command_result") if r["door"] == "open"]
            )
        # After a restart the state dir still wins over the configured credential.
        async with (
            platform() as server,
            running(CabinetAgent(make_config(tmp_path, server.url)), wait_connected=False),
        ):
            server.accept(new)
            await server.wait_for(lambda: server.sessions == 1)
            assert server.credential_used() == new

    run(scenario())


def test_a_confirm_result_asks_the_screen_for_digits_and_sends_them(tmp_path):
    from cabinet_agent.camera import FramesBurstCamera

    async def scenario():
        async with platform() as server:
            config = make_config(tmp_path, server.url)
            agent = CabinetAgent(config, burst_camera=FramesBurstCamera(_burst()))
            asked: list[str] = []
            agent.on_confirm = lambda frame: asked.append(frame["message"]) or "4321"
            async with running(agent):
                confirm_id = protocol.new_id()
                await server.send(
                    protocol.make_face_result(
                        scan_id=protocol.new_id(),
                        outcome="confirm",
                        message="Enter the last four digits of your phone number.",
                        confirm_id=confirm_id,
                    )
                )
                sent = (await server.wait_for(lambda: server.of_type("face_confirm")))[0]
                assert (sent["confirm_id"], sent["digits"]) == (confirm_id, "4321")
                assert asked == ["Enter the last four digits of your phone number."]
                assert agent.server_revision == 1  # the fake server announces no revision


def test_the_lock_record_keeps_the_clock_reading_the_command_was_accepted_with(tmp_path):
    # The window (expires_at + skew) is judged at acceptance: an unlock accepted on the last
    # millisecond of it runs, one a millisecond later is refused, and the lock record says
    # when (by this cabinet's clock) each accepted command was accepted.
    skew = 1_000
    issued = protocol.now_ms()
    at_edge, past_edge = (signed_command(issued_at=issued, ttl_ms=5_000) for _ in range(2))
    edge = at_edge["command"]["expires_at"] + skew
    now = {"ms": protocol.now_ms()}

    async def scenario():
        async with platform(max_clock_skew_ms=skew) as server:
            agent = CabinetAgent(make_config(tmp_path, server.url), clock=lambda: now["ms"])
            async with running(agent):
                now["ms"] = edge
                await server.send(at_edge)
                await server.wait_for(lambda: server.of_type("command_result"))
                now["ms"] = edge + 1
                await server.send(past_edge)
                rejected = (await server.wait_for(lambda: server.of_type("command_rejected")))[0]
                record = agent.outbox.executed_command(at_edge["command"]["id"])
                refused = agent.outbox.executed_command(past_edge["command"]["id"])
        assert (rejected["command_id"], rejected["reason"]) == (
            past_edge["command"]["id"],
            "expired",
        )
        assert record is not None and record.claimed_ms == edge
        assert refused is None


def test_a_refused_delivered_credential_falls_back_once_to_the_previous_one(tmp_path):
    withdrawn, _, payload = _rotation_payload()
    outbox = Outbox(tmp_path / "agent.sqlite3")
    outbox.set_state("credential", {"credential": withdrawn, "signing_key": payload["signing_key"]})
    outbox.set_state(
        "previous_credential", {"credential": CREDENTIAL, "signing_key": SIGNING_KEY.hex()}
    )

    async def scenario():
        async with (
            platform() as server,
            running(CabinetAgent(make_config(tmp_path, server.url), outbox=outbox)) as agent,
        ):
            assert [
                protocol.parse_credential(r.headers["Authorization"])[0] for r in server.requests
            ] == [
                payload["key_id"],
                CREDENTIAL.split(".")[0],
            ]
            assert agent.outbox.get_state("credential")["credential"] == CREDENTIAL
            assert agent.outbox.get_state("previous_credential") is None

    run(scenario())


def test_a_credential_rotate_without_a_valid_credential_fails_and_stores_nothing(tmp_path):
    async def scenario():
        async with (
            platform() as server,
            running(CabinetAgent(make_config(tmp_path, server.url))) as agent,
        ):
            await server.send(
                signed_command(
                    action="credential_rotate",
                    compartment=None,
                    payload={"credential": "not a credential", "signing_key": "zz"},
                )
            )
            result = (await server.wait_for(lambda: server.of_type("command_result")))[0]
            assert result["status"] == "failed"
            assert agent.outbox.get_state("credential") is None

    run(scenario())
