"""The audit history against a real `mlflow server --app-name basic-auth` on 127.0.0.1:
two reviewers, each a process with its own account, promote and roll back at once in a loop; no history entry is lost, @champion always equals the last applied entry, and a
forged or edited audit tag, or an unreadable entry, is reported by `history`, which keeps going."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import audited_model_server, env_for_subprocess, sign_in
from mlflow.tracking import MlflowClient

from tasks.registry.audit import claim_name, create_claim, read_claims, tag_key
from tasks.registry.governance import champion_stack, history, promote

MODEL = "audited-model"
ADMIN = ("admin", "admin-secret-1234")
REVIEWERS = {"reviewer-ana": "reviewer-ana-pw-1234", "reviewer-ben": "reviewer-ben-pw-1234"}
ROUNDS = 25   # per reviewer
WORKER = Path(__file__).with_name("audit_reviewer.py")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two reviewers with EDIT on MODEL, which has four versions and no champion yet."""
    with audited_model_server(tmp_path_factory.mktemp("audit"), ADMIN, MODEL, REVIEWERS, list(REVIEWERS)) as url:
        yield url


def watch(url: str, stop: threading.Event, counts: dict[str, int]) -> None:
    """Sample (alias, history, alias, history length) while the reviewers work; a sample counts
    only when nothing moved between its reads: then @champion must be the last entry's version."""
    client = MlflowClient(url, url)
    while not stop.wait(0.2):   # the server has one worker: leave it to the reviewers most of the time
        before = client.get_registered_model(MODEL)
        claims = read_claims(client, MODEL)
        after = client.get_registered_model(MODEL)
        if (not claims or before.aliases.get("champion") != after.aliases.get("champion")
                or tag_key(claims[-1].seq) not in before.tags or len(read_claims(client, MODEL)) != len(claims)):
            counts["skipped"] += 1
            continue
        counts["samples"] += 1
        counts["mismatches"] += str(before.aliases.get("champion")) != json.loads(claims[-1].raw)["version"]


def test_two_reviewers_at_once_lose_no_entry_and_the_alias_follows_the_history(server):
    url = server
    sign_in(url, *ADMIN)   # the watcher reads as the admin
    counts = {"samples": 0, "skipped": 0, "mismatches": 0}
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(url, stop, counts), daemon=True)
    watcher.start()
    procs = []
    for seed, (user, password) in enumerate(REVIEWERS.items()):
        env = env_for_subprocess(MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
        procs.append(subprocess.Popen([sys.executable, str(WORKER), MODEL, str(ROUNDS), str(seed)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    stop.set()
    watcher.join(timeout=60)
    found = history(MlflowClient(url, url), MODEL)
    moves = sorted(s for r in results for s in r["moves"])
    print(f"\n{len(moves)} moves ({[len(r['moves']) for r in results]} per reviewer, "
          f"{sum(r['refused'] for r in results)} refused as no-ops), {len(found.entries)} history entries, "
          f"lost {len(moves) - len(found.entries)}; watcher: {counts}")
    assert moves == list(range(1, len(moves) + 1)) and len(found.entries) == len(moves)   # none lost or doubled
    assert found.problems == []
    assert {e.reviewer for e in found.entries} == set(REVIEWERS)
    for before, after in zip(found.entries, found.entries[1:]):
        assert after.previous == before.version
    assert found.champion == found.entries[-1].version == champion_stack(found.entries)[-1]
    assert counts["mismatches"] == 0 and counts["samples"] > 0


def test_forged_edited_and_unreadable_entries_are_reported_and_history_goes_on(server):
    url = server
    client = sign_in(url, "reviewer-ana", REVIEWERS["reviewer-ana"])
    if not history(client, MODEL).entries:
        promote(client, url, MODEL, None, "first", version="1")
    entries = history(client, MODEL).entries
    edited = json.loads(client.get_registered_model(MODEL).tags[tag_key(1)])
    edited["reviewer"] = "someone-else"
    client.set_registered_model_tag(MODEL, tag_key(1), json.dumps(edited, sort_keys=True))   # edit entry 1's tag
    client.set_registered_model_tag(MODEL, tag_key(999999), json.dumps({**edited, "seq": 999999}))   # forge one
    junk = len(read_claims(client, MODEL)) + 1                 # an unreadable entry, applied
    assert create_claim(client, MODEL, junk, "{not json")
    client.set_registered_model_tag(MODEL, tag_key(junk), "{not json")
    found = history(client, MODEL)
    assert found.entries == entries
    text = " | ".join(found.problems)
    assert "tag audit.000001 differs from audit entry 1" in text and "tag audit.999999 has no audit entry" in text
    assert f"entry {junk} is not readable JSON" in text
    current = found.champion
    nxt = promote(client, url, MODEL, None, "after the bad entry", version="2" if current != "2" else "3")
    again = history(client, MODEL)
    assert again.entries[-1] == nxt and again.champion == nxt.version   # the chain goes on past it
    assert not [p for p in again.problems if "does not chain" in p]
    cli = subprocess.run([str(Path(sys.executable).parent / "adaptflow"), "history", MODEL, "--params", "none.yaml"],
                         env=env_for_subprocess(MLFLOW_TRACKING_URI=url), capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "forged" in cli.stderr and "after the bad entry" in cli.stdout
    assert claim_name(MODEL, 1) in [m.name for m in client.search_registered_models()]
