"""Durable cabinet state in one SQLite file: the outgoing event queue, executed commands, settings.

Calls are synchronous and short; the agent makes them from the event loop on purpose, so that
"check, then record" sequences cannot interleave with another coroutine.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import encode_frame

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    frame TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER
);
CREATE TABLE IF NOT EXISTS executed_command (
    command_id TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL,
    claimed_ms INTEGER NOT NULL,
    result TEXT
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class PendingEvent:
    seq: int
    id: str
    type: str


@dataclass(frozen=True)
class ExecutedCommand:
    command_id: str
    expires_ms: int
    result: dict[str, Any] | None
    # The cabinet clock reading the command was verified and accepted with: what its window
    # (expires_at + allowed skew) is judged against, not when the lock happened to move.
    claimed_ms: int


class Outbox:
    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A claimed command id must survive a power cut that follows the unlock.
        self._db.execute("PRAGMA synchronous=FULL")
        # Face images are overwritten on delete rather than left in free pages.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- outgoing events ------------------------------------------------------------------

    def enqueue(
        self, frame: dict[str, Any], *, created_ms: int, expires_ms: int | None = None
    ) -> bool:
        """Queue an event; False if an event with the same id is already queued."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO outbox (id, type, frame, created_ms, expires_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            (frame["id"], frame["type"], encode_frame(frame), created_ms, expires_ms),
        )
        return cursor.rowcount == 1

    def pending(self) -> list[PendingEvent]:
        rows = self._db.execute("SELECT seq, id, type FROM outbox ORDER BY seq").fetchall()
        return [PendingEvent(*row) for row in rows]

    def frame_text(self, event_id: str) -> str | None:
        row = self._db.execute("SELECT frame FROM outbox WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else row[0]

    def ack(self, event_id: str) -> bool:
        return self._db.execute("DELETE FROM outbox WHERE id = ?", (event_id,)).rowcount == 1

    def discard(self, event_id: str) -> str | None:
        """Delete a queued event that will never be accepted; its type, None if not queued."""
        row = self._db.execute("SELECT type FROM outbox WHERE id = ?", (event_id,)).fetchone()
        if row is None or not self.ack(event_id):
            return None
        return str(row[0])

    def purge_expired(self, now_ms: int) -> int:
        return self._db.execute(
            "DELETE FROM outbox WHERE expires_ms IS NOT NULL AND expires_ms < ?", (now_ms,)
        ).rowcount

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    # --- executed commands ----------------------------------------------------------------

    def claim_command(
        self, command_id: str, *, expires_ms: int, now_ms: int
    ) -> ExecutedCommand | None:
        """Record that a command is about to run. None if this call claimed it; otherwise the
        earlier record, and the caller must not run the command again."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO executed_command (command_id, expires_ms, claimed_ms)"
            " VALUES (?, ?, ?)",
            (command_id, expires_ms, now_ms),
        )
        if cursor.rowcount == 1:
            return None
        return self.executed_command(command_id)

    def executed_command(self, command_id: str) -> ExecutedCommand | None:
        row = self._db.execute(
            "SELECT command_id, expires_ms, result, claimed_ms FROM executed_command"
            " WHERE command_id = ?",
            (command_id,),
        ).fetchone()
        if row is None:
            return None
        return ExecutedCommand(
            command_id=row[0],
            expires_ms=row[1],
            result=None if row[2] is None else json.loads(row[2]),
            claimed_ms=row[3],
        )

    def complete_command(
        self, command_id: str, result_frame: dict[str, Any], *, now_ms: int
    ) -> None:
        """Store the result and queue it in one transaction: a restart keeps both or neither."""
        with self._transaction():
            self._db.execute(
                "UPDATE executed_command SET result = ? WHERE command_id = ?",
                (encode_frame(result_frame), command_id),
            )
            self.enqueue(result_frame, created_ms=now_ms)

    def purge_commands(self, *, before_ms: int) -> int:
        """Forget command ids whose expiry (plus skew, computed by the caller) has passed: a
        replay of one would be refused as expired anyway."""
        return self._db.execute(
            "DELETE FROM executed_command WHERE expires_ms < ?", (before_ms,)
        ).rowcount

    # --- small settings -------------------------------------------------------------------

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_state(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO state (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
