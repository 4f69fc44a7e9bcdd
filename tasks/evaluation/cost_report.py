"""The report's cost section: what each strategy costs to own for the deployment in params
`cost:` (tasks/evaluation/ownership.py), the monthly cost against traffic (quality marked), where
the cheapest strategy changes with traffic and with tenants, and the assumptions beside them."""
from __future__ import annotations

import html
from dataclasses import dataclass, fields

from tasks.config.cost import CostSettings
from tasks.evaluation.ownership import (INFEASIBLE, TENANT_POINTS, Measured, Ownership, break_even,
                                        cheapest_along, own, traffic_points)
from tasks.evaluation.plots import cost_plot
from tasks.evaluation.report_data import StrategyRow


def measured(rows: list[StrategyRow], settings: CostSettings, quality_key: str) -> list[Measured]:
    """The finished strategies whose runs logged what the model needs."""
    out = [Measured.from_metrics(r.strategy, r.metrics, settings.tokens_per_request, quality_key)
           for r in rows if r.status == "FINISHED"]
    return [m for m in out if m is not None]


@dataclass(frozen=True)
class CostTable:
    """What each strategy costs to own for `settings`, and where the cheapest one changes: what
    the report's section and `adaptflow cost` show."""
    settings: CostSettings
    measured: list[Measured]
    owned: list[Ownership]
    by_traffic: list[str]          # break-even sentences along requests a day (settings' tenants)
    by_tenants: list[str]          # along tenants (settings' requests a day)
    left_out: list[str]            # strategies of the run with no figures for the model, and why


def cost_table(rows: list[StrategyRow], settings: CostSettings, quality_key: str) -> CostTable:
    found = measured(rows, settings, quality_key)
    names = {m.strategy for m in found}
    left_out = [f"{r.strategy} ({'run ' + r.status.lower() if r.status != 'FINISHED' else 'no footprint logged'})"
                for r in rows if r.strategy not in names]
    return CostTable(settings, found, [own(m, settings) for m in found],
                     break_even(cheapest_along(found, settings, "requests_per_day", traffic_points(settings)),
                                "requests a day"),
                     break_even(cheapest_along(found, settings, "tenants", TENANT_POINTS), "tenants"), left_out)


def _usd(x: float) -> str:
    return "cannot" if x >= INFEASIBLE else f"{x:,.2f}"


def format_cost(table: CostTable, quality_label: str, budget: float | None = None) -> str:
    """The table as text (`adaptflow cost`): per strategy, then the break-even sentences and the
    settings used."""
    s = table.settings
    head = ["strategy", quality_label, "one-time USD", "USD/month", f"{s.horizon_months}-month USD", "instances",
            "MB/instance", "req/s/instance", "feasible"]
    body = [[o.strategy, "-" if m.quality is None else f"{m.quality:.3f}", _usd(o.one_time), _usd(o.monthly),
             _usd(o.total), str(o.instances), f"{o.memory_mb:,.0f}" if o.feasible else "-",
             f"{o.capacity_rps:.1f}" if o.feasible else "-",
             ("yes" if o.feasible else f"no: {o.reason}")
             + ("; over max_monthly_cost" if budget is not None and o.feasible and o.monthly > budget else "")]
            for m, o in zip(table.measured, table.owned)]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(head), line(["-" * w for w in widths]), *map(line, body)]
    if table.left_out:
        out.append("left out: " + ", ".join(table.left_out))
    unswitched = [m.strategy for m in table.measured if m.shares_base and m.switch_ms is None]
    if unswitched:   # a run from before switch_ms was logged: its switches are costed as free
        out.append(f"no switch cost measured (run before switch_ms was logged; costed as free): {', '.join(unswitched)}")
    out += ["", f"Along traffic ({s.tenants} tenant(s)):", *(f"  {x}" for x in table.by_traffic),
            f"Along tenants ({s.requests_per_day:,.0f} requests a day):", *(f"  {x}" for x in table.by_tenants),
            "", "Settings (params cost:):",
            *(f"  {f.name}: {getattr(s, f.name)}" for f in fields(s)), f"  peak req/s used: {s.peak:.2f}"]
    return "\n".join(out)


