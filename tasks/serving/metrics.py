"""Prometheus figures for /metrics: requests, errors and latency per model, swaps, refusals.
A registry of its own per service (no process-global state; tests can run two services)."""
from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Requests answer in ~2 ms (tiny model) to ~1 s (MiniLM, 64 texts, 2 busy cores).
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNKNOWN = "(unknown)"   # requests naming no served model share one label: bounded cardinality


@dataclass
class ServingMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self):
        r = self.registry
        self.requests = Counter("adaptflow_requests", "Predict requests by model and HTTP status",
                                ["model", "status"], registry=r)
        self.errors = Counter("adaptflow_request_errors", "Predict requests answered with 4xx/5xx",
                              ["model", "status"], registry=r)
        self.latency = Histogram("adaptflow_request_latency_seconds", "Predict latency (queue + batch)",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.texts = Counter("adaptflow_texts", "Texts classified", ["model"], registry=r)
        self.swaps = Counter("adaptflow_swaps", "Alias moves the service followed", ["model"], registry=r)
        self.refusals = Counter("adaptflow_refusals", "Versions refused (e.g. base fingerprint mismatch)",
                                ["model"], registry=r)
        self.policy_blocked = Counter("adaptflow_policy_blocked", "Outputs the output policy blocked, by rule",
                                      ["model", "rule"], registry=r)
        self.abstentions = Counter("adaptflow_policy_abstentions",
                                   "Classifications under policy.min_confidence (routed to a person)",
                                   ["model"], registry=r)
        self.serving = Gauge("adaptflow_serving_version", "Version served per alias", ["model", "alias"],
                             registry=r)
        # Per version: what the canary check compares (the outcome store holds the same per request).
        self.version_requests = Counter("adaptflow_version_requests", "Requests per version, arm and HTTP status",
                                        ["model", "version", "arm", "status"], registry=r)
        self.version_signals = Counter("adaptflow_version_signals",
                                       "Requests per version with a live signal (error, policy_blocked, abstained)",
                                       ["model", "version", "signal"], registry=r)
        self.version_latency = Histogram("adaptflow_version_latency_seconds", "Latency per version",
                                         ["model", "version"], buckets=LATENCY_BUCKETS, registry=r)
        # POST /feedback by HTTP status (200: stored; 409/413/429: a rule refused it, docs/feedback.md).
        self.feedback = Counter("adaptflow_feedback", "Feedback requests by HTTP status", ["status"], registry=r)
        self.canary_share = Gauge("adaptflow_canary_share", "Share of unpinned traffic the canary gets",
                                  ["model"], registry=r)

    def request(self, model: str, status: int, seconds: float, texts: int = 0) -> None:
        self.requests.labels(model, str(status)).inc()
        if status >= 400:
            self.errors.labels(model, str(status)).inc()
        else:
            self.texts.labels(model).inc(texts)
        self.latency.labels(model).observe(seconds)

    def outcome(self, model: str, version: str, arm: str, status: int, seconds: float, signals: list[str]) -> None:
        self.version_requests.labels(model, version, arm, str(status)).inc()
        self.version_latency.labels(model, version).observe(seconds)
        for signal in signals:
            self.version_signals.labels(model, version, signal).inc()

    def watch_recorder(self, recorder) -> None:
        """The outcome recorder's counts, read when /metrics is scraped."""
        r = self.registry
        for name, doc, read in (
                ("adaptflow_outcomes_written", "Outcome rows committed to the store", lambda: recorder.counts.written),
                ("adaptflow_outcomes_dropped", "Outcome rows dropped (store down past outcomes.buffer_rows)",
                 lambda: recorder.counts.dropped),
                ("adaptflow_outcomes_pending", "Outcome rows waiting to be written", lambda: recorder.pending),
                ("adaptflow_outcomes_write_failures", "Failed writes to the outcome store",
                 lambda: recorder.counts.failures),
                ("adaptflow_outcomes_late", "Requests answered before their outcome row was committed",
                 lambda: recorder.counts.late)):
            Gauge(name, doc, registry=r).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
