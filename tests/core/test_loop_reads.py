"""core/loop_reads.py: a QuerySet compiled once and run on the event loop (PostgreSQL), or
through the ORM on the thread pool (SQLite); the rows are the ORM's either way."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import OperationalError, connection
from django.db.models import Value
from django.utils import timezone

from cabinets import selectors
from cabinets.models import Cabinet, CabinetCredential
from cabinets.services.credentials import cabinet_credential_issue
from core.actors import Actor
from core.loop_reads import LoopRead, loop_connections
from tests.factories import CabinetFactory

pytestmark = pytest.mark.django_db(transaction=True)
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the event-loop path is PostgreSQL's"
)


@pytest.fixture
def cabinet_with_credential():  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory(
        serial="SH-LOOP-1", telemetry={"power": "mains", "doors": {"A01": "closed"}}
    )
    issued = cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    key_id = issued.credential.split(".")[0]
    expires = timezone.now() + timedelta(days=3)
    CabinetCredential.objects.filter(key_id=key_id).update(expires_at=expires)
    return cabinet, key_id, expires


def test_a_loop_read_gives_the_rows_the_orm_gives(cabinet_with_credential) -> None:  # type: ignore[no-untyped-def]
    cabinet, key_id, expires = cabinet_with_credential
    read = selectors._credential_read

    async def twice() -> tuple[list, list]:  # type: ignore[type-arg]
        # The first call compiles the query; the second runs what was compiled.
        return await read.arows(key_id=key_id), await read.arows(key_id="0" * 16)

    found, missing = async_to_sync(twice)()
    assert found == read.rows(key_id=key_id)
    assert missing == [] == read.rows(key_id="0" * 16)
    [row] = found
    assert row["cabinet_id"] == cabinet.pk
    assert row["cabinet__telemetry"] == {"power": "mains", "doors": {"A01": "closed"}}
    assert row["expires_at"] == expires and row["expires_at"].utcoffset() == timedelta(0)
    assert row["revoked_at"] is None


def test_a_placeholder_used_twice_is_filled_in_every_place(cabinet_with_credential) -> None:  # type: ignore[no-untyped-def]
    # The backlog's read names the cabinet twice (the row and its commands' subquery).
    cabinet, _, _ = cabinet_with_credential
    other = CabinetFactory(serial="SH-LOOP-2", state="maintenance")
    read = selectors._backlog_read

    async def both() -> tuple[list, list]:  # type: ignore[type-arg]
        now = timezone.now()
        return (
            await read.arows(cabinet_id=cabinet.pk, now=now),
            await read.arows(cabinet_id=other.pk, now=now),
        )

    first, second = async_to_sync(both)()
    assert first == [{"state": cabinet.state, "waiting": False}]
    assert second == [{"state": "maintenance", "waiting": False}]


def test_a_placeholder_that_the_query_does_not_hold_is_refused() -> None:
    read = LoopRead(
        lambda *, pk: Cabinet.objects.filter(serial="x").values_list("pk"), placeholders={"pk": -1}
    )
    with pytest.raises(ValueError, match="placeholder for 'pk'"):
        read._compile()


@on_postgresql
def test_on_postgresql_the_read_runs_on_the_loop_not_through_the_orm(
    cabinet_with_credential, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    _, key_id, _ = cabinet_with_credential
    read = selectors._credential_read
    async_to_sync(read.arows)(key_id=key_id)  # compiled

    def no_orm(**values):  # type: ignore[no-untyped-def]
        raise AssertionError("the ORM path was taken")

    monkeypatch.setattr(read, "rows", no_orm)
    monkeypatch.setattr(read, "_compile", no_orm)
    [row] = async_to_sync(read.arows)(key_id=key_id)
    assert row["cabinet__serial"] == "SH-LOOP-1"


def _terminate(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        return bool(cursor.fetchone()[0])


@pytest.fixture
def kept_connections(monkeypatch):  # type: ignore[no-untyped-def]
    """Connections kept, as production's DATABASE_CONN_MAX_AGE keeps them (tests use 0)."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)


def _backend_pid() -> Any:
    async def pid() -> int:
        return (await loop_connections.fetch("SELECT pg_backend_pid()", []))[0][0]

    return pid


@on_postgresql
def test_a_connection_the_database_dropped_is_made_again(
    cabinet_with_credential, kept_connections
) -> None:  # type: ignore[no-untyped-def]
    # A database restart or failover ends every session: the next read connects again.
    _, key_id, _ = cabinet_with_credential
    read = selectors._credential_read
    pid = _backend_pid()

    async def scenario() -> tuple[int, int, int, list]:  # type: ignore[type-arg]
        await read.arows(key_id=key_id)
        first, kept = await pid(), await pid()
        assert await database_sync_to_async(_terminate)(first)
        found = await read.arows(key_id=key_id)
        return first, kept, await pid(), found

    first, kept, second, found = async_to_sync(scenario)()
    assert first == kept != second
    assert [row["cabinet__serial"] for row in found] == ["SH-LOOP-1"]


@on_postgresql
def test_connections_last_as_long_as_the_database_settings_say(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pid = _backend_pid()

    async def three() -> list[int]:
        return [await pid(), await pid(), await pid()]

    # 0, as in development and tests: a connection for each read, closed after it.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    pids = async_to_sync(three)()
    assert len(set(pids)) == 3
    assert loop_connections.close_all() == 0  # none was left open

    # A short age: kept while young, made again once it has lived that long.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0.3)

    async def aged() -> tuple[int, int, int]:
        first, again = await pid(), await pid()
        await asyncio.sleep(0.4)
        return first, again, await pid()

    first, again, later = async_to_sync(aged)()
    assert first == again != later
    loop_connections.close_all()


@on_postgresql
def test_a_database_that_cannot_be_reached_raises_djangos_operational_error(
    cabinet_with_credential, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    _, key_id, _ = cabinet_with_credential
    loop_connections.close_all()
    from django.db.backends.postgresql.base import DatabaseWrapper

    original = DatabaseWrapper.get_connection_params

    def unreachable(self):  # type: ignore[no-untyped-def]
        return {**original(self), "port": 1, "host": "127.0.0.1", "connect_timeout": 2}

    monkeypatch.setattr(DatabaseWrapper, "get_connection_params", unreachable)
    with pytest.raises(OperationalError):
        async_to_sync(selectors._credential_read.arows)(key_id=key_id)


def test_each_value_is_named_by_its_own_column_whatever_the_order_values_list_gives() -> None:
    # values_list puts an annotation where it is named, the SQL selects it last: both paths
    # name the values by the SQL's order, so a value is never given another column's name.
    cabinet = CabinetFactory(serial="SH-LOOP-3")
    read = LoopRead(
        lambda *, pk: (
            Cabinet.objects.filter(pk=pk)
            .annotate(marker=Value("m"))
            .values_list("marker", "serial")
        ),
        placeholders={"pk": -1},
    )
    expected = [{"marker": "m", "serial": "SH-LOOP-3"}]
    assert read.rows(pk=cabinet.pk) == expected
    assert async_to_sync(read.arows)(pk=cabinet.pk) == expected
