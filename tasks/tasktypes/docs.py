"""docs/metrics.md, rendered from the catalogue and the task types (a test keeps the page equal
to this output):  .venv/bin/python -m tasks.tasktypes.docs > docs/metrics.md"""
from __future__ import annotations

from tasks.tasktypes.metrics import budgets, catalogue
from tasks.tasktypes.registry import names, task_type


def metrics_markdown() -> str:
    rows = ["| metric | logged as | task types | better | budget | select | what it is |",
            "|---|---|---|---|---|---|---|"]
    for m in catalogue().values():
        logged = ", ".join(f"`{k}`" for k in m.keys()) + (" (every run)" if m.recorded else "")
        rows.append(f"| {m.label} | {logged} | {', '.join(m.tasks)} | {'higher' if m.higher_is_better else 'lower'} "
                    f"| {f'`{m.budget}`' if m.budget else ''} | {'yes' if m.selectable else ''} | {m.doc} |")
    types = [f"- **{t}**: {task_type(t).summary}; ranked by `{task_type(t).quality}`, selects on "
             f"{', '.join(f'`{s}`' for s in task_type(t).selectable)} (`select_metric: auto`: the first); "
             f"served at `POST {task_type(t).route}`; feedback: {task_type(t).feedback}" for t in names()]
    return "\n".join([
        "# Metrics and task types", "",
        "Generated from `tasks/tasktypes/` (`python -m tasks.tasktypes.docs > docs/metrics.md`); "
        "a test keeps this page equal to the code.", "",
        "## Task types", "", *types, "",
        "## The metric catalogue", "",
        "Every metric is declared once in `tasks/tasktypes/metrics.py`. Selection reads a metric's "
        "validation score (`val_<name>`) in its direction; the test split only reports. "
        f"Budgets (`project.budgets`): {', '.join(f'`{b}`' for b in budgets())}.", "",
        *rows, "",
        "Adding a metric: one `declare(Metric(...))` in `tasks/tasktypes/metrics.py` and one function "
        "that computes it (a function of class probabilities: `@from_probabilities` in "
        "`tasks/evaluation/metric_functions.py`).", ""])


if __name__ == "__main__":
    print(metrics_markdown(), end="")
