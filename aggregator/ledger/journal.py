"""A durable journal of what must reach the chain, written before anything is sent (SQLite).

Every chain operation of a run (open a round, record a reply, close a round) is first a row here. A sender works
through the pending rows in order and marks each done with its transaction hash, so a chain outage or an
aggregator restart loses nothing, and, because each operation is keyed by (run, kind, round, node) and the sender
compares what the chain already holds with the row before sending, nothing is sent twice or adopted unchecked.

A round's outcomes (records, rejections) are journalled *held*: they are released to the sender only once the
round is committed in summary.json (``release``). An aggregator killed before that leaves held rows; its resume
marks those of rounds the summary does not hold *superseded* (kept for the audit, never sent), runs the round
again and journals fresh rows, so chain and summary agree record for record (``reconcile``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STATES = ("held", "pending", "done", "failed", "superseded")

SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,        -- the run on the registry (0x-hex bytes32)
    kind TEXT NOT NULL,          -- open | record | reject | close
    round INTEGER NOT NULL,
    node TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL,       -- JSON: what the sender needs to build the transaction
    state TEXT NOT NULL DEFAULT 'pending',  -- held | pending | done | failed | superseded
    tx_hash TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ops_key ON ops (run_id, kind, round, node) WHERE state != 'superseded';
"""


class JournalError(RuntimeError):
    """The journal cannot be used as it is (another zk0 version's file), or a row contradicts one already there."""


@dataclass(frozen=True)
class Op:
    id: int
    run_id: str
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
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a row the sender may act on survives a power cut
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(ops)")}
            if columns and "run_id" not in columns:
                raise JournalError(f"{self.path} was written by an older zk0 (no run ids): move it away, or use "
                                   "another output folder")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise JournalError(f"{self.path} is not a usable chain journal ({err}): move it away") from None

    def add(self, run_id: str, kind: str, round_: int, node: str, payload: dict, held: bool = False) -> bool:
        """Append an operation (``held``: not to be sent before ``release``); False if the same operation is already
        journalled with the same payload (a restart re-journals it). JournalError if it is journalled with another
        payload: the run would say two different things about one slot."""
        text = json.dumps(payload, sort_keys=True)
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO ops (run_id, kind, round, node, payload, state, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, kind, round_, node, text, "held" if held else "pending", time.time()))
            if cur.rowcount == 1:
                return True
            (existing,) = self._db.execute(
                "SELECT payload FROM ops WHERE run_id = ? AND kind = ? AND round = ? AND node = ? "
                "AND state != 'superseded'", (run_id, kind, round_, node)).fetchone()
        if json.loads(existing) != json.loads(text):
            raise JournalError(f"{kind} of round {round_} {node} is already journalled with another payload: "
                               f"{existing} (now {text})")
        return False

    def release(self, run_id: str, round_: int) -> int:
        """The round is committed (summary.json holds it): its held rows may be sent. Returns how many."""
        with self._lock:
            return self._db.execute(
                "UPDATE ops SET state = 'pending' WHERE run_id = ? AND round = ? AND state = 'held'",
                (run_id, round_)).rowcount

    def reconcile(self, run_id: str, committed: Iterable[int]) -> dict[str, int]:
        """On resume: release the held rows of the ``committed`` rounds (the summary holds them: a crash came
        between summary and release) and supersede the held rows of every other round (an attempt the summary
        never recorded: its outcomes are not the run's). Returns {"released": n, "superseded": m}."""
        rounds = sorted(set(committed))
        marks = ",".join("?" * len(rounds))
        with self._lock:
            released = self._db.execute(
                f"UPDATE ops SET state = 'pending' WHERE run_id = ? AND state = 'held' AND round IN ({marks})",
                (run_id, *rounds)).rowcount if rounds else 0
            superseded = self._db.execute(
                "UPDATE ops SET state = 'superseded', last_error = 'superseded: the summary does not hold this "
                "attempt of the round' WHERE run_id = ? AND state = 'held'", (run_id,)).rowcount
        return {"released": released, "superseded": superseded}

    def has(self, run_id: str, kind: str, round_: int, node: str = "") -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM ops WHERE run_id = ? AND kind = ? AND round = ? AND node = ? AND "
                                    "state != 'superseded'", (run_id, kind, round_, node)).fetchone() is not None

    def pending(self, run_id: str | None = None) -> list[Op]:
        if run_id is None:
            return self._select("WHERE state = 'pending' ORDER BY id")
        return self._select("WHERE state = 'pending' AND run_id = ? ORDER BY id", (run_id,))

    def all(self) -> list[Op]:
        return self._select("ORDER BY id")

    def counts(self, run_id: str | None = None) -> dict[str, int]:
        """Rows per state (every state present, 0 when none), of one run or of all."""
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        with self._lock:
            found = dict(self._db.execute(f"SELECT state, COUNT(*) FROM ops {where} GROUP BY state", args).fetchall())
        return {state: found.get(state, 0) for state in STATES}

    def mark_done(self, op_id: int, tx_hash: str | None) -> None:
        with self._lock:
            self._db.execute("UPDATE ops SET state = 'done', tx_hash = ?, attempts = attempts + 1 WHERE id = ?",
                             (tx_hash, op_id))

    def mark_failed(self, op_id: int, error: str) -> None:
        """A permanent failure (the contract refused it, or the chain holds something else): kept for the
        operator, never retried, never reported as sent."""
        with self._lock:
            self._db.execute("UPDATE ops SET state = 'failed', last_error = ?, attempts = attempts + 1 WHERE id = ?",
                             (error, op_id))

    def note_attempt(self, op_id: int, error: str) -> None:
        with self._lock:
            self._db.execute("UPDATE ops SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error, op_id))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _select(self, where: str, args: tuple = ()) -> list[Op]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, run_id, kind, round, node, payload, state, tx_hash, attempts, last_error "
                f"FROM ops {where}", args).fetchall()
        return [Op(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], r[9]) for r in rows]
