"""The comparison report: one self-contained HTML file (plots inlined as PNG) that a reviewer
reads in a minute. Built only from what the run logged to MLflow, so `adaptflow report RUN_ID`
can rebuild it for any past run."""
from __future__ import annotations

import html

import numpy as np

from tasks.evaluation.cost_report import cost_section
from tasks.evaluation.plots import learning_curve_plot, loss_plot, pareto_plot, reliability_plot, study_plot
from tasks.evaluation.report_data import ReportData, StrategyRow
from tasks.evaluation.retrieval_ablation import retrieval_section
from tasks.evaluation.review_report import review_section
from tasks.evaluation.selection import Recommendation, choose
from tasks.evaluation.task_parts import evaluation_part
from tasks.tasktypes import DEFAULT, catalogue, lookup, task_type
from tasks.tasktypes.metrics import find

def column(key: str, task: str = DEFAULT) -> tuple[str, str, str]:
    """(logged key, its name for people, its format) from the metric catalogue, with the task
    type's own name where it has one."""
    metric, split = lookup(key)
    return key, task_type(task).labels.get(key) or metric.label_for(split), metric.fmt


def columns(task: str = DEFAULT) -> list[tuple[str, str, str]]:
    """The comparison table's columns: the task type's report columns."""
    return [column(k, task) for k in task_type(task).report_columns]


# The hybrid and its two parts, side by side (ablation): does training them together pay?
HYBRID, PARTS = "lora_prompt", ("lora", "prompt_tuning")


def selection(task: str, key: str | None = None) -> tuple[str, str]:
    """(the validation metric the recommendation reads, its name for people); default: the
    task type's `select_metric: auto`."""
    metric = lookup(key)[0] if key else catalogue()[task_type(task).select_auto]
    return metric.key("val"), metric.label


def recommendation(rows: list[StrategyRow], tolerance_points: float,
                   budgets: dict[str, float | None] | None = None,
                   select: tuple[str, str] = ("val_macro_f1", "macro-F1")) -> Recommendation:
    """The registry's rule (tasks/evaluation/selection.py: choose), on the finished strategies."""
    key, label = select
    return choose([(r.strategy, r.metrics) for r in rows if r.status == "FINISHED"], key, tolerance_points,
                  budgets, label)


def hybrid_ablation(rows: list[StrategyRow]) -> tuple[list[StrategyRow], str]:
    """The hybrid and its parts (those that ran), and what the numbers say about combining them,
    with the exact McNemar test of the hybrid against each part on the same test examples."""
    from tasks.evaluation.statistics import mcnemar

    done = {r.strategy: r for r in rows if "test_accuracy" in r.metrics}
    shown = [done[n] for n in (*PARTS, HYBRID) if n in done]
    if HYBRID not in done or len(shown) < 2:
        return shown, ""
    hybrid = done[HYBRID]
    best_part = max((done[n] for n in PARTS if n in done), key=lambda r: r.metrics["test_accuracy"])
    gap = 100 * (hybrid.metrics["test_accuracy"] - best_part.metrics["test_accuracy"])
    ratio = hybrid.metrics.get("trainable_params", 0) / max(best_part.metrics.get("trainable_params", 0), 1)
    verdict = "gains" if gap > 0 else "loses"
    tests = [f"p = {mcnemar(np.array(hybrid.correct), np.array(done[n].correct)).p_value:.3g} against {n}"
             for n in PARTS if n in done and hybrid.correct is not None and done[n].correct is not None
             and len(done[n].correct) == len(hybrid.correct)]
    return shown, (f"{HYBRID} {verdict} {abs(gap):.1f} points against its best part alone ({best_part.strategy}), "
                   f"with {ratio:.2f}x its trainable parameters" + (f" (McNemar: {'; '.join(tests)})" if tests else ""))


