"""The HTML report: self-contained (no external resource), every figure and table present."""
import re
from html.parser import HTMLParser

from tasks.evaluation.report import recommendation, render
from tasks.evaluation.report_data import ReportData, StrategyRow


class Inventory(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.external = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        if tag == "table":
            self.tables.append(a.get("id"))
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http", "//")):
                self.external.append(a[key])


def data():
    curve = [(s, 0.7 - s / 1000) for s in (100, 200, 300)]
    m = lambda acc, frac, mb, sec: {"val_macro_f1": acc - 0.005, "test_accuracy": acc, "test_macro_f1": acc - 0.01,
                                    "trainable_params": frac * 2e7,
                                    "trainable_fraction": frac, "artifact_bytes": mb * 1e6, "train_seconds": sec,
                                    "best_step": 300}
    return ReportData("abc123", "specialize-0fdc6cdb", {"data.version": "0fdc", "git.commit": "e500"}, [
        StrategyRow("full_finetune", "r1", "FINISHED", m(0.818, 1.0, 90.9, 164), curve, curve),
        StrategyRow("lora", "r2", "FINISHED", m(0.816, 0.0033, 0.31, 203) | {"forgetting_delta": 0.4},
                    curve, curve, learning_curve=[(100, 0.62), (500, 0.74), (4000, 0.816)]),
        StrategyRow("prompt_tuning", "r5", "FINISHED", m(0.691, 0.0002, 0.025, 215), curve, curve),
        StrategyRow("lora_prompt", "r6", "FINISHED", m(0.798, 0.0035, 0.33, 230), curve, curve),
        StrategyRow("zero_shot", "r3", "FINISHED", m(0.659, 0.0, 0.001, 0.0) | {"prompt_variant_std": 0.02}),
        StrategyRow("ia3", "r4", "FAILED", {}),
    ], {"success": True, "evaluated_expectations": 24, "failures": [], "drift_compared_with": "9f00",
        "drift_warnings": [{"message": "label distribution moved: TVD 0.125 > 0.1"}]},
        {"version": "1", "strategy": "full_finetune", "set_challenger": True, "reasons": ["no comparable ..."]})


def test_report_is_self_contained_with_every_figure_and_table():
    page = render(data())
    inv = Inventory()
    inv.feed(page)
    assert not inv.external
    # two Pareto plots, losses, learning curves (reliability only when logged)
    assert len(inv.images) == 4 and all(i["src"].startswith("data:image/png;base64,") for i in inv.images)
    assert {"comparison", "lineage", "ablation"} <= set(inv.tables)
    assert "lora_prompt loses 1.8 points against its best part alone (lora), with 1.06x" in page
    assert "+0.4" in page   # forgetting_delta, signed
    assert re.search(r"<tr class=\"chosen\"><th>lora</th>", page)
    assert "FAILED" in page and "24 expectations, 0 failed" in page
    assert "drift: label distribution moved: TVD 0.125" in page


def test_recommendation_sentence_comes_from_the_numbers():
    rec = recommendation(data().rows, 1.0)
    assert rec.choice == "lora"
    assert rec.sentence.startswith("lora: within 0.2 validation points of full_finetune with 0.3 % of the trainable "
                                   "parameters")


def test_paired_tests_against_the_best():
    from dataclasses import replace

    from tasks.evaluation.report_data import with_paired_tests

    rows = data().rows
    rows[0] = replace(rows[0], correct=[True] * 20)
    rows[1] = replace(rows[1], correct=[True] * 10 + [False] * 10)
    paired = with_paired_tests(rows)
    assert "mcnemar_p" not in paired[0].metrics            # the best is not tested against itself
    assert paired[1].metrics["mcnemar_p"] == __import__("pytest").approx(2 / 1024)


def test_recommendation_applies_the_project_budgets():
    rows = data().rows
    assert recommendation(rows, 1.0, {"max_forgetting": 0.1}).choice == "full_finetune"
    assert recommendation(rows, 1.0, {"max_artifact_bytes": 500, "max_forgetting": None}).choice == "none"


def test_ablation_needs_the_hybrid():
    from tasks.evaluation.report import hybrid_ablation

    rows = [r for r in data().rows if r.strategy != "lora_prompt"]
    assert hybrid_ablation(rows)[1] == ""


def test_report_renders_in_headless_chromium(tmp_path):
    """Every figure decodes in a real browser and the page screenshots (Debian's chromium;
    `make setup` installs it where apt-get can)."""
    import pytest
    from report_browser import chromium, figure_sizes, screenshot

    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(render(data()))
    sizes = figure_sizes(page)
    assert len(sizes) == 4 and all(w > 100 and h > 100 for _, w, h in sizes), sizes
    assert screenshot(page, tmp_path / "report.png").stat().st_size > 10_000


PAYLOAD = "<script>alert(1)</script>"


def test_user_data_in_the_report_is_escaped():
    """Labels, texts, sources and errors reach the report from user data and
    the registry; none is rendered as markup."""
    from dataclasses import replace

    d = data()
    rows = [replace(d.rows[-1], error=f"ValueError: label {PAYLOAD}\nmore {PAYLOAD}"), *d.rows[:-1]]
    d = replace(d, title=f"specialize {PAYLOAD}", rows=rows,
                tags={**d.tags, "data.source": f"/data/{PAYLOAD}.csv", "data.labels": PAYLOAD},
                validation={**d.validation, "drift_warnings": [{"message": f"label {PAYLOAD} moved"}]},
                decision={**d.decision, "version": PAYLOAD, "strategy": PAYLOAD, "reasons": [f"{PAYLOAD} won"]})
    page = render(d)

    class Scripts(HTMLParser):
        def __init__(self):
            super().__init__()
            self.scripts = 0

        def handle_starttag(self, tag, attrs):
            self.scripts += tag == "script" or any(k.startswith("on") for k, _ in attrs)

    parser = Scripts()
    parser.feed(page)
    assert parser.scripts == 0 and PAYLOAD not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 7   # shown as text, everywhere it appears
