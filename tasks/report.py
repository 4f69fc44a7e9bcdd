"""The comparison report: one self-contained HTML file (plots inlined as PNG) that a reviewer
reads in a minute. Built only from what the run logged to MLflow, so `adaptflow report RUN_ID`
can rebuild it for any past run."""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field

from tasks.stats import Candidate, Recommendation, pareto_front, recommend

COLUMNS = [("test_accuracy", "accuracy", "{:.4f}"), ("test_macro_f1", "macro-F1", "{:.4f}"),
           ("mcnemar_p", "p vs best", "{:.3g}"), ("test_ece", "ECE", "{:.3f}"),
           ("prompt_variant_std", "prompt std", "{:.4f}"), ("trainable_params", "trainable", "{:,.0f}"),
           ("trainable_fraction", "trainable %", "{:.3%}"), ("artifact_bytes", "artifact MB", "{:.3f}"),
           ("train_seconds", "train s", "{:.1f}"), ("latency_ms_p50", "p50 ms (bs 1)", "{:.1f}"),
           ("latency_ms_p95", "p95 ms", "{:.1f}"), ("throughput_examples_per_s", "ex/s (bs 32)", "{:.0f}"),
           ("merged_latency_ms_p50", "merged p50 ms", "{:.1f}"), ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
           ("forgetting_delta", "forgetting pts", "{:+.1f}"), ("overfit_flag", "overfit?", "{:.0f}")]
# The hybrid and its two parts, side by side (ablation): does training them together pay?
HYBRID, PARTS = "lora_prompt", ("lora", "prompt_tuning")


@dataclass(frozen=True)
class StrategyRow:
    strategy: str
    run_id: str
    status: str
    metrics: dict[str, float]
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    reliability: dict = field(default_factory=dict)      # reliability.json of the run
    correct: list[bool] | None = None                    # per test example, for the paired test
    learning_curve: list[tuple[int, float]] = field(default_factory=list)   # (train examples, test accuracy)
    error: str = ""                                      # a failed strategy's error (tag `error`)


@dataclass(frozen=True)
class ReportData:
    parent_run_id: str
    title: str
    tags: dict[str, str]                 # the parent run's lineage tags
    rows: list[StrategyRow]
    validation: dict                     # validation/summary.json
    decision: dict                       # registry/decision.json (may be empty)


def collect(client, parent_run_id: str) -> ReportData:
    """Everything the report shows, read back from MLflow."""
    from mlflow.exceptions import MlflowException

    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  order_by=["attributes.start_time ASC"])

    def history(run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]

    def artifact_json(run_id: str, path: str) -> dict:
        try:
            with open(client.download_artifacts(run_id, path)) as fh:
                return json.load(fh)
        except (MlflowException, OSError):
            return {}

    rows = []
    for r in children:
        preds = artifact_json(r.info.run_id, "test_predictions.json")
        correct = [t == p for t, p in zip(preds["y_true"], preds["y_pred"])] if preds else None
        rows.append(StrategyRow(r.data.tags.get("strategy", r.info.run_name), r.info.run_id, r.info.status,
                                dict(r.data.metrics), history(r.info.run_id, "train_loss"),
                                history(r.info.run_id, "val_loss"), artifact_json(r.info.run_id, "reliability.json"),
                                correct, history(r.info.run_id, "learning_curve_accuracy"),
                                r.data.tags.get("error", "")))
    return ReportData(parent_run_id, parent.info.run_name, dict(parent.data.tags), with_paired_tests(rows),
                      artifact_json(parent_run_id, "validation/summary.json"),
                      artifact_json(parent_run_id, "registry/decision.json"))


def with_paired_tests(rows: list[StrategyRow]) -> list[StrategyRow]:
    """Each strategy's exact McNemar p-value against the most accurate one, on the same test
    examples (strategies scored on another subset, e.g. few_shot's, are not paired)."""
    from dataclasses import replace

    import numpy as np

    from tasks.stats import mcnemar

    scored = [r for r in rows if r.correct is not None and "test_accuracy" in r.metrics]
    if not scored:
        return rows
    best = max(scored, key=lambda r: r.metrics["test_accuracy"])
    out = []
    for r in rows:
        if r in scored and r is not best and len(r.correct) == len(best.correct):
            p = mcnemar(np.array(r.correct), np.array(best.correct)).p_value
            r = replace(r, metrics={**r.metrics, "mcnemar_p": p})
        out.append(r)
    return out