def tuning_section(rows: list[StrategyRow]) -> str:
    """Tuned against untuned (the configured params are the study's trial 0), each study's
    size and the chosen params; the study-history plot is with the figures."""
    e = html.escape
    tuned = [r for r in rows if r.tuning.get("trials")]
    if not tuned:
        return ""
    body = []
    for r in tuned:
        t, m = r.tuning, r.metrics
        states = [x["state"] for x in t["trials"]]
        default = m.get("tune_default_val_loss")
        chosen = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["chosen"].items())
        body.append(f"<tr><th>{e(r.strategy)}</th><td>{len(states)}</td><td>{states.count('PRUNED')}</td>"
                    f"<td>{states.count('FAIL')}</td><td>{'–' if default is None else f'{default:.4f}'}</td>"
                    f"<td>{m.get('tune_best_val_loss', float('nan')):.4f}</td><td>{m.get('tune_seconds', 0):.0f}</td>"
                    f"<td style='text-align:left'><code>{e(chosen)}</code></td></tr>")
    return ('<h2>Tuning</h2><p>Each trained strategy was tuned with Optuna (TPE sampler, median pruner on '
            'validation loss) on the train and validation splits only; the objective is the lowest validation '
            'loss a trial reached. Trial 0 runs the configured params (untuned). The final model uses the '
            'chosen params.</p><div class="wide"><table id="tuning"><tr><th>strategy</th><th>trials</th>'
            '<th>pruned</th><th>failed</th><th>untuned val loss</th><th>tuned val loss</th><th>tuning s</th>'
            f'<th>chosen params</th></tr>{"".join(body)}</table></div>')


def _scale(key: str) -> float:
    found = find(key)   # figures outside the catalogue (a policy rule's share): as logged
    return found[0].scale if found else 1.0


def _cell(m: dict[str, float], key: str, fmt: str) -> str:
    if key not in m:
        return "–"
    text = fmt.format(m[key] * _scale(key))
    low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    if low is not None and high is not None:
        text += f' <small>[{low:.3f}, {high:.3f}]</small>'
    std = m.get(f"{key}_seed_std")
    if std is not None:   # evaluation.seeds: the spread of the same recipe over seeds
        text += f' <small>± {std:.3f} ({m.get(f"{key}_seed_mean", float("nan")):.3f} over {m.get("seeds_run", 0):.0f} seeds)</small>'
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


def policy_section(rows: list[StrategyRow]) -> str:
    """The output policy's verdicts on each strategy's test outputs, rule by rule (what serving
    would have blocked); nothing when no rule has a per-rule figure."""
    rules = sorted({k.removeprefix("policy_violations_") for r in rows for k in r.metrics
                    if k.startswith("policy_violations_")})
    if not rules:
        return ""
    columns = [("policy_violation_rate", "any rule", "{:.1%}")] + [
        (f"policy_violations_{rule}", rule.replace("_", " "), "{:.1%}") for rule in rules]
    columns += [column("abstention_rate"), column("answered_accuracy")]
    return ("<h2>Output policy</h2><p>Share of each strategy's test outputs the output policy (params "
            "<code>policy:</code>, the same checker serving applies) blocks, by rule; budgets "
            "(<code>max_policy_violation_rate</code>, <code>max_abstention_rate</code>) read the validation "
            "figures.</p>" + _table(rows, columns, "", "policy"))


def _figures(rows: list[StrategyRow], quality: tuple[str, str]) -> list[tuple[str, str]]:
    """(caption, PNG data URI) for each figure the rows have data for."""
    name = quality[1][0].upper() + quality[1][1:]
    figures = [(f"{name} against trainable parameters (fraction, log scale; no training is drawn at 1e-6)",
                pareto_plot(rows, "trainable_fraction", "trainable fraction of the weights", True, quality)),
               (f"{name} against training time",
                pareto_plot(rows, "train_seconds", "training seconds", False, quality))]
    loss = loss_plot(rows)
    if loss:
        figures.append(("Training and validation loss (dotted: the step whose weights were kept)", loss))
    calibration = reliability_plot(rows)
    if calibration:
        figures.append(("Reliability diagrams (dotted: perfect calibration)", calibration))
    curve = learning_curve_plot(rows)
    if curve:
        figures.append(("Learning curves: test accuracy against training-set size (data efficiency)", curve))
    study = study_plot(rows)
    if study:
        figures.append(("Tuning: the objective (lowest validation loss) of each trial; x: pruned, circled: "
                        "the configured params", study))
    return figures


