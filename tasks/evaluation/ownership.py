"""What a strategy costs to own for a stated deployment (params `cost:`), as pure functions of the
run's own measurements: one-time cost (training and tuning each tenant's version), serving cost
per month (instances to carry the peak within the p95 objective, each holding what its tenants
need in memory), storage, the total over the horizon, and the traffic and tenant counts where the
cheapest strategy changes (break-even points).

The serving model, in numbers a run logs:
- a batch of b requests takes t(b) seconds, interpolated linearly between the measured batch of 1
  (latency_ms_p50) and of serve_batch (serve_batch / throughput), scaled by serve_cores /
  measured_cores;
- a request waits for the batch in progress and then its own: p95 ~ batch_wait_ms + 2 t(b); the
  largest b with that inside latency_p95_ms is used;
- tenants whose requests share one forward pass (`mixes`: LoRA versions on one base with mixed
  batching) fill batches of b; each distinct version in a pass adds mixed_ms_per_version (each
  LoRA layer picks every row's weights from its stack of versions: tasks/strategies/_lora_mixed.py,
  0.08-0.15 ms a version on MiniLM where PEFT's sub-batch per version cost 3.5-3.7 ms), and a full
  batch holds min(tenants, b) of them when traffic is spread evenly;
- the others get about b / tenants each (the batcher takes the oldest request's version and every
  queued request for it). Versions on one shared base (IA3, prompt tuning, LoRA unmixed) pay a
  switch before a batch whenever it is for another version than the last: with traffic spread
  evenly over N tenants, (1 - 1/N) of batches. A switch costs switch_ms with 2 versions held and
  switch_ms_per_version for each further one (PEFT's set_adapter walks every module and sets
  requires_grad on every version's layers). Whole copies (full fine-tunes) switch nothing.
  Switch and per-version costs are Python work on one thread: not scaled by cores.
  bench/serving.py --tenants (AMD EPYC, 2 cores, 32 LoRA versions of MiniLM): before these terms
  one version per batch ran at 13.5 requests/s where the model said 35; the batch-1 latency a run
  measures holds no switch, and at 32 tenants every batch is one request and one switch.
  Runs from before these figures were logged (no switch_ms) are costed with free switches;
- memory per instance: the process overhead, one base when versions share it, and each tenant's
  version (an adapter's bytes, or a whole copy of the base) plus what holding a version costs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tasks.config.cost import CostSettings

HOURS_PER_MONTH = 730.0
BYTES_PER_PARAM = 4.0    # fp32 weights, as serving holds them on a CPU
INFEASIBLE = float("inf")


@dataclass(frozen=True)
class Measured:
    """One strategy's figures the model reads (from its run's metrics: `from_metrics`)."""
    strategy: str
    shares_base: bool          # tenants' versions sit on one base in memory (adapters, prompts)
    mixes: bool                # requests for different tenants' versions share a forward pass
    base_bytes: float          # the base's weights in memory
    version_bytes: float       # one tenant's stored version (artifact_bytes)
    train_seconds: float       # training + tuning of one version
    latency_ms_p50: float      # batch of 1 (generation: one whole answer)
    latency_ms_p95: float
    throughput: float          # requests/s at the serve_batch batch size, on measured_cores
    quality: float | None = None   # shown beside costs, never used in them
    # What serving pays per batch for many versions on one base (tasks/training/switching.py);
    # None: the run did not measure it (a strategy with no shared base, or an older run).
    switch_ms: float | None = None             # a switch with 2 versions held
    switch_ms_per_version: float = 0.0         # each further version held adds this to a switch
    mixed_ms_per_version: float = 0.0          # each further distinct version in a mixed pass

    def switch_seconds(self, tenants: int) -> float:
        """One switch with `tenants` versions held (0 with one version, or none measured)."""
        if tenants < 2 or not self.shares_base or self.switch_ms is None:
            return 0.0
        return (self.switch_ms + (tenants - 2) * self.switch_ms_per_version) / 1000

    @classmethod
    def from_metrics(cls, strategy: str, m: dict[str, float], tokens_per_request: int = 16,
                     quality_key: str | None = None) -> "Measured | None":
        """None when the run lacks a figure the model needs (a failed run, or one from before
        footprints were logged)."""
        need = ("model_params", "tenant_shares_base", "tenant_mixes", "artifact_bytes", "latency_ms_p50",
                "latency_ms_p95")
        if any(k not in m for k in need):
            return None
        if "throughput_examples_per_s" in m:
            throughput = m["throughput_examples_per_s"]
        elif "generated_tokens_per_s" in m:
            throughput = m["generated_tokens_per_s"] / tokens_per_request
        else:
            return None
        return cls(strategy, bool(m["tenant_shares_base"]), bool(m["tenant_mixes"]),
                   m["model_params"] * BYTES_PER_PARAM, m["artifact_bytes"],
                   m.get("train_seconds", 0.0) + m.get("tune_seconds", 0.0), m["latency_ms_p50"],
                   m["latency_ms_p95"], throughput, m.get(quality_key) if quality_key else None,
                   m.get("switch_ms"), m.get("switch_ms_per_version", 0.0), m.get("mixed_ms_per_version", 0.0))


@dataclass(frozen=True)
class Ownership:
    strategy: str
    tenants: int
    peak_rps: float
    batch: float                   # requests per forward pass at peak
    capacity_rps: float            # one instance, at full load
    instances: int                 # 0: infeasible (see reason)
    memory_mb: float               # per instance
    tenants_per_instance: int
    one_time: float
    serving_per_month: float
    storage_per_month: float
    horizon_months: int
    reason: str = ""               # why it cannot meet the deployment, when it cannot

    @property
    def feasible(self) -> bool:
        return self.instances > 0

    @property
    def monthly(self) -> float:
        return self.serving_per_month + self.storage_per_month if self.feasible else INFEASIBLE

    @property
    def total(self) -> float:
        return self.one_time + self.horizon_months * self.monthly

    def metrics(self) -> dict[str, float]:
        """What a run logs (catalogue names: tasks/tasktypes/metrics.py)."""
        return {"monthly_cost": self.monthly, "one_time_cost": self.one_time, "horizon_cost": self.total,
                "serving_instances": float(self.instances), "serving_memory_mb": self.memory_mb,
                "serving_capacity_rps": self.capacity_rps}


def batch_seconds(m: Measured, b: float, s: CostSettings, tenants: int = 1) -> float:
    """Seconds one forward pass of b requests takes on a serving instance with `tenants` versions
    held, with what holding them adds per pass (module docstring)."""
    scale = s.serve_cores / s.measured_cores
    t1 = m.latency_ms_p50 / 1000
    tb = s.serve_batch / m.throughput if m.throughput > 0 else INFEASIBLE
    slope = (tb - t1) / (s.serve_batch - 1) if s.serve_batch > 1 else 0.0
    return (t1 + slope * (b - 1)) / scale + per_batch_overhead(m, b, tenants)


def per_batch_overhead(m: Measured, b: float, tenants: int) -> float:
    """Seconds a pass of b requests pays for the versions held: distinct versions in a mixed pass,
    or a switch before (1 - 1/tenants) of one-version passes."""
    if m.mixes:
        return max(0.0, min(tenants, b) - 1) * m.mixed_ms_per_version / 1000
    return (1 - 1 / tenants) * m.switch_seconds(tenants)


def capacity(m: Measured, tenants: int, s: CostSettings) -> tuple[float, float]:
    """(requests per forward pass, requests/s one instance carries) within the latency objective;
    (0, 0) when not even one request at a time meets it."""
    if m.latency_ms_p95 * s.measured_cores / s.serve_cores > s.latency_p95_ms:
        return 0.0, 0.0
    most = float(s.serve_batch) if m.mixes else max(1.0, s.serve_batch / tenants)
    fits = lambda b: s.batch_wait_ms + 2000 * batch_seconds(m, b, s, tenants) <= s.latency_p95_ms
    b = most
    while b > 1 and not fits(b):
        b = max(1.0, b / 2)
    return b, b / batch_seconds(m, b, s, tenants)


def memory_mb(m: Measured, held: int, s: CostSettings) -> float:
    """An instance's memory holding `held` tenants' versions."""
    return s.process_overhead_mb + (m.base_bytes if m.shares_base else 0.0) / 2**20 + held * _per_version_mb(m, s)


def _per_version_mb(m: Measured, s: CostSettings) -> float:
    """One more tenant's version in memory: its adapter (or a whole copy) and what holding it costs."""
    return (m.version_bytes if m.shares_base else m.base_bytes) / 2**20 + s.version_overhead_mb


