"""The review page in a real browser: Playwright (Python) drives the system Chromium (never a
downloaded one) through a 20-item session with two reviewers, one voting by clicks and one by
keys. Everything the page receives before each vote is read for anything that would unblind it,
and the verdict's win rate, interval and kappa are checked against a hand count of the same votes."""
from __future__ import annotations

import json
import math
import re
import shutil
import socket
import threading
import time

import pytest
from test_review import MODEL, make_store

from tasks.config import load_settings
from tasks.review import steps
from tasks.review.page import create_app

pytest.importorskip("playwright.sync_api", reason="pip package playwright (pinned in pyproject.toml) not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (`apt-get install chromium`); the test "
                                                          "never downloads a browser")
REVIEWERS = ("ana", "ben")
KEYS = {"A": "a", "B": "b", "tie": "t", "bad": "x"}


def scripted(item_id: str, reviewer: str, differ: frozenset[str] = frozenset()) -> tuple[str, list[int]]:
    """The vote for an item (from its opaque id only: the same for both reviewers on most shared
    items, but ben picks A where ana picks B on some, and differs on the items in `differ`, so
    kappa is neither 0 nor 1 whatever ids a session draws) and the tags' numbers (1-4)."""
    h = int(item_id, 16)
    anas = choice = ["A", "B", "B", "tie", "bad", "A", "B"][h % 7]
    if reviewer == "ben" and choice == "B" and h % 2:
        choice = "A"
    if reviewer == "ben" and item_id in differ:   # against ana's pick, not the line above's (it flipped
        choice = "B" if anas == "A" else "A"      # an odd B to A and back, and kappa was 1.0 once)
    return choice, [1 + h % 4] if h % 3 == 0 else []


def test_the_leak_check_catches_a_version_an_alias_or_a_strategy():
    assert unblinding('{"answers": [{"text": "x"}], "done": 1}', ["champion", "lora"]) == []
    assert unblinding('{"version": 2}', []) == ['version": 2']
    assert unblinding("<b>v3</b> by lora", ["lora"]) == ["v3", "lora"]
    assert unblinding("@champion", ["champion"]) == ["champion"]


def start(app) -> tuple[object, str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/"


def unblinding(text: str, names: list[str]) -> list[str]:
    """What in `text` would tell a reviewer which version wrote an answer, or how another voted."""
    found = re.findall(r"\bv\d+\b|version\W{0,4}\d", text, flags=re.I)
    return found + [n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text, flags=re.I)]


