"""The verdict of a session, computed from its votes when it is closed (`adaptflow review close`),
and where it is kept: metrics and an HTML page (review/verdict.html) on the session's run, and tags
on both registered versions (what the promotion gate reads: tasks/review/gate.py)."""
from __future__ import annotations

import html
import json
import math
import time
from dataclasses import asdict, dataclass

from tasks.review import stats
from tasks.review.session import Session
from tasks.review.votes import TAGS, Vote

VERDICT_HTML, VERDICT_JSON = "review/verdict.html", "review/verdict.json"


@dataclass(frozen=True)
class Verdict:
    session: str
    model: str
    a: str
    b: str
    win: stats.WinRate                     # b over a
    agreement_measure: str                 # cohen_kappa, fleiss_kappa, none
    agreement: float
    agreement_items: int
    reviewers: dict[str, int]              # reviewer -> votes
    bradley_terry: dict[str, tuple[float, float, float]]   # "v3" -> (strength, 2.5 %, 97.5 %)
    tags: dict[str, int]
    disagreements: list[tuple[str, str, str]]   # (item, reviewers' pick, metric's pick)
    b_shown_left: int                      # items of the session showing b on the left

    def as_dict(self) -> dict:
        return asdict(self)


def compute(session: Session, votes: list[Vote], rounds: int = 200) -> Verdict:
    """The verdict of `votes` (already scoped to the session): choices mapped from the side shown
    to the versions' roles through each item's recorded side."""
    roles = [(v, session.item(v.item).role(v.choice)) for v in votes]
    by_reviewer: dict[str, dict[str, str]] = {}
    by_item: dict[str, list[str]] = {}
    for v, role in roles:
        by_reviewer.setdefault(v.reviewer, {})[v.item] = role
        by_item.setdefault(v.item, []).append(role)
    measure, kappa, shared = stats.agreement(by_reviewer)
    va, vb = f"v{session.a}", f"v{session.b}"
    comparisons = [(vb, va, 1.0 if r == "b" else 0.0 if r == "a" else 0.5) for _, r in roles]
    bt = stats.bootstrap_bradley_terry(comparisons, rounds=rounds, seed=session.seed) if comparisons else {}
    metric = {it.id: (it.scores["a"], it.scores["b"]) for it in session.items}
    return Verdict(session=session.id, model=session.model, a=session.a, b=session.b,
                   win=stats.win_rate([r for _, r in roles]), agreement_measure=measure, agreement=kappa,
                   agreement_items=shared, reviewers={r: len(v) for r, v in sorted(by_reviewer.items())},
                   bradley_terry=bt, tags=stats.tag_counts([v.tags for v in votes]),
                   disagreements=stats.metric_disagreements(by_item, metric),
                   b_shown_left=sum(it.swapped for it in session.items))