def cost_section(rows: list[StrategyRow], settings: CostSettings | None, quality: tuple[str, str],
                 budget: float | None = None) -> str:
    """The section's HTML; nothing when no settings are given or no run logged its footprint."""
    if settings is None:
        return ""
    table = cost_table(rows, settings, quality[0])
    found, owned = table.measured, table.owned
    if not found:
        return ""
    e = html.escape
    body = "".join(
        f"<tr><th>{e(o.strategy)}</th><td>{'–' if m.quality is None else f'{m.quality:.3f}'}</td>"
        f"<td>{o.instances}</td><td>{o.capacity_rps:.1f}</td><td>{o.batch:.0f}</td><td>{o.memory_mb:,.0f}</td>"
        f"<td>{_usd(o.one_time)}</td><td>{_usd(o.serving_per_month if o.feasible else INFEASIBLE)}</td>"
        f"<td>{o.storage_per_month:,.4f}</td><td>{_usd(o.total)}</td>"
        f"<td style='text-align:left'>{e(o.reason)}"
        f"{' <b>over max_monthly_cost</b>' if budget is not None and o.monthly > budget else ''}</td></tr>"
        for m, o in zip(found, owned))
    traffic = traffic_points(settings)
    curves = {m.strategy: (traffic, [own(m, settings, peak_rps=settings.peak * x / settings.requests_per_day).monthly
                                     for x in traffic]) for m in found}
    curves = {k: (xs, [y if y < INFEASIBLE else float("nan") for y in ys]) for k, (xs, ys) in curves.items()}
    labels = {m.strategy: m.strategy + ("" if m.quality is None else f" ({quality[1]} {m.quality:.3f})")
              for m in found}
    plot = cost_plot(curves, labels, settings.requests_per_day)
    by_traffic, by_tenants = table.by_traffic, table.by_tenants
    even = ("".join(f"<tr><th>traffic ({settings.tenants} tenant(s))</th><td style='text-align:left'>{e(x)}</td></tr>"
                    for x in by_traffic)
            + "".join(f"<tr><th>tenants ({settings.requests_per_day:,.0f} requests a day)</th>"
                      f"<td style='text-align:left'>{e(x)}</td></tr>" for x in by_tenants))
    assumptions = "".join(f"<tr><th>{f.name}</th><td>{e(str(getattr(settings, f.name)))}</td></tr>"
                          for f in fields(settings))
    caption = "Monthly cost against traffic (dotted: the deployment's own; a gap: cannot meet the p95 objective)"
    return (f'<h2 id="cost">What it costs</h2><p>For the deployment in params <code>cost:</code> (assumptions on the '
            f'right), from each run\'s own measurements: throughput at batch 1 and {settings.serve_batch}, p95 latency, '
            'the model\'s weights, the stored version and training time (docs/cost.md). Adapters share one base per '
            'instance and, for LoRA, one forward pass across tenants; full fine-tunes hold a copy per tenant. '
            'Break-even points compare the total over the horizon; quality is shown, not weighed.</p>'
            '<div style="display:flex;gap:16px;flex-wrap:wrap"><div class="wide"><table id="cost"><tr><th>strategy</th>'
            f'<th>{e(quality[1])}</th><th>instances</th><th>req/s each</th><th>batch</th><th>MB each</th>'
            '<th>one-time USD</th><th>serving USD/month</th><th>storage USD/month</th>'
            f'<th>{settings.horizon_months}-month USD</th><th>note</th></tr>{body}</table>'
            f'<table id="break-even"><tr><th>along</th><th>cheapest</th></tr>{even}</table>'
            f'<figure><img alt="{e(caption)}" src="{plot}"><figcaption>{e(caption)}</figcaption></figure></div>'
            f'<table id="cost-assumptions"><tr><th>cost:</th><th>value</th></tr>{assumptions}'
            f'<tr><th>peak req/s used</th><td>{settings.peak:.2f}</td></tr></table></div>')