def own(m: Measured, s: CostSettings, tenants: int | None = None, peak_rps: float | None = None) -> Ownership:
    """The cost of owning `m`'s strategy for `tenants` tenants at `peak_rps` (defaults: the settings')."""
    n = tenants if tenants is not None else s.tenants
    peak = peak_rps if peak_rps is not None else s.peak
    one_time = n * m.train_seconds / 3600 * s.train_price_per_hour
    storage = n * m.version_bytes / 1e9 * s.storage_price_per_gb_month
    per = _per_version_mb(m, s)
    room = 1024 * s.serve_memory_gb - memory_mb(m, 0, s)
    fit = int(room // per) if per > 0 else n
    b, cap = capacity(m, n, s)
    reason = ""
    if fit < 1:
        reason = f"one version needs {memory_mb(m, 1, s):.0f} MB; an instance has {1024 * s.serve_memory_gb:.0f} MB"
    elif cap <= 0:
        reason = (f"p95 at batch 1 is {m.latency_ms_p95:.0f} ms on {s.measured_cores} cores, over the "
                  f"{s.latency_p95_ms:.0f} ms objective")
    if reason:
        return Ownership(m.strategy, n, peak, 0.0, 0.0, 0, 0.0, 0, one_time, 0.0, storage, s.horizon_months, reason)
    held = min(n, fit)
    instances = max(1, math.ceil(n / held), math.ceil(peak / (cap * s.max_utilisation)))
    return Ownership(m.strategy, n, peak, b, cap, instances, memory_mb(m, held, s), held, one_time,
                     instances * s.serve_price_per_hour * HOURS_PER_MONTH, storage, s.horizon_months)


@dataclass(frozen=True)
class Segment:
    low: float
    high: float
    cheapest: str                  # "none": nothing meets the deployment there


def cheapest_along(measured: list[Measured], s: CostSettings, axis: str, points: list[float],
                   tie: float = 0.01) -> list[Segment]:
    """The cheapest strategy (total over the horizon) at each point of `axis` ("requests_per_day":
    traffic, peak scaled with it; "tenants"), merged into segments where it does not change. The
    cheapest so far stays while it is within `tie` (1 %) of the cheapest: instances come in whole
    numbers, and cents apart is not a break-even point."""
    out: list[Segment] = []
    for x in points:
        costs = {m.strategy: _at(m, s, axis, x).total for m in measured}
        feasible = {k: v for k, v in costs.items() if v < INFEASIBLE}
        name = min(feasible, key=lambda k: (feasible[k], k)) if feasible else "none"
        held = out[-1].cheapest if out else None
        if held in feasible and feasible[held] <= (1 + tie) * feasible[name]:
            name = held
        if out and out[-1].cheapest == name:
            out[-1] = Segment(out[-1].low, x, name)
        else:
            out.append(Segment(x, x, name))
    return out


def _at(m: Measured, s: CostSettings, axis: str, x: float) -> Ownership:
    if axis == "tenants":
        return own(m, s, tenants=int(x))
    if axis == "requests_per_day":
        return own(m, s, peak_rps=s.peak * x / s.requests_per_day)
    raise ValueError(f"unknown axis {axis!r}: requests_per_day or tenants")


def traffic_points(s: CostSettings, per_decade: int = 12) -> list[float]:
    """Requests a day from 1/1000 to 1000x the settings', log-spaced."""
    lo, hi = math.log10(s.requests_per_day) - 3, math.log10(s.requests_per_day) + 3
    return [10 ** (lo + i / per_decade) for i in range(6 * per_decade + 1)]


TENANT_POINTS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]


def break_even(segments: list[Segment], unit: str) -> list[str]:
    """Sentences: "few_shot is cheapest below 2,300 requests a day; lora from there to ..."; where
    no strategy meets the deployment, they say so."""
    if not segments:
        return []
    if len(segments) == 1:
        what = ("no strategy meets the deployment" if segments[0].cheapest == "none"
                else f"{segments[0].cheapest} is cheapest")
        return [f"{what} over the whole range ({_n(segments[0].low)} to {_n(segments[0].high)} {unit})"]
    first = segments[0].cheapest
    out = [f"{'no strategy meets the deployment' if first == 'none' else first + ' is cheapest'} up to "
           f"{_n(segments[0].high)} {unit}"]
    for seg in segments[1:]:
        last = seg is segments[-1]
        out.append(f"{'no strategy' if seg.cheapest == 'none' else seg.cheapest} from {_n(seg.low)} {unit}"
                   + (" up" if last else f" to {_n(seg.high)}"))
    return out


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"
