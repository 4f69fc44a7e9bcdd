"""The cost of ownership (tasks/evaluation/ownership.py): known answers worked out by hand, the
break-even points, the settings' checks, and a monthly-cost budget in the one selection rule."""
import math

import pytest

from tasks.config import CostSettings, SettingsError, parse_section
from tasks.evaluation.ownership import (HOURS_PER_MONTH, Measured, break_even, capacity, cheapest_along, memory_mb,
                                        own, traffic_points)
from tasks.evaluation.selection import choose

BASE = 22.7e6 * 4   # MiniLM's weights in fp32


def lora(**kw):
    return Measured(**({"strategy": "lora", "shares_base": True, "mixes": True, "base_bytes": BASE,
                        "version_bytes": 0.3e6, "train_seconds": 3600.0, "latency_ms_p50": 10.0,
                        "latency_ms_p95": 15.0, "throughput": 160.0} | kw))


def full(**kw):
    return Measured(**({"strategy": "full_finetune", "shares_base": False, "mixes": False, "base_bytes": BASE,
                        "version_bytes": 91e6, "train_seconds": 7200.0, "latency_ms_p50": 8.0,
                        "latency_ms_p95": 12.0, "throughput": 200.0} | kw))


def prompt(**kw):   # nothing to train, slow: long prompts on every request
    return Measured(**({"strategy": "few_shot", "shares_base": False, "mixes": False, "base_bytes": BASE,
                        "version_bytes": 2e3, "train_seconds": 0.0, "latency_ms_p50": 40.0,
                        "latency_ms_p95": 60.0, "throughput": 20.0} | kw))


S = CostSettings(train_price_per_hour=1.0, serve_price_per_hour=0.1, requests_per_day=86400, peak_rps=10.0)


def test_one_time_storage_and_serving_by_hand():
    o = own(lora(), S, tenants=4)
    assert o.one_time == pytest.approx(4 * 1.0)                      # 4 versions x 1 h x 1 USD/h
    assert o.storage_per_month == pytest.approx(4 * 0.3e6 / 1e9 * 0.023)
    # batch 32 in 32/160 = 0.2 s; 5 ms + 2 x 200 ms is inside 1,000 ms: 160 req/s per instance
    assert o.batch == 32 and o.capacity_rps == pytest.approx(160.0)
    assert o.instances == 1 and o.serving_per_month == pytest.approx(0.1 * HOURS_PER_MONTH)
    assert o.monthly == pytest.approx(o.serving_per_month + o.storage_per_month)
    assert o.total == pytest.approx(o.one_time + 12 * o.monthly)
    assert o.metrics()["monthly_cost"] == o.monthly


def test_memory_one_base_plus_adapters_against_full_copies():
    # the process, one base, and per tenant its adapter (+ cost.version_overhead_mb of holding it)
    assert memory_mb(lora(), 32, S) == pytest.approx(400 + BASE / 2**20 + 32 * 0.3e6 / 2**20)
    assert memory_mb(full(), 32, S) == pytest.approx(400 + 32 * BASE / 2**20)
    held = CostSettings(version_overhead_mb=2.5)
    assert memory_mb(lora(), 32, held) == pytest.approx(memory_mb(lora(), 32, S) + 32 * 2.5)
    # 1 GB instances: (1024 - 400) MB hold 7 MiniLM copies (86.6 MB each); 32 tenants need 5 instances
    small = CostSettings(serve_memory_gb=1.0, peak_rps=1.0, requests_per_day=1000)
    o = own(full(), small, tenants=32)
    assert o.tenants_per_instance == 7 and o.instances == math.ceil(32 / 7)
    assert own(lora(), small, tenants=32).instances == 1


