"""A durable journal of what must reach the chain, written before anything is sent (SQLite).

Every chain operation of a run (open a round, record a reply, close a round) is first a row here. A sender works
through the pending rows in order and marks each done with its transaction hash, so a chain outage or an
aggregator restart loses nothing, and, because each operation is keyed by (kind, round, node) and the sender
checks the chain before sending, nothing is sent twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,          -- open | record | reject | close
    round INTEGER NOT NULL,
    node TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL,       -- JSON: what the sender needs to build the transaction
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | done | failed
    tx_hash TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created REAL NOT NULL,
    UNIQUE (kind, round, node)
);
"""


@dataclass(frozen=True)
class Op:
    id: int
    kind: str
    round: int
    node: str
    payload: dict
    state: str
    tx_hash: str | None
    attempts: int
    last_error: str | None


class Journal:
    """Thread-safe; one file per run (``<out>/chain-journal.sqlite``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a row the sender may act on survives a power cut
        self._db.executescript(SCHEMA)

    def add(self, kind: str, round_: int, node: str, payload: dict) -> bool:
        """Append an operation; False if the same (kind, round, node) is already journalled (a restart)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO ops (kind, round, node, payload, created) VALUES (?, ?, ?, ?, ?)",
                (kind, round_, node, json.dumps(payload, sort_keys=True), time.time()))
            return cur.rowcount == 1

    def pending(self) -> list[Op]:
        return self._select("WHERE state = 'pending' ORDER BY id")

    def all(self) -> list[Op]:
        return self._select("ORDER BY id")

    def mark_done(self, op_id: int, tx_hash: str | None) -> None:
        with self._lock:
            self._db.execute("UPDATE ops SET state = 'done', tx_hash = ?, attempts = attempts + 1 WHERE id = ?",
                             (tx_hash, op_id))

    def mark_failed(self, op_id: int, error: str) -> None:
        """A permanent failure (the contract refused it): kept for the operator, never retried."""
        with self._lock:
            self._db.execute("UPDATE ops SET state = 'failed', last_error = ?, attempts = attempts + 1 WHERE id = ?",
                             (error, op_id))

    def note_attempt(self, op_id: int, error: str) -> None:
        with self._lock:
            self._db.execute("UPDATE ops SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error, op_id))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _select(self, where: str) -> list[Op]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, kind, round, node, payload, state, tx_hash, attempts, last_error FROM ops {where}"
            ).fetchall()
        return [Op(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7], r[8]) for r in rows]
