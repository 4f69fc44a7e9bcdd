"""One inference thread, fed by a queue: requests for the same loaded version (the same
adapter) are run together as one batch; the adapter is switched between batches, never in
the middle of one. Requests for versions that can answer in one forward pass (equal `mix`
keys: LoRA versions on one shared base) join one mixed batch instead. Control calls (attaching or removing an adapter on a shared base) run on
the same thread between batches, so a model is never changed while it computes.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

log = logging.getLogger("adaptflow.serving")


class QueueFull(RuntimeError):
    """More texts are waiting than the queue takes (serving.max_queue_texts): try again later."""


@dataclass
class Job:
    key: Hashable | None          # the loaded version to run on; None = a control call
    texts: list[str]
    target: Any = None            # what run_batch receives (the loaded version)
    fn: Callable[[], Any] | None = None
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)
    mix: Hashable | None = None   # jobs with equal mix keys may share a batch across keys


def pick_batch(keys_and_sizes: list[tuple[Hashable, int]], max_texts: int,
               mixes: list[Hashable | None] | None = None) -> list[int]:
    """Indices of queued jobs to run now: the oldest job, then every later job for the same
    key (or, with `mixes`, the same non-None mix key as the oldest) while the batch stays within
    max_texts (a single larger job still runs alone)."""
    if not keys_and_sizes:
        return []
    key, total = keys_and_sizes[0][0], keys_and_sizes[0][1]
    mix = mixes[0] if mixes else None
    chosen = [0]
    for i, (k, n) in enumerate(keys_and_sizes[1:], start=1):
        joins = k == key or (mix is not None and mixes[i] == mix)
        if joins and total + n <= max_texts:
            chosen.append(i)
            total += n
    return chosen


class Batcher:
    def __init__(self, run_batch: Callable[[Any, list[str]], list[Any]], wait_seconds: float, max_texts: int,
                 max_queue_texts: int | None = None, mix_key: Callable[[Any], Hashable | None] | None = None,
                 run_mixed: Callable[[list[tuple[Any, list[str]]]], list[list[Any]]] | None = None):
        self._run_batch = run_batch   # (target, texts) -> one result per text
        # mix_key(target): targets with equal keys answer in one pass, run_mixed([(target, texts), ...])
        # -> one result list per pair; None (or no mix_key): one target per batch.
        self._mix_key, self._run_mixed = (mix_key, run_mixed) if run_mixed is not None else (None, None)
        self._wait, self._max = wait_seconds, max_texts
        self._max_queue = max_queue_texts   # None: unbounded
        self._jobs: list[Job] = []
        self._control: list[Job] = []
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="adaptflow-inference", daemon=True)
        self.batches = 0   # forward passes run (for tests and /metrics)
        self.mixed_batches = 0   # of them, passes over requests for more than one version

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=30)

    def submit(self, key: Hashable, target: Any, texts: list[str]) -> Future:
        """Queue a request; QueueFull when serving.max_queue_texts texts already wait. A caller
        that gives up cancels the future: the job is dropped unless it already runs."""
        job = Job(key=key, texts=texts, target=target, mix=self._mix_key(target) if self._mix_key else None)
        with self._cv:
            waiting = sum(len(j.texts) for j in self._jobs)
            if self._max_queue is not None and waiting + len(texts) > self._max_queue:
                raise QueueFull(f"{waiting} texts are waiting (serving.max_queue_texts = {self._max_queue})")
            self._jobs.append(job)
            self._cv.notify_all()
        return job.future

    def call(self, fn: Callable[[], Any], timeout: float = 600) -> Any:
        """Run fn on the inference thread between batches and return its result (never call
        this from that thread: it would wait for itself)."""
        if threading.current_thread() is self._thread:
            return fn()
        return self.post(fn).result(timeout=timeout)

    def post(self, fn: Callable[[], Any]) -> Future:
        """Queue fn for the inference thread without waiting for it (e.g. freeing a version
        from the request path, which must not block)."""
        job = Job(key=None, texts=[], fn=fn)
        with self._cv:
            self._control.append(job)
            self._cv.notify_all()
        return job.future

    def _next(self) -> list[Job] | None:
        with self._cv:
            while not (self._stop or self._jobs or self._control):
                self._cv.wait()
            if self._control:
                return [self._control.pop(0)]
            if self._stop and not self._jobs:
                return None
            # Give the oldest job a few ms for company with the same key (batching), unless
            # it is already full or control work is waiting.
            deadline = self._jobs[0].queued_at + self._wait
            while not self._stop and not self._control:
                first = self._jobs[0]
                ready = sum(len(j.texts) for j in self._jobs
                            if j.key == first.key or (first.mix is not None and j.mix == first.mix)) >= self._max
                remaining = deadline - time.monotonic()
                if ready or remaining <= 0:
                    break
                self._cv.wait(remaining)
            if self._control:
                return [self._control.pop(0)]
            self._jobs = [j for j in self._jobs if not j.future.cancelled()]   # their callers gave up
            chosen = pick_batch([(j.key, len(j.texts)) for j in self._jobs], self._max, [j.mix for j in self._jobs])
            picked = [self._jobs[i] for i in chosen]
            for i in reversed(chosen):
                del self._jobs[i]
            # From here a job runs: a cancel that comes now is too late (its result is dropped).
            return [j for j in picked if j.future.set_running_or_notify_cancel()] or []

    def _loop(self) -> None:
        while True:
            jobs = self._next()
            if jobs is None:
                return
            if not jobs:
                continue
            if jobs[0].key is None:
                self._run_control(jobs[0])
                continue
            texts = [t for j in jobs for t in j.texts]
            mixed = len({j.key for j in jobs}) > 1
            try:
                if mixed:
                    per_job = self._run_mixed([(j.target, j.texts) for j in jobs])
                else:
                    results = self._run_batch(jobs[0].target, texts)
                    starts = [sum(len(x.texts) for x in jobs[:i]) for i in range(len(jobs))]
                    per_job = [results[a:a + len(j.texts)] for a, j in zip(starts, jobs)]
            except Exception:   # one request may have broken the batch: run each on its own
                log.exception("batch of %d text(s) in %d request(s) failed; running each alone", len(texts), len(jobs))
                for j in jobs:
                    self._run_alone(j)
                continue
            self.batches += 1
            self.mixed_batches += mixed
            for j, result in zip(jobs, per_job):
                j.future.set_result(result)

    def _run_alone(self, job: Job) -> None:
        """A request of a failed merged batch, on its own: only the request that fails, fails."""
        try:
            job.future.set_result(self._run_batch(job.target, job.texts))
            self.batches += 1
        except Exception as exc:   # the thread lives on
            job.future.set_exception(exc)

    @staticmethod
    def _run_control(job: Job) -> None:
        try:
            job.future.set_result(job.fn())
        except BaseException as exc:
            job.future.set_exception(exc)
