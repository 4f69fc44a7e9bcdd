"""One answer as an outcome row (tasks/outcomes): figures only, never the request's text, and
the live signals it carries (tasks/tasktypes/signals.py), also counted per version in /metrics."""
from __future__ import annotations

import asyncio
from typing import Any

from tasks.outcomes.store import Outcome
from tasks.serving.pool import Loaded
from tasks.tasktypes.signals import live_signals


def summarize(answer: dict[str, Any] | None) -> tuple[int, int, list]:
    """(outputs blocked by the policy, abstentions, the answers: labels or output lengths)."""
    if not answer:
        return 0, 0, []
    if "predictions" in answer:   # the shapes the task types' response schemas declare
        items = answer["predictions"]
        return (sum(bool(p.get("blocked")) for p in items), sum(bool(p.get("abstained")) for p in items),
                [p.get("label") for p in items])
    outputs, verdicts = answer.get("outputs", []), answer.get("policy", [])
    return (sum(bool(v.get("blocked")) for v in verdicts), 0,
            [len(o) if isinstance(o, str) else None for o in outputs])


def make_outcome(service, *, request_id: str, arrived: float, loaded: Loaded, alias: str | None, routed: bool,
                 route: str, status: int, seconds: float, texts: int, answer: dict | None) -> Outcome:
    blocked, abstained, answers = summarize(answer)
    arm = alias or "pinned"
    outcome = Outcome(request_id=request_id, at=arrived, replica=service.replica, model=loaded.model,
                      version=loaded.version, arm=arm, routed=routed, route=route, status=status,
                      latency_ms=round(seconds * 1000, 3), texts=texts, blocked=blocked, abstained=abstained,
                      answers=answers)
    # The per-request signals the service can tell alone (slow needs the champion's p95: the check's).
    signals = [name for name, spec in live_signals().items() if spec.fired(getattr(outcome, spec.column))]
    service.metrics.outcome(loaded.model, loaded.version, arm, status, seconds, signals)
    return outcome


async def record(service, outcome: Outcome, *more) -> None:
    """Wait for the row's commit (outcomes.write_timeout_ms at most): durable before the client
    hears back, unless the store is slow or down, when the row stays buffered and the answer goes.
    `more`: rows that go with it (the request's texts with outcomes.store_texts)."""
    recorder = service.recorder
    if recorder is None:
        return
    futures = [asyncio.wrap_future(recorder.record(row)) for row in (*more, outcome)]
    try:
        written = all(await asyncio.wait_for(asyncio.shield(asyncio.gather(*futures)), recorder.wait_seconds))
    except asyncio.TimeoutError:
        written = False
    if not written:
        recorder.counts.late += 1
