"""The report's retrieval ablation: each strategy with and without retrieved train examples,
side by side on the same test examples (few_shot against retrieval_few_shot; `X` against
`X+retrieval`), the difference with its paired test, and what retrieval costs."""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from tasks.evaluation.report_data import StrategyRow
from tasks.evaluation.task_parts import EvaluationPart, evaluation_part
from tasks.tasktypes import DEFAULT, catalogue, task_type

# Pairs (without, with) besides every `X` / `X+retrieval` that both ran.
PROMPTING_PAIRS = (("few_shot", "retrieval_few_shot"),)


@dataclass(frozen=True)
class AblationPair:
    without: StrategyRow
    with_retrieval: StrategyRow
    metric: str                  # the task type's quality metric on test (test_accuracy, test_rougeL)
    gain_points: float           # (with - without) x 100
    p_value: float | None        # paired: McNemar (classification) or permutation (per-example ROUGE-L)
    test: str                    # the paired test's name, or why there is none


def pairs_of(names: list[str]) -> list[tuple[str, str]]:
    """(without, with) for every pair whose two strategies ran, in run order."""
    from tasks.models.retrieval import RETRIEVAL_SUFFIX as SUFFIX

    out = [(a, b) for a, b in PROMPTING_PAIRS if a in names and b in names]
    return out + [(n[: -len(SUFFIX)], n) for n in names if n.endswith(SUFFIX) and n[: -len(SUFFIX)] in names]


def paired(a: StrategyRow, b: StrategyRow, ev: EvaluationPart) -> tuple[float | None, str]:
    """The paired p-value of b against a on the same test examples, or why there is none."""
    x, y = ev.per_example(a), ev.per_example(b)
    if x is None or y is None:
        return None, "per-example results not recorded"
    if len(x) != len(y):
        return None, f"not paired: {len(x)} and {len(y)} test examples (set the same max_test_examples)"
    return ev.paired_p(np.array(y), np.array(x)), ev.test_name


def retrieval_pairs(rows: list[StrategyRow], task: str = DEFAULT) -> list[AblationPair]:
    metric, ev = catalogue()[task_type(task).quality].key("test"), evaluation_part(task)
    done = {r.strategy: r for r in rows if metric in r.metrics}
    out = []
    for a, b in pairs_of(list(done)):
        x, y = per_example(done[a], ev), per_example(done[b], ev)
        gain = 100 * ((np.mean(y) - np.mean(x)) if x and y else (done[b].metrics[metric] - done[a].metrics[metric]))
        p, test = paired(done[a], done[b], ev)
        out.append(AblationPair(done[a], done[b], metric, gain, p, test))
    return out


def per_example(row: StrategyRow, ev: EvaluationPart) -> list[float] | None:
    """What the paired test reads: the saved model's (for a prompting strategy, the saved
    variant's) correctness or ROUGE-L per test example."""
    values = ev.per_example(row)
    return None if values is None else [float(v) for v in values]


def mean_ci(values: list[float], seed: int = 0, resamples: int = 2000) -> tuple[float, float, float]:
    """The mean and its 95 % percentile-bootstrap interval over examples."""
    x = np.asarray(values, float)
    means = x[np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    return float(x.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def _score(row: StrategyRow, metric: str, ev: EvaluationPart) -> str:
    """The saved model's test score with its interval (the logged figure of a prompting strategy
    is the mean over its variants; the pair compares the saved ones)."""
    values = per_example(row, ev)
    if values:
        mean, low, high = mean_ci(values)
    else:
        m = row.metrics
        mean, low, high = m[metric], m.get(f"{metric}_ci_low"), m.get(f"{metric}_ci_high")
    return f"{mean:.4f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def retrieval_section(rows: list[StrategyRow], task: str = DEFAULT) -> str:
    pairs, ev = retrieval_pairs(rows, task), evaluation_part(task)
    if not pairs:
        return ""
    e, label = html.escape, catalogue()[task_type(task).quality].label
    body = []
    for p in pairs:
        m = p.with_retrieval.metrics
        cost = lambda key, fmt: fmt.format(m[key]) if key in m else "–"
        body.append(
            f"<tr><th>{e(p.without.strategy)} → {e(p.with_retrieval.strategy)}</th>"
            f"<td>{_score(p.without, p.metric, ev)}</td><td>{_score(p.with_retrieval, p.metric, ev)}</td>"
            f"<td>{p.gain_points:+.1f}</td><td>{'–' if p.p_value is None else f'{p.p_value:.3g}'}</td>"
            f"<td style='text-align:left'>{e(p.test)}</td><td>{cost('retrieval_ms_p50', '{:.1f}')}</td>"
            f"<td>{cost('retrieval_ms_p95', '{:.1f}')}</td><td>{cost('retrieval_extra_prompt_tokens', '{:.0f}')}</td>"
            f"<td>{cost('index_bytes', '{:,.0f}')}</td><td>{cost('index_build_seconds', '{:.1f}')}</td></tr>")
    return (f"<h2>Retrieval ablation</h2><p>Each strategy without and with its inputs' nearest train examples "
            f"(MiniLM + FAISS; a training example never retrieves itself), on the same test examples. "
            f"Test {label} of the saved model (of a prompting strategy, its saved variant) with its 95 % "
            f"bootstrap interval; gain in points; the paired test of the two. "
            f"Retrieval cost: one query's latency (embedding + search), the tokens the neighbours add to an "
            f"input, and the index.</p><table id=\"retrieval\"><tr><th>strategy</th><th>without</th>"
            f"<th>with retrieval</th><th>gain pts</th><th>p</th><th>test</th><th>retrieval p50 ms</th>"
            f"<th>p95 ms</th><th>added tokens</th><th>index bytes</th><th>index build s</th></tr>"
            f"{''.join(body)}</table>")
