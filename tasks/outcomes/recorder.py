"""Writing outcome rows from a serving replica: durable before the answer when the store is up,
never a failed request when it is not.

Requests hand their row to one writer thread and wait (up to outcomes.write_timeout_ms) for the
commit; rows that arrive together go in one transaction (a group commit: one fsync for many
requests under load). When a write fails, the rows stay in memory, bounded by
outcomes.buffer_rows (the oldest dropped past it, counted), new requests stop waiting, and the
writer retries with back-off until the store answers again.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

from tasks.outcomes.store import Outcome, OutcomeStore, RequestText, ServingEvent

log = logging.getLogger("adaptflow.outcomes")
MAX_BATCH_ROWS = 500
PRUNE_EVERY_SECONDS = 3600.0
Row = Outcome | ServingEvent | RequestText


@dataclass
class RecorderCounts:
    written: int = 0
    dropped: int = 0
    failures: int = 0
    late: int = 0           # requests answered before their row was committed (slow or down store)


class Recorder:
    def __init__(self, store: OutcomeStore, buffer_rows: int, retention_days: float, wait_seconds: float = 0.5,
                 store_texts: bool = False):
        self.store, self.buffer_rows, self.retention_days = store, buffer_rows, retention_days
        self.store_texts = store_texts   # outcomes.store_texts: serving hands a RequestText with each outcome
        self.wait_seconds = wait_seconds   # how long a request waits for its row's commit
        self.counts = RecorderCounts()
        self._queue: queue.Queue[tuple[Row, Future]] = queue.Queue()
        self._pending: deque[Row] = deque()   # rows a failed write left behind
        self._retry_at = 0.0
        self._backoff = 0.1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0

    @property
    def pending(self) -> int:
        return len(self._pending) + self._queue.qsize()

    def start(self) -> "Recorder":
        self._thread = threading.Thread(target=self._run, name="adaptflow-outcomes", daemon=True)
        self._thread.start()
        return self

    def stop(self, flush_seconds: float = 5.0) -> None:
        """Write what is queued (for up to `flush_seconds`), then stop."""
        deadline = time.monotonic() + flush_seconds
        while self.pending and time.monotonic() < deadline and self._thread and self._thread.is_alive():
            time.sleep(0.02)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=flush_seconds + 5)
        if self.pending:
            log.warning("stopping with %d outcome rows not written (the store did not answer)", self.pending)
        self.store.dispose()

    def record(self, row: Row) -> Future:
        """The row's future: True once committed, False when it was buffered instead (store down)."""
        future: Future = Future()
        self._queue.put((row, future))
        return future

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            if batch or self._pending:
                self._write(batch)
            self._maybe_prune()

    def _take(self) -> list[tuple[Row, Future]]:
        try:
            first = self._queue.get(timeout=0.05)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < MAX_BATCH_ROWS:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[tuple[Row, Future]]) -> None:
        failing = bool(self._pending)
        if failing and time.monotonic() < self._retry_at:   # the store is down: do not make requests wait
            self._buffer([row for row, _ in batch])
            for _, future in batch:
                future.set_result(False)
            return
        rows = list(self._pending) + [row for row, _ in batch]
        try:
            self._commit(rows)
        except Exception as exc:
            self.counts.failures += 1
            self._pending.clear()
            self._buffer(rows)
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 10.0)
            log.warning("outcome store write failed (%s: %s); %d rows buffered, retry in %.1f s",
                        type(exc).__name__, str(exc).splitlines()[0][:200], len(self._pending), self._backoff)
            for _, future in batch:
                future.set_result(False)
            return
        if failing:
            log.info("outcome store answers again: %d buffered rows written", len(rows) - len(batch))
        self._pending.clear()
        self._backoff = 0.1
        self.counts.written += sum(isinstance(r, Outcome) for r in rows)
        for _, future in batch:
            future.set_result(True)

    def _commit(self, rows: list[Row]) -> None:
        self.store.write([r for r in rows if isinstance(r, Outcome)], [r for r in rows if isinstance(r, ServingEvent)],
                         [r for r in rows if isinstance(r, RequestText)])

    def _buffer(self, rows: list[Row]) -> None:
        self._pending.extend(rows)
        while len(self._pending) > self.buffer_rows:
            self._pending.popleft()
            self.counts.dropped += 1

    def _maybe_prune(self) -> None:
        now = time.time()
        if self._pending or now - self._last_prune < PRUNE_EVERY_SECONDS:
            return
        self._last_prune = now
        try:
            gone = self.store.prune(now - self.retention_days * 86400)
        except Exception as exc:   # the next hour tries again
            log.warning("outcome retention pass failed: %s", type(exc).__name__)
            return
        if gone:
            log.info("outcome retention: %d rows older than %g days deleted", gone, self.retention_days)



def make_recorder(settings, root) -> Recorder | None:
    """The recorder `outcomes:` in params asks for (None: outcomes.enabled is false). The store is
    not contacted here: a replica starts, and answers, while the store is down."""
    from tasks.config.stores import database_url

    if not settings.enabled:
        return None
    store = OutcomeStore(database_url("outcomes.store", settings.store, root))
    return Recorder(store, settings.buffer_rows, settings.retention_days, settings.write_timeout_ms / 1000,
                    settings.store_texts)