def samples(rows: list[StrategyRow]) -> str:
    """Generation: the same first test inputs, their reference and each strategy's output."""
    e = html.escape
    shown = [r for r in rows if r.samples]
    if not shown:
        return ""
    head = "".join(f"<th>{e(r.strategy)}</th>" for r in shown)
    body = []
    for i, first in enumerate(shown[0].samples):
        cells = "".join(f"<td>{e(r.samples[i]['output']) if i < len(r.samples) else '–'}</td>" for r in shown)
        body.append(f"<tr><td>{e(first['input'][:300])}</td><td><b>{e(first['reference'])}</b></td>{cells}</tr>")
    return (f'<h2>Side by side</h2><p>The first {len(shown[0].samples)} test inputs, the reference and what each '
            f'strategy wrote (greedy decoding).</p><div class="wide"><table id="samples" class="text">'
            f'<tr><th>input</th><th>reference</th>{head}</tr>{"".join(body)}</table></div>')


def render(data: ReportData, tolerance_points: float = 1.0, budgets: dict[str, float | None] | None = None,
           select: str | None = None, cost=None) -> str:
    """`select`: the validation metric the recommendation reads (project.selection_key); `cost`:
    params cost: (CostSettings), for the cost section (None: no section)."""
    e = html.escape
    rec = recommendation(data.rows, tolerance_points, budgets, selection(data.task, select))
    figures = _figures(data.rows, data.quality)
    ablation_rows, ablation_text = hybrid_ablation(data.rows)
    ablation = ""
    if ablation_text:
        keep = {"val_macro_f1", "test_accuracy", "test_macro_f1", "mcnemar_p", "trainable_params", "artifact_bytes",
                "train_seconds", "latency_ms_p50", "forgetting_delta"}
        ablation = (f"<h2>Hybrid ablation</h2><p>{e(ablation_text)}.</p>"
                    + _table(ablation_rows, [c for c in columns(data.task) if c[0] in keep], "", "ablation"))
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
    registered = (f"registered v{e(str(data.decision['version']))} ({e(data.decision['strategy'])}); "
                  f"@challenger {'set' if data.decision.get('set_challenger') else 'unchanged'}"
                  if data.decision else "")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>adaptflow report {e(data.parent_run_id)}</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;max-width:1240px;margin:24px auto;padding:0 16px;color:#222}}
table{{border-collapse:collapse;margin:8px 0 16px;font-size:12px}}td,th{{padding:3px 6px;border-bottom:1px solid #ddd;text-align:right}}
table.text td{{text-align:left;vertical-align:top;max-width:320px}}
.wide{{overflow-x:auto}}
th:first-child{{text-align:left}}tr.chosen{{background:#fdf2e9}}.rec{{font-size:18px;padding:12px 16px;
background:#eef6ee;border-left:4px solid #27ae60}}.bad{{color:#c0392b}}figure{{display:inline-block;margin:8px}}
figcaption{{font-size:12px;color:#555}}code{{font-size:12px}}</style></head><body>
<h1>Strategy comparison</h1>
<p>{e(data.title)} — MLflow parent run <code>{e(data.parent_run_id)}</code>. {registered}</p>
<p class="rec" id="recommendation"><strong>Recommendation.</strong> {e(rec.sentence)}.</p>
<p>Chosen on validation scores, by the rule the registry applies (best validation {e(selection(data.task, select)[1])},
then the cheapest within {tolerance_points} points, inside every budget); the test columns only report.</p>
<ul>{reasons}</ul>
<h2>Comparison</h2>
<p>{e(evaluation_part(data.task).note)}</p>
<p>"forgetting pts": BBC News topic accuracy of a linear probe on the base model's features minus
on the adapted model's (positive: general features were lost). "merged": LoRA/IA3 folded into the base.</p>
{_table(data.rows, columns(data.task), rec.choice, "comparison")}
{samples(data.rows)}
{policy_section(data.rows)}
{ablation}
{retrieval_section(data.rows, data.task)}
{tuning_section(data.rows)}
{cost_section(data.rows, cost, data.quality, (budgets or {}).get("max_monthly_cost"))}
{review_section(data.review, data.decision)}
<h2>Trade-offs</h2>{figs}
<h2>Data and validation</h2><p id="validation">Great Expectations: {e(validation)}</p><ul>{drift}</ul>
<table id="lineage">{lineage}</table>
</body></html>"""