def test_tenants_split_batches_unless_requests_mix():
    b_mixed, cap_mixed = capacity(lora(), 32, S)
    b_split, cap_split = capacity(lora(mixes=False), 32, S)
    assert b_mixed == 32 and cap_mixed == pytest.approx(160.0)
    assert b_split == 1 and cap_split == pytest.approx(1000 / 10.0)   # one request a pass: 1 / p50
    # 8 tenants: batches of 4, t(4) = 10 ms + 3 x (200 - 10) / 31 ms
    b8, cap8 = capacity(lora(mixes=False), 8, S)
    assert b8 == 4 and cap8 == pytest.approx(4 / ((10 + 3 * 190 / 31) / 1000))


def test_the_latency_objective_shrinks_batches_or_rules_a_strategy_out():
    tight = CostSettings(latency_p95_ms=100.0)
    b, cap = capacity(lora(), 1, tight)   # 32 takes 200 ms: halve until 5 + 2 t(b) <= 100 ms
    assert b == 4 and cap == pytest.approx(4 / ((10 + 3 * 190 / 31) / 1000))
    slow = own(prompt(latency_ms_p95=150.0), tight)
    assert not slow.feasible and "over the 100 ms objective" in slow.reason and slow.monthly == math.inf


def test_break_even_along_traffic():
    """few_shot costs nothing to train but carries 20 req/s an instance (14 at 70 %); lora costs
    1 USD to train and carries 160 (112). Over 12 months an extra instance (73 USD/month) soon
    outweighs 1 USD: few_shot is cheapest while one instance carries the peak."""
    s = CostSettings(train_price_per_hour=1.0, serve_price_per_hour=0.1, requests_per_day=86400, peak_rps=1.0)
    segments = cheapest_along([prompt(), lora()], s, "requests_per_day", traffic_points(s))
    assert [g.cheapest for g in segments] == ["few_shot", "lora"]
    # one few_shot instance carries up to 14 req/s at peak: 14 x 86,400 requests a day at this peak/mean
    assert segments[0].high <= 14 * 86400 < segments[1].low
    sentences = break_even(segments, "requests a day")
    assert sentences[0].startswith("few_shot is cheapest up to") and sentences[1].startswith("lora from")


def test_break_even_along_tenants():
    """Full copies pay a base per tenant: past the copies an instance holds, lora is cheaper."""
    s = CostSettings(serve_memory_gb=1.0, peak_rps=1.0, requests_per_day=1000, train_price_per_hour=0.0)
    segments = cheapest_along([full(), lora()], s, "tenants", [1, 4, 8, 16])
    assert [g.cheapest for g in segments] in (["full_finetune", "lora"], ["lora"])
    assert segments[-1].cheapest == "lora" and own(full(), s, tenants=16).instances == 3


def test_from_metrics_reads_the_run_record():
    m = {"model_params": 22.7e6, "tenant_shares_base": 1.0, "tenant_mixes": 1.0, "artifact_bytes": 0.3e6,
         "latency_ms_p50": 10.0, "latency_ms_p95": 15.0, "throughput_examples_per_s": 160.0,
         "train_seconds": 3000.0, "tune_seconds": 600.0}
    assert Measured.from_metrics("lora", m) == lora()
    generation = {k: v for k, v in m.items() if k != "throughput_examples_per_s"} | {"generated_tokens_per_s": 32.0}
    assert Measured.from_metrics("lora", generation, tokens_per_request=16).throughput == 2.0
    assert Measured.from_metrics("lora", {"artifact_bytes": 1.0}) is None


def test_settings_refuse_nonsense_naming_the_key():
    with pytest.raises(SettingsError, match="section 'cost': tenants must be >= 1"):
        parse_section(CostSettings, {"tenants": 0}, "cost")
    with pytest.raises(SettingsError, match="cost.price"):
        parse_section(CostSettings, {"price": 1}, "cost")
    with pytest.raises(SettingsError, match="peak_rps must be at least the mean rate"):
        parse_section(CostSettings, {"requests_per_day": 864000, "peak_rps": 1.0}, "cost")
    assert CostSettings(requests_per_day=86400).peak == 3.0