def pyplot():
    """matplotlib without a screen (imported on use, never at import time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _grid(n: int, max_cols: int, width: float, height: float):
    """A figure of n small panels (unused cells hidden) and the list of its n axes."""
    cols = min(max_cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = pyplot().subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def draw_reliability(ax, rel: dict, title: str) -> None:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    ax.plot([0, 1], [0, 1], ls=":", c="k", lw=1)
    ax.plot(rel["bin_confidence"], rel["bin_accuracy"], marker="o", ms=3, c="#c0392b", lw=1)
    ax.set_title(title, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.tick_params(labelsize=7)


def _pareto_plot(rows: list[StrategyRow], cost_key: str, cost_label: str, log: bool) -> str:
    done = [r for r in rows if "test_accuracy" in r.metrics and cost_key in r.metrics]
    floor = 1e-6 if log else 0.0
    points = {r.strategy: (max(r.metrics[cost_key], floor), r.metrics["test_accuracy"]) for r in done}
    front = pareto_front(points)
    fig, ax = pyplot().subplots(figsize=(5.2, 3.6))
    for name, (x, y) in points.items():
        on = name in front
        ax.scatter([x], [y], s=60 if on else 30, c="#c0392b" if on else "#7f8c8d", zorder=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    line = sorted(points[n] for n in front)
    if len(line) > 1:
        ax.step([p[0] for p in line], [p[1] for p in line], where="post", c="#c0392b", lw=1, alpha=0.6,
                label="Pareto front")
        ax.legend(fontsize=8, loc="lower right")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    return _png(fig)


def _reliability_plot(rows: list[StrategyRow]) -> str | None:
    shown = [r for r in rows if r.reliability.get("bin_confidence")]
    if not shown:
        return None
    fig, axes = _grid(len(shown), 4, 2.9, 2.7)
    for ax, r in zip(axes, shown):
        draw_reliability(ax, r.reliability, f"{r.strategy}: ECE {r.reliability['ece']:.3f}")
    fig.supxlabel("confidence (15 bins)", fontsize=8)
    fig.supylabel("accuracy", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _loss_plot(rows: list[StrategyRow]) -> str | None:
    trained = [r for r in rows if r.val_loss]
    if not trained:
        return None
    fig, axes = _grid(len(trained), 3, 4, 2.6)
    for ax, r in zip(axes, trained):
        ax.plot(*zip(*r.train_loss), label="train", c="#2980b9")
        ax.plot(*zip(*r.val_loss), label="validation", c="#c0392b")
        best = r.metrics.get("best_step")
        if best is not None:
            ax.axvline(best, ls=":", c="k", lw=1, label="kept (best val)")
        ax.set_title(r.strategy, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def recommendation(rows: list[StrategyRow], tolerance_points: float,
                   budgets: dict[str, float | None] | None = None) -> Recommendation:
    cands = [Candidate(r.strategy, r.metrics["test_accuracy"], r.metrics.get("trainable_fraction", 0.0),
                       r.metrics.get("artifact_bytes", 0.0), r.metrics.get("train_seconds", 0.0), r.metrics)
             for r in rows if r.status == "FINISHED" and "test_accuracy" in r.metrics]
    return recommend(cands, tolerance_points, budgets)


def _learning_curve_plot(rows: list[StrategyRow]) -> str | None:
    shown = [r for r in rows if len(r.learning_curve) > 1]
    if not shown:
        return None
    fig, ax = pyplot().subplots(figsize=(5.2, 3.6))
    for r in shown:
        ax.plot(*zip(*r.learning_curve), marker="o", ms=4, label=r.strategy)
    ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def hybrid_ablation(rows: list[StrategyRow]) -> tuple[list[StrategyRow], str]:
    """The hybrid and its parts (those that ran), and what the numbers say about combining them."""
    done = {r.strategy: r for r in rows if "test_accuracy" in r.metrics}
    shown = [done[n] for n in (*PARTS, HYBRID) if n in done]
    if HYBRID not in done or len(shown) < 2:
        return shown, ""
    hybrid = done[HYBRID].metrics
    best_part = max((done[n] for n in PARTS if n in done), key=lambda r: r.metrics["test_accuracy"])
    gap = 100 * (hybrid["test_accuracy"] - best_part.metrics["test_accuracy"])
    ratio = hybrid.get("trainable_params", 0) / max(best_part.metrics.get("trainable_params", 0), 1)
    verdict = "gains" if gap > 0 else "loses"
    return shown, (f"{HYBRID} {verdict} {abs(gap):.1f} points against its best part alone ({best_part.strategy}), "
                   f"with {ratio:.2f}x its trainable parameters")


def _cell(m: dict[str, float], key: str, fmt: str) -> str:
    if key not in m:
        return "–"
    text = fmt.format(m[key] / (1e6 if key == "artifact_bytes" else 1))
    low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    if low is not None and high is not None:
        text += f' <small>[{low:.3f}, {high:.3f}]</small>'
    return text


def _table(rows: list[StrategyRow], columns, chosen: str, table_id: str) -> str:
    e = html.escape
    head = "".join(f"<th>{e(label)}</th>" for _, label, _ in columns)
    body = []
    for r in rows:
        cells = "".join(f"<td>{_cell(r.metrics, k, fmt)}</td>" for k, _, fmt in columns)
        status = "" if r.status == "FINISHED" else f' <span class="bad">{e(r.status)}</span>'
        if r.error:   # the first line names the exception; the whole text is on hover
            status += f'<br><small class="bad" title="{e(r.error)}">{e(r.error.splitlines()[0][:160])}</small>'
        mark = ' class="chosen"' if r.strategy == chosen else ""
        body.append(f"<tr{mark}><th>{e(r.strategy)}{status}</th>{cells}</tr>")
    return (f'<div class="wide"><table id="{table_id}"><tr><th>strategy</th>{head}</tr>'
            f'{"".join(body)}</table></div>')


def render(data: ReportData, tolerance_points: float = 1.0, budgets: dict[str, float | None] | None = None) -> str:
    e = html.escape
    rec = recommendation(data.rows, tolerance_points, budgets)
    figures = [("Accuracy against trainable parameters (fraction, log scale; no training is drawn at 1e-6)",
                _pareto_plot(data.rows, "trainable_fraction", "trainable fraction of the weights", True)),
               ("Accuracy against training time",
                _pareto_plot(data.rows, "train_seconds", "training seconds", False))]
    loss = _loss_plot(data.rows)
    if loss:
        figures.append(("Training and validation loss (dotted: the step whose weights were kept)", loss))
    calibration = _reliability_plot(data.rows)
    if calibration:
        figures.append(("Reliability diagrams (dotted: perfect calibration)", calibration))
    curve = _learning_curve_plot(data.rows)
    if curve:
        figures.append(("Learning curves: test accuracy against training-set size (data efficiency)", curve))
    ablation_rows, ablation_text = hybrid_ablation(data.rows)
    ablation = ""
    if ablation_text:
        keep = {"test_accuracy", "test_macro_f1", "mcnemar_p", "trainable_params", "artifact_bytes",
                "train_seconds", "latency_ms_p50", "forgetting_delta"}
        ablation = (f"<h2>Hybrid ablation</h2><p>{e(ablation_text)}.</p>"
                    + _table(ablation_rows, [c for c in COLUMNS if c[0] in keep], "", "ablation"))
    figs = "".join(f'<figure><img alt="{e(t)}" src="{src}"><figcaption>{e(t)}</figcaption></figure>'
                   for t, src in figures)
    tags = data.tags
    lineage = "".join(f"<tr><th>{e(k)}</th><td><code>{e(tags[k])}</code></td></tr>" for k in sorted(tags)
                      if k.startswith(("data.", "git.", "params.", "base.", "profile")))
    v = data.validation
    validation = (f"{'passed' if v.get('success') else 'FAILED'}: {v.get('evaluated_expectations', '?')} "
                  f"expectations, {len(v.get('failures', []))} failed") if v else "not recorded"
    compared = v.get("drift_compared_with")
    drift = ("".join(f"<li>drift: {e(w.get('message', str(w)))}</li>" for w in v.get("drift_warnings", []))
             or f"<li>no drift beyond the thresholds against data version {e(compared)}</li>") if compared else ""
    reasons = "".join(f"<li>{e(x)}</li>" for x in rec.reasons + data.decision.get("reasons", []))
    registered = (f"registered v{data.decision['version']} ({e(data.decision['strategy'])}); "
                  f"@challenger {'set' if data.decision.get('set_challenger') else 'unchanged'}"
                  if data.decision else "")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>adaptflow report {e(data.parent_run_id)}</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;max-width:1240px;margin:24px auto;padding:0 16px;color:#222}}
table{{border-collapse:collapse;margin:8px 0 16px;font-size:12px}}td,th{{padding:3px 6px;border-bottom:1px solid #ddd;text-align:right}}
.wide{{overflow-x:auto}}
th:first-child{{text-align:left}}tr.chosen{{background:#fdf2e9}}.rec{{font-size:18px;padding:12px 16px;
background:#eef6ee;border-left:4px solid #27ae60}}.bad{{color:#c0392b}}figure{{display:inline-block;margin:8px}}
figcaption{{font-size:12px;color:#555}}code{{font-size:12px}}</style></head><body>
<h1>Strategy comparison</h1>
<p>{e(data.title)} — MLflow parent run <code>{e(data.parent_run_id)}</code>. {registered}</p>
<p class="rec" id="recommendation"><strong>Recommendation.</strong> {e(rec.sentence)}.</p>
<ul>{reasons}</ul>
<h2>Comparison</h2>
<p>Accuracy and macro-F1 with bootstrap 95 % intervals; "p vs best": exact McNemar test against
the most accurate strategy on the same test examples (small p: the difference is real).</p>
<p>"forgetting pts": BBC News topic accuracy of a linear probe on the base model's features minus
on the adapted model's (positive: general features were lost). "merged": LoRA/IA3 folded into the base.</p>
{_table(data.rows, COLUMNS, rec.choice, "comparison")}
{ablation}
<h2>Trade-offs</h2>{figs}
<h2>Data and validation</h2><p id="validation">Great Expectations: {e(validation)}</p><ul>{drift}</ul>
<table id="lineage">{lineage}</table>
</body></html>"""
