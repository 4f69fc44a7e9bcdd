"""The canary page: the evidence of one check as a self-contained HTML page (figures inlined):
each live signal per arm over time, the sequential statistic against its boundary, the traffic
per arm, and the decision with its reasons."""
from __future__ import annotations

import html
import math
import time

from tasks.config import CanarySettings
from tasks.evaluation.plots import png_data_uri, pyplot
from tasks.outcomes.store import Outcome
from tasks.release.decide import Decision, decide
from tasks.release.evidence import ARMS, window
from tasks.tasktypes.signals import live_signal

POINTS = 24   # moments along the window at which the cumulative evidence is recomputed for the plots
COLORS = {"champion": "#1f77b4", "canary": "#d62728"}


def timeline(rows: list[Outcome], signals: tuple[str, ...], settings: CanarySettings, started: float,
             now: float) -> list[tuple[float, Decision]]:
    """(minutes since the start, the decision the evidence up to then gives) at POINTS moments."""
    out = []
    for i in range(1, POINTS + 1):
        until = started + (now - started) * i / POINTS
        seen = [r for r in rows if r.at < until]
        w = window(seen, signals)
        out.append(((until - started) / 60, decide(w.canary, w.champion, settings, (until - started) / 60)))
    return out


def _figure(points: list[tuple[float, Decision]], signals: tuple[str, ...], draw, title: str) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(signals), figsize=(3.6 * len(signals), 2.9), squeeze=False)
    for ax, signal in zip(axes.flat, signals):
        draw(ax, signal, [m for m, _ in points], [d.tests.get(signal) for _, d in points])
        ax.set_title(live_signal(signal).label, fontsize=9)
        ax.set_xlabel("minutes since the canary started", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png_data_uri(fig)


def _rates(ax, signal, minutes, tests) -> None:
    for arm in ARMS:
        ys = [((t.canary_x / t.canary_n) if arm == "canary" else (t.champion_x / t.champion_n))
              if t is not None and (t.canary_n if arm == "canary" else t.champion_n) else math.nan for t in tests]
        ax.plot(minutes, ys, marker=".", color=COLORS[arm], label=arm)
    ax.legend(fontsize=7)
    ax.set_ylabel("rate (cumulative)", fontsize=8)


def _statistic(ax, signal, minutes, tests) -> None:
    ys = [(t.log_lr if t.diff > 0 else -t.log_lr) if t is not None and math.isfinite(t.radius) else math.nan
          for t in tests]
    ax.plot(minutes, ys, marker=".", color="#444", label="log likelihood ratio (signed: + canary worse)")
    boundary = next((t.boundary for t in tests if t is not None), None)
    if boundary is not None:
        ax.axhline(boundary, color=COLORS["canary"], linestyle="--", label=f"rollback boundary {boundary:.2f}")
    ax.legend(fontsize=6)


def _traffic(points) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    minutes = [m for m, _ in points]
    ax.plot(minutes, [d.champion_requests for _, d in points], color=COLORS["champion"], label="champion")
    ax.plot(minutes, [d.canary_requests for _, d in points], color=COLORS["canary"], label="canary")
    ax.set_xlabel("minutes since the canary started", fontsize=8)
    ax.set_ylabel("requests (cumulative)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png_data_uri(fig)


def _img(alt: str, src: str) -> str:
    return f'<figure><img alt="{html.escape(alt)}" src="{src}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def render(*, model: str, canary_version: str, champion_version: str | None, share: float, started: float,
           rows: list[Outcome], signals: tuple[str, ...], settings: CanarySettings, decision: Decision,
           now: float | None = None) -> str:
    now = now or time.time()
    points = timeline(rows, signals, settings, started, max(now, started + 1))
    table = "".join(
        f"<tr><td>{html.escape(live_signal(s).label)}</td><td>{t.canary_x}/{t.canary_n}</td>"
        f"<td>{t.champion_x}/{t.champion_n}</td><td>{t.diff:+.2%}</td><td>{t.lower:+.2%} .. {t.upper:+.2%}</td>"
        f"<td>{t.log_lr:.2f} / {t.boundary:.2f}</td><td>{'worse' if t.worse else ''}</td></tr>"
        for s, t in decision.tests.items())
    figures = [_img("Live signals per arm over time", _figure(points, signals, _rates, "Rate per arm (cumulative)")),
               _img("Sequential statistic against its rollback boundary",
                    _figure(points, signals, _statistic, "Always-valid test: log likelihood ratio vs boundary")),
               _img("Requests per arm", _traffic(points))]
    verdict = {"rollback": "#fde2e2", "hold": "#fff6d6", "ready": "#e2f6e2"}[decision.action]
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Canary {html.escape(model)} v{canary_version}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:14px}}
.decision{{padding:1em;border-radius:6px;background:{verdict}}}figure{{margin:1em 0}}img{{max-width:100%}}</style>
</head><body>
<h1>Canary of {html.escape(model)}: v{canary_version} against @champion v{champion_version or '-'}</h1>
<p>Share {share:.0%} of unpinned traffic, started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(started))};
checked {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(now))}.</p>
<div class="decision" id="decision"><strong>Decision: {decision.action}</strong><br>{html.escape(decision.reason)}</div>
<h2>Guardrails</h2>
<p>Each is the share of split-routed requests with the signal. Bounds are an always-valid confidence sequence at
alpha {settings.alpha:g} split over {len(decision.tests) or 1} guardrails: a rollback needs the lower bound above 0
(and {settings.min_requests_rollback} canary requests); ready needs every upper bound at most {settings.tolerance:.1%}
after {settings.min_requests_ready} canary requests and {settings.min_minutes_ready:g} minutes.</p>
<table id="guardrails"><tr><th>signal</th><th>canary</th><th>champion</th><th>difference</th><th>bounds</th>
<th>log LR / boundary</th><th></th></tr>{table}</table>
<h2>Over time</h2>{''.join(figures)}
</body></html>"""