def test_a_monthly_budget_moves_the_choice_to_the_runner_up_and_says_why():
    s = CostSettings(train_price_per_hour=1.0, serve_price_per_hour=0.1, requests_per_day=86400, peak_rps=40.0)
    named = []
    for m, score in ((prompt(), 0.83), (lora(), 0.80)):
        named.append((m.strategy, {"val_macro_f1": score, "val_examples": 800.0, "artifact_bytes": m.version_bytes,
                                   "train_seconds": m.train_seconds, **own(m, s).metrics()}))
    costs = {n: m["monthly_cost"] for n, m in named}
    assert costs["few_shot"] > costs["lora"]       # 40 req/s: few_shot needs 3 instances, lora 1
    assert choose(named, "val_macro_f1", 1.0).choice == "few_shot"
    limit = costs["lora"] + 1
    rec = choose(named, "val_macro_f1", 1.0, {"max_monthly_cost": limit})
    assert rec.choice == "lora"
    assert f"few_shot: monthly_cost {costs['few_shot']:g} USD is over max_monthly_cost={limit:g} USD" in rec.reasons


def test_one_version_batches_pay_a_switch_that_grows_with_the_versions_held():
    """32 tenants, one version per batch: every pass is one request for another version than the
    last (31 in 32 of them with traffic spread evenly), and a switch with 32 versions held costs
    2 + 30 x 0.5 = 17 ms: 10 ms p50 + 31/32 x 17 ms a request."""
    m = lora(mixes=False, switch_ms=2.0, switch_ms_per_version=0.5)
    assert m.switch_seconds(32) == pytest.approx(0.017) and m.switch_seconds(1) == 0.0
    b, cap = capacity(m, 32, S)
    assert b == 1 and cap == pytest.approx(1 / (0.010 + 31 / 32 * 0.017))
    assert capacity(m, 1, S) == capacity(lora(mixes=False), 1, S)             # one version: no switch
    # 8 tenants: batches of 4, a switch with 8 held before 7 in 8 of them
    assert capacity(m, 8, S)[1] == pytest.approx(4 / ((10 + 3 * 190 / 31) / 1000 + 7 / 8 * 0.005))
    # whole copies switch nothing; a run that measured no switch is costed as before
    assert capacity(full(switch_ms=2.0, switch_ms_per_version=0.5), 32, S) == capacity(full(), 32, S)
    assert capacity(lora(mixes=False), 32, S)[1] == pytest.approx(100.0)


def test_mixed_passes_pay_for_each_distinct_version_in_them():
    m = lora(mixed_ms_per_version=2.0)
    # 32 tenants fill a batch of 32 with 32 versions: 200 ms + 31 x 2 ms
    assert capacity(m, 32, S)[1] == pytest.approx(32 / (0.200 + 0.062))
    assert capacity(m, 4, S)[1] == pytest.approx(32 / (0.200 + 0.006))       # only 4 distinct
    assert capacity(m, 1, S) == capacity(lora(), 1, S)


def test_from_metrics_reads_the_switching_figures_when_logged():
    m = {"model_params": 22.7e6, "tenant_shares_base": 1.0, "tenant_mixes": 0.0, "artifact_bytes": 0.3e6,
         "latency_ms_p50": 10.0, "latency_ms_p95": 15.0, "throughput_examples_per_s": 160.0,
         "switch_ms": 2.0, "switch_ms_per_version": 0.5, "mixed_ms_per_version": 1.5}
    got = Measured.from_metrics("ia3", m)
    assert (got.switch_ms, got.switch_ms_per_version, got.mixed_ms_per_version) == (2.0, 0.5, 1.5)


def test_break_even_says_so_where_nothing_meets_the_deployment():
    from tasks.evaluation.ownership import Segment

    assert break_even([Segment(1, 1024, "none")], "tenants") == [
        "no strategy meets the deployment over the whole range (1 to 1,024 tenants)"]
    assert break_even([Segment(100, 5000, "lora"), Segment(6000, 1e6, "none")], "requests a day") == [
        "lora is cheapest up to 5,000 requests a day", "no strategy from 6,000 requests a day up"]
