"""The report's figures (matplotlib without a screen, inlined as PNG data URIs) and the
reliability diagram each strategy run logs."""
from __future__ import annotations

import base64
import io

from tasks.evaluation.report_data import StrategyRow
from tasks.evaluation.selection import pareto_front
from tasks.evaluation.statistics import Reliability


def pyplot():
    """matplotlib without a screen (imported on use, never at import time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_data_uri(fig) -> str:
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


def reliability_figure(rel: Reliability):
    """One strategy's reliability diagram, as its run logs it."""
    from dataclasses import asdict

    fig, ax = pyplot().subplots(figsize=(3.6, 3.4))
    draw_reliability(ax, asdict(rel), f"ECE {rel.ece:.3f} (15 bins)")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    fig.tight_layout()
    return fig


def pareto_plot(rows: list[StrategyRow], cost_key: str, cost_label: str, log: bool,
                quality: tuple[str, str] = ("test_accuracy", "accuracy")) -> str:
    key, label = quality
    done = [r for r in rows if key in r.metrics and cost_key in r.metrics]
    floor = 1e-6 if log else 0.0
    points = {r.strategy: (max(r.metrics[cost_key], floor), r.metrics[key]) for r in done}
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
    ax.set_ylabel(f"test {label}")
    ax.grid(alpha=0.3)
    return png_data_uri(fig)


def reliability_plot(rows: list[StrategyRow]) -> str | None:
    shown = [r for r in rows if r.reliability.get("bin_confidence")]
    if not shown:
        return None
    fig, axes = _grid(len(shown), 4, 2.9, 2.7)
    for ax, r in zip(axes, shown):
        draw_reliability(ax, r.reliability, f"{r.strategy}: ECE {r.reliability['ece']:.3f}")
    fig.supxlabel("confidence (15 bins)", fontsize=8)
    fig.supylabel("accuracy", fontsize=8)
    fig.tight_layout()
    return png_data_uri(fig)


def loss_plot(rows: list[StrategyRow]) -> str | None:
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
    return png_data_uri(fig)


def learning_curve_plot(rows: list[StrategyRow]) -> str | None:
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
    return png_data_uri(fig)


def study_plot(rows: list[StrategyRow]) -> str | None:
    """Each tuned strategy's study: the objective (lowest validation loss) per trial, the
    configured params' trial circled, pruned trials as crosses at the last loss they reported."""
    tuned = [r for r in rows if r.tuning.get("trials")]
    if not tuned:
        return None
    fig, axes = _grid(len(tuned), 3, 4, 2.6)
    for ax, r in zip(axes, tuned):
        trials = r.tuning["trials"]
        done = [(t["number"], t["value"]) for t in trials if t["state"] == "COMPLETE"]
        pruned = [(t["number"], t["curve"][-1][1]) for t in trials if t["state"] == "PRUNED" and t["curve"]]
        if done:
            ax.plot(*zip(*done), "o", c="#2980b9", ms=5, label="complete")
            best = [min(v for n, v in done if n <= x) for x, _ in done]
            ax.step([x for x, _ in done], best, where="post", c="#2980b9", lw=1, alpha=0.6, label="best so far")
        if pruned:
            ax.plot(*zip(*pruned), "x", c="#c0392b", ms=6, label="pruned (last val loss)")
        default = r.tuning.get("default_trial")
        value = next((v for n, v in done if n == default), None)
        if value is not None:
            ax.plot([default], [value], "o", mfc="none", mec="k", ms=10, label="configured params")
        ax.set_title(r.strategy, fontsize=9)
        ax.set_xlabel("trial", fontsize=8)
        ax.set_ylabel("validation loss", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return png_data_uri(fig)


def cost_plot(curves: dict[str, tuple[list[float], list[float]]], labels: dict[str, str], now: float) -> str:
    """Monthly cost (serving + storage) against requests a day, one line per strategy, labelled
    with its quality; the dotted line marks the deployment's own traffic (params cost:)."""
    fig, ax = pyplot().subplots(figsize=(6.4, 3.8))
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, lw=1.5, drawstyle="steps-post", label=labels.get(name, name))
    ax.axvline(now, ls=":", c="k", lw=1)
    ax.set_xscale("log")
    # Log cost only where some strategy has a cost to draw: a generation run whose p95 misses the
    # objective at every traffic is all gaps, and matplotlib refuses to log-scale nothing.
    if any(y > 0 for _, ys in curves.values() for y in ys if y == y):
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no strategy meets the p95 objective at any traffic shown", transform=ax.transAxes,
                ha="center", va="center", fontsize=9)
    ax.set_xlabel("requests a day")
    ax.set_ylabel("USD a month")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return png_data_uri(fig)
