"""The `cost:` section of params.yaml: the deployment a strategy's cost of ownership is computed
for (tasks/evaluation/ownership.py). Each field is documented once, here; params.yaml repeats only
the defaults. Prices are list prices of a modest on-demand CPU instance; change them to yours."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.config.schema import require


@dataclass(frozen=True)
class CostSettings:
    # Training hardware: what one hour of the machine the run trained on costs (train_seconds and
    # tune_seconds are measured there). 0.10 USD/h: a 2-vCPU, 8 GB on-demand cloud instance.
    train_price_per_hour: float = 0.10
    # Serving hardware, per instance: price, cores and memory. Measured throughput is scaled by
    # serve_cores / measured_cores (the run measures on train.threads cores: 2 here).
    serve_price_per_hour: float = 0.10
    serve_cores: int = 2
    serve_memory_gb: float = 8.0
    measured_cores: int = 2
    # What a serving process holds besides weights: Python, torch, tokenizers, the HTTP server.
    # 400 MB: an idle `adaptflow serve` before any version loads (bench/serving.py measures it).
    process_overhead_mb: float = 400.0
    # What each loaded version holds besides its saved weights (the library's modules, Python
    # objects). bench/serving.py --tenants measured about 0.37 MB of resident memory per extra LoRA
    # version of MiniLM (1 -> 32 versions) against 0.31 MB saved: nothing worth adding by default.
    version_overhead_mb: float = 0.0
    # Traffic: requests a day (a request is one text), and the peak rate instances are sized for;
    # null: 3x the day's mean rate. The traffic plot scales both together.
    requests_per_day: float = 100_000.0
    peak_rps: float | None = None
    # Generation: tokens written per answer (a headline: about 16); throughput in requests/s is
    # generated_tokens_per_s / this.
    tokens_per_request: int = 16
    # Tenants (or tasks): each gets its own specialised version of the strategy, all of them
    # serving together; traffic is spread evenly over them.
    tenants: int = 1
    # The latency objective: a request's p95 in ms. Batches of serve_batch only when a whole batch
    # plus serving.batch_wait_ms fits in it, else one request at a time; a strategy whose measured
    # batch-1 p95 is over it cannot meet it at any price.
    latency_p95_ms: float = 1000.0
    serve_batch: int = 32          # the batch size throughput_examples_per_s was measured at (and serving.max_batch)
    batch_wait_ms: float = 5.0     # serving.batch_wait_ms: what the first request of a batch waits for company
    # Instances run at most this share of their measured capacity at peak: the rest absorbs
    # queueing, so the p95 objective holds (a queue grows fast past ~70 % busy).
    max_utilisation: float = 0.7
    # Storage of every tenant's version (adapter, full model or prompt), per GB and month.
    storage_price_per_gb_month: float = 0.023
    # The total is one-time cost (training and tuning every tenant's version) + this many months
    # of serving and storage.
    horizon_months: int = 12

    def __post_init__(self):
        require(self.train_price_per_hour >= 0 and self.serve_price_per_hour >= 0
                and self.storage_price_per_gb_month >= 0, "prices must be >= 0")
        require(self.serve_cores >= 1 and self.measured_cores >= 1, "serve_cores and measured_cores must be >= 1")
        require(self.serve_memory_gb > 0, "serve_memory_gb must be positive")
        require(0 <= self.process_overhead_mb < 1024 * self.serve_memory_gb,
                "process_overhead_mb must be >= 0 and below serve_memory_gb")
        require(self.version_overhead_mb >= 0, "version_overhead_mb must be >= 0")
        require(self.requests_per_day > 0, "requests_per_day must be positive")
        require(self.peak_rps is None or self.peak_rps >= self.requests_per_day / 86400,
                "peak_rps must be at least the mean rate, requests_per_day / 86400 (or null: 3x the mean)")
        require(self.tokens_per_request >= 1, "tokens_per_request must be >= 1")
        require(self.tenants >= 1, "tenants must be >= 1")
        require(self.latency_p95_ms > 0, "latency_p95_ms must be positive")
        require(self.serve_batch >= 1 and self.batch_wait_ms >= 0, "serve_batch must be >= 1, batch_wait_ms >= 0")
        require(0 < self.max_utilisation <= 1, "max_utilisation must be in (0, 1]")
        require(self.horizon_months >= 1, "horizon_months must be >= 1")

    @property
    def peak(self) -> float:
        """Peak requests per second instances are sized for."""
        return self.peak_rps if self.peak_rps is not None else 3 * self.requests_per_day / 86400