def version_tags(verdict: Verdict, role: str) -> dict[str, str]:
    """What a registered version carries of the verdict, from its own side (role "a" or "b")."""
    win = verdict.win if role == "b" else verdict.win.flipped()
    figure = lambda x: "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"  # noqa: E731
    return {"review.session": verdict.session, "review.role": role,
            "review.opponent": verdict.a if role == "b" else verdict.b,
            "review.judgments": str(win.judgments), "review.win_rate": figure(win.rate),
            "review.win_rate_lower": figure(win.lower), "review.win_rate_upper": figure(win.upper),
            "review.agreement": figure(verdict.agreement), "review.agreement_measure": verdict.agreement_measure,
            "review.closed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def record(client, session: Session, verdict: Verdict) -> None:
    """Metrics, verdict.json and verdict.html on the session run (its state: closed), and the
    verdict's tags on both versions."""
    w = verdict.win
    metrics = {"review_judgments": w.judgments, "review_b_wins": w.b_wins, "review_a_wins": w.a_wins,
               "review_ties": w.ties, "review_both_bad": w.both_bad}
    for name, value in {"review_win_rate_b": w.rate, "review_win_rate_b_lower": w.lower,
                        "review_win_rate_b_upper": w.upper, "review_agreement": verdict.agreement,
                        "review_agreement_items": verdict.agreement_items}.items():
        if not math.isnan(value):
            metrics[name] = value
    for name, value in metrics.items():
        client.log_metric(session.id, name, float(value))
    client.log_text(session.id, json.dumps(verdict.as_dict(), indent=1, default=str), VERDICT_JSON)
    client.log_text(session.id, render(session, verdict), VERDICT_HTML)
    client.set_tag(session.id, "review.state", "closed")
    for role, version in (("a", session.a), ("b", session.b)):
        for key, value in version_tags(verdict, role).items():
            client.set_model_version_tag(session.model, version, key, value)


def _plots(verdict: Verdict) -> list[tuple[str, str]]:
    from tasks.evaluation.plots import png_data_uri, pyplot

    plt = pyplot()
    w = verdict.win
    fig, ax = plt.subplots(figsize=(5, 1.8))
    ax.errorbar([w.rate], [0], xerr=[[w.rate - w.lower], [w.upper - w.rate]], fmt="o", color="#d62728", capsize=6)
    ax.axvline(0.5, color="#888", linestyle="--")
    ax.set_xlim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel(f"win rate of v{verdict.b} over v{verdict.a} (ties count half), 95 % Wilson interval", fontsize=8)
    first = ("Win rate with its interval", png_data_uri(fig))
    fig, ax = plt.subplots(figsize=(5, 2.4))
    counts = [w.b_wins, w.a_wins, w.ties, w.both_bad]
    ax.bar([f"v{verdict.b} better", f"v{verdict.a} better", "tie", "both bad"], counts,
           color=["#d62728", "#1f77b4", "#999", "#444"])
    ax.set_ylabel("judgments", fontsize=8)
    ax.tick_params(labelsize=8)
    return [first, ("Judgments by outcome", png_data_uri(fig))]


def render(session: Session, verdict: Verdict) -> str:
    w, e = verdict.win, html.escape
    figures = "".join(f'<figure><img alt="{e(alt)}" src="{src}"><figcaption>{e(alt)}</figcaption></figure>'
                      for alt, src in _plots(verdict))
    bt = "".join(f"<tr><td>{e(k)}</td><td>{s:.3f}</td><td>{lo:.3f} .. {hi:.3f}</td></tr>"
                 for k, (s, lo, hi) in sorted(verdict.bradley_terry.items(), key=lambda kv: -kv[1][0]))
    tags = "".join(f"<tr><td>{e(t)}</td><td>{verdict.tags.get(t, 0)}</td></tr>" for t in TAGS)
    gaps = "".join(f"<tr><td><code>{e(i)}</code></td><td>{e(session.item(i).input[:200])}</td><td>v"
                   f"{session.b if p == 'b' else session.a}</td><td>v{session.b if m == 'b' else session.a}</td></tr>"
                   for i, p, m in verdict.disagreements)
    who = ", ".join(f"{e(r)} ({n})" for r, n in verdict.reviewers.items())
    kappa = "n/a" if math.isnan(verdict.agreement) else f"{verdict.agreement:.3f}"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Review verdict {e(session.model)} v{e(session.b)} vs v{e(session.a)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:14px}}img{{max-width:100%}}</style>
</head><body>
<h1>Blinded review of {e(session.model)}: v{e(session.b)} ({e(session.b_ref)}) against v{e(session.a)} ({e(session.a_ref)})</h1>
<p>Session <code>{e(session.id)}</code> (an MLflow run of its own): {len(session.items)} items of the test split,
{session.reviewers} reviewer seat(s), {session.overlap} items judged by every seat.</p>
<p id="summary">{w.judgments} judgments by {who}. Win rate of v{e(session.b)}: <strong>{w.rate:.3f}</strong>
(95 % interval {w.lower:.3f} .. {w.upper:.3f}; ties and both-bad count half): {w.b_wins} better, {w.a_wins} worse,
{w.ties} ties, {w.both_bad} both bad. Agreement ({e(verdict.agreement_measure)}) on {verdict.agreement_items} shared
items: {kappa}. Version b was shown on the left on {verdict.b_shown_left} of {len(session.items)} items.</p>
{figures}
<h2>Bradley-Terry strengths (bootstrap 95 % intervals)</h2><table><tr><th>version</th><th>strength</th>
<th>interval</th></tr>{bt}</table>
<h2>Reason tags</h2><table><tr><th>tag</th><th>count</th></tr>{tags}</table>
<h2>Where reviewers and the automatic metric disagree</h2><table><tr><th>item</th><th>input</th>
<th>reviewers preferred</th><th>metric preferred</th></tr>{gaps}</table>
</body></html>"""
