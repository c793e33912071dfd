"""Reads that run on the event loop itself, for the few hot paths of an ASGI process where a
thread hop costs more than the query (a cabinet's handshake: docs/benchmarks.md, "Cabinet
fleet").

A read is written once, as a Django QuerySet. On PostgreSQL it is compiled once per process
with placeholder values, and each call runs the compiled SQL on an `AsyncConnection` of
psycopg's, one per event loop, with the real values put in and Django's own converters
applied to the rows: no thread, no wait for the GIL behind the pool's threads, no query
compilation. Measured under 10,000 cabinets, each of the handshake's two reads spent
4-9 ms at the median going through `database_sync_to_async` for a query of a fraction of a
millisecond. On other databases (the embedded SQLite default) the same QuerySet runs through
the ORM on the thread pool, as before.

The connection is in autocommit mode, as Django's are: each read is its own snapshot, as a
read through the ORM outside a transaction is. It uses Django's connection parameters and
type adapters (timestamps in UTC, JSON loaded by the field's own converter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.db import OperationalError, connections
from django.db.models import QuerySet

logger = logging.getLogger(__name__)

Row = dict[str, Any]
T = TypeVar("T")


def on_pool_thread(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """An ORM call from async code, on the thread pool rather than the one thread Channels
    uses by default: with 10,000 cabinets, handshakes, events and telemetry writes must not
    queue behind each other. Each call is its own transaction, and each pool thread keeps its
    own persistent database connection (DATABASE_CONN_MAX_AGE)."""
    return database_sync_to_async(func, thread_sensitive=False)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    # Where each named placeholder's value goes in `params`.
    slots: dict[str, list[int]]
    names: list[str]
    compiler: Any


class LoopRead:
    """A `values_list` QuerySet built by `build(**values)`, run with `values` on the event loop
    (PostgreSQL) or through the ORM on the thread pool (any other database).

    `placeholders` gives, for each argument of `build`, a value of the right type that occurs
    nowhere else in the query's parameters: the query is compiled once with them, and each
    call puts its own values in their places."""

    def __init__(
        self, build: Callable[..., QuerySet[Any]], *, placeholders: dict[str, Any]
    ) -> None:
        self._build = build
        self._placeholders = placeholders
        self._compiled: _Compiled | None = None

    def rows(self, **values: Any) -> list[Row]:
        """Through the ORM, in the calling thread: the rows of the query's compiler, named as
        on the event loop."""
        queryset = self._build(**values)
        compiler = queryset.query.get_compiler(using=queryset.db)
        names = _names(queryset)
        return [dict(zip(names, row, strict=True)) for row in compiler.results_iter()]

    async def arows(self, **values: Any) -> list[Row]:
        if connections["default"].vendor != "postgresql":
            return await on_pool_thread(self.rows)(**values)
        compiled = self._compiled or await on_pool_thread(self._compile)()
        params = list(compiled.params)
        for name, positions in compiled.slots.items():
            for position in positions:
                params[position] = values[name]
        raw = await loop_connections.fetch(compiled.sql, params)
        width = len(compiled.names)
        rows = compiled.compiler.results_iter(results=[[row[:width] for row in raw]])
        return [dict(zip(compiled.names, row, strict=True)) for row in rows]

    def _compile(self) -> _Compiled:
        queryset = self._build(**self._placeholders)
        compiler = queryset.query.get_compiler(using=queryset.db)
        sql, params = compiler.as_sql()
        slots: dict[str, list[int]] = {}
        for name, placeholder in self._placeholders.items():
            slots[name] = [i for i, p in enumerate(params) if p == placeholder]
            if not slots[name]:
                raise ValueError(f"placeholder for {name!r} not found in the query's parameters")
        self._compiled = _Compiled(
            sql=sql, params=tuple(params), slots=slots, names=_names(queryset), compiler=compiler
        )
        return self._compiled


def _names(queryset: QuerySet[Any]) -> list[str]:
    """The columns of a values_list QuerySet, in the order its SQL selects them: as Django's
    own ValuesIterable names them (Django 5.2 selects in the order values_list gives)."""
    query = queryset.query
    if query.selected:
        return list(query.selected)
    return [*query.extra_select, *query.values_select, *query.annotation_select]


@dataclass
class _Held:
    connection: Any
    # time.monotonic() after which it is closed and made again (DATABASE_CONN_MAX_AGE, as
    # Django's own connections); None: kept for the process's life.
    closes_at: float | None


class LoopConnections:
    """One psycopg `AsyncConnection` per event loop (a connection belongs to the loop that
    made it), kept as long as `DATABASE_CONN_MAX_AGE` says, as Django keeps its own: 0 (the
    development and test default) opens one for each read and closes it after. Queries on a
    kept connection take turns (psycopg serialises them), each a fraction of a millisecond.
    A broken connection (the database restarted) is dropped and made again once; if that
    fails too, Django's `OperationalError` is raised to the caller, as the ORM would raise
    it."""

    def __init__(self) -> None:
        # A plain dict, not a WeakKeyDictionary: a loop that is collected would take its entry
        # with it and leave the connection open until the cyclic collector frees it. Entries
        # of stopped loops are closed when the next connection is made (and by close_idle).
        self._by_loop: dict[asyncio.AbstractEventLoop, _Held] = {}
        self._opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        import psycopg

        for attempt in (1, 2):
            max_age = connections["default"].settings_dict.get("CONN_MAX_AGE", 0)
            connection = await (self._kept(max_age) if max_age != 0 else _connect())
            try:
                async with connection.cursor() as cursor:
                    await cursor.execute(sql, params)
                    return list(await cursor.fetchall())
            except psycopg.OperationalError as exc:
                await self._drop(connection)
                if attempt == 2:
                    raise OperationalError(str(exc)) from exc
                logger.warning("event-loop database connection lost; connecting again")
            finally:
                if max_age == 0:
                    await self._drop(connection)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _kept(self, max_age: float | None) -> Any:
        loop = asyncio.get_running_loop()
        held = self._by_loop.get(loop)
        if held is not None and self._usable(held):
            return held.connection
        lock = self._opening.setdefault(loop, asyncio.Lock())
        async with lock:
            held = self._by_loop.get(loop)
            if held is not None and self._usable(held):
                return held.connection
            if held is not None:
                await self._drop(held.connection)
            self.close_idle()
            connection = await _connect()
            closes_at = None if max_age is None else time.monotonic() + max_age
            self._by_loop[loop] = _Held(connection, closes_at)
            return connection

    @staticmethod
    def _usable(held: _Held) -> bool:
        return not held.connection.closed and (
            held.closes_at is None or time.monotonic() < held.closes_at
        )

    async def _drop(self, connection: Any) -> None:
        loop = asyncio.get_running_loop()
        held = self._by_loop.get(loop)
        if held is not None and held.connection is connection:
            del self._by_loop[loop]
        # Broken already, or done with: closing may fail, and nothing more is to be done.
        with contextlib.suppress(Exception):
            await connection.close()

    def close_idle(self) -> int:
        """Close the connections of loops that have closed (tests run each scenario on a loop
        of its own): a connection left open keeps the test database from being dropped.
        Closes libpq's connection directly, as the loop is gone. Returns how many."""
        return self._close(lambda loop: loop.is_closed())

    def close_all(self) -> int:
        """Close every connection, whatever its loop is doing: for the end of a test run."""
        return self._close(lambda loop: True)

    def _close(self, which: Callable[[asyncio.AbstractEventLoop], bool]) -> int:
        closed = 0
        for loop, held in list(self._by_loop.items()):
            if which(loop):
                self._by_loop.pop(loop, None)
                if not held.connection.closed:
                    held.connection.pgconn.finish()
                    closed += 1
        return closed


async def _connect() -> Any:
    import psycopg

    def parameters() -> tuple[dict[str, Any], str]:
        django_connection = connections["default"]
        params = dict(django_connection.get_connection_params())
        # Django's cursor class is a sync one; Django binds parameters on the client
        # (%s placeholders, its own adapters): so does this connection.
        params.pop("cursor_factory", None)
        return params, django_connection.timezone_name

    params, timezone_name = await on_pool_thread(parameters)()
    try:
        connection = await psycopg.AsyncConnection.connect(
            autocommit=True, cursor_factory=psycopg.AsyncClientCursor, **params
        )
        # Django's timestamp loaders take the session's zone to be the connection's (UTC), as
        # Django sets it on its own connections (DatabaseWrapper.ensure_timezone).
        await connection.execute("SELECT set_config('TimeZone', %s, false)", [timezone_name])
    except psycopg.OperationalError as exc:
        raise OperationalError(str(exc)) from exc
    return connection


loop_connections = LoopConnections()