def test_two_reviewers_finish_a_blinded_session_and_the_verdict_is_the_hand_count(tmp_path, tiny_bert, monkeypatch):
    from playwright.sync_api import sync_playwright

    from tasks.strategies import registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "store").mkdir()
    root, uri, client = make_store(tmp_path / "store", tiny_bert)
    settings = load_settings(root / "params.yaml")
    session = steps.create(client, settings, model=MODEL, a="champion", b="challenger", n=20, source="test",
                           reviewers=2, overlap=8, seed=11)
    server, url = start(create_app(session, steps.vote_store(settings), uri))
    # Ids are drawn per session: ben differs from ana on the first shared item, so at least one
    # disagreement is certain (a run once drew 8 shared items the hash rule had them agree on).
    differ = frozenset(sorted(set(session.seats["1"]) & set(session.seats["2"]))[:1])
    forbidden = ["champion", "challenger", "canary", MODEL, session.id, "swapped", "stratum", "reference",
                 *registry.names(), *REVIEWERS]
    cast: dict[str, dict[str, str]] = {}
    leaks: list[tuple[str, list[str]]] = []
    checked = 0
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for reviewer in REVIEWERS:
                page = browser.new_context().new_page()
                seen: list = []
                page.on("response", lambda r, seen=seen: seen.append(r))
                page.goto(url)
                page.fill("#name", reviewer)
                page.click("#go")
                page.wait_for_selector("#work:not([hidden])")
                page.wait_for_function("document.querySelector('#count').textContent.includes('/')")
                others = [r for r in REVIEWERS if r != reviewer]
                cast[reviewer] = {}
                while page.is_visible("#work"):
                    # Everything received so far and the page as shown, before this vote.
                    texts = [r.text() for r in seen] + [page.content()]
                    checked += len(texts)
                    for text in texts:
                        bad = unblinding(text, [n for n in forbidden if n != reviewer] + others)
                        if bad:
                            leaks.append((reviewer, bad))
                    seen.clear()
                    item = json.loads(page.evaluate("JSON.stringify(current)"))
                    assert set(item) == {"id", "input", "answers"}
                    choice, tags = scripted(item["id"], reviewer, differ)
                    if not cast[reviewer]:   # what a reviewer sees
                        page.screenshot(path=str(tmp_path / f"review-{reviewer}-item.png"), full_page=True)
                    before = page.text_content("#count")
                    with page.expect_response("**/api/vote"):
                        if reviewer == "ana":   # clicks
                            for t in tags:
                                page.click(f"#tags button:nth-child({t})")
                            page.click(f"#vote-{choice}")
                        else:                   # keys
                            for t in tags:
                                page.keyboard.press(str(t))
                            page.keyboard.press(KEYS[choice])
                    page.wait_for_function(f"document.querySelector('#count').textContent !== {json.dumps(before)}")
                    cast[reviewer][item["id"]] = choice
                assert page.is_visible("#finished") and page.text_content("#count") == f"{len(cast[reviewer])} / " \
                    f"{len(session.seats[str(REVIEWERS.index(reviewer) + 1)])}"
                page.screenshot(path=str(tmp_path / f"review-{reviewer}.png"), full_page=True)
                # a second vote on a judged item is refused by the store, even when sent by hand
                again = page.evaluate("""async (id) => (await fetch('/api/vote', {method: 'POST', headers:
                    {'Content-Type': 'application/json'}, body: JSON.stringify({item: id, choice: 'A'})})).status""",
                                      next(iter(cast[reviewer])))
                assert again == 409
            browser.close()
    finally:
        server.should_exit = True
    assert leaks == [] and checked >= 2 * 14 + 4   # each vote's response, the page, sign-in and first item
    assert (tmp_path / "review-ana-item.png").stat().st_size > 10_000
    assert {len(v) for v in cast.values()} == {8 + 6}   # 8 shared + 12 / 2 each: all 20 items judged

    # The hand count: the side each version was shown on, from the session's record.
    b_on_left = {it.id: it.swapped for it in session.items}
    role = lambda i, c: c if c in ("tie", "bad") else ("b" if (c == "A") == b_on_left[i] else "a")  # noqa: E731
    roles = [role(i, c) for votes in cast.values() for i, c in votes.items()]
    n, b_wins, half = len(roles), roles.count("b"), roles.count("tie") + roles.count("bad")
    rate = (b_wins + half / 2) / n
    z = 1.959963984540054
    centre, spread = (rate + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    shared = sorted(set(cast["ana"]) & set(cast["ben"]))
    x, y = [role(i, cast["ana"][i]) for i in shared], [role(i, cast["ben"][i]) for i in shared]
    po = sum(p == q for p, q in zip(x, y)) / len(shared)
    pe = sum(x.count(c) * y.count(c) for c in ("a", "b", "tie", "bad")) / len(shared) ** 2
    verdict = steps.close(client, settings, session.id)
    assert (verdict.win.judgments, verdict.win.b_wins) == (n, b_wins)
    assert verdict.win.rate == pytest.approx(rate)
    assert (verdict.win.lower, verdict.win.upper) == pytest.approx((centre - spread, centre + spread))
    assert verdict.agreement_items == len(shared) == 8
    assert verdict.agreement == pytest.approx((po - pe) / (1 - pe))
    assert -1 < verdict.agreement < 1
    tagged = sum(bool(scripted(i, r)[1]) for r, votes in cast.items() for i in votes)
    assert sum(verdict.tags.values()) == tagged
