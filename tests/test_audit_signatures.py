"""Issue 27, findings 4 and 11 (audit): who wrote an audit entry, and how big one may be. Against
a real `mlflow server --app-name basic-auth` on 127.0.0.1: an account with no permission on the
model (creating registered models needs none) forges the next audit claim; it is never applied
and `history` flags it. Entries are signed with ADAPTFLOW_AUDIT_KEY (conftest sets a test key)."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import audited_model_server, env_for_subprocess, sign_in

from tasks.registry.audit import AUDIT_KEY_ENV, claim_name, digest, entry_limit, read_claims
from tasks.registry.governance import (MAX_REASON_CHARS, AuditEntry, GovernanceError, bounded, history, promote,
                                       written)

MODEL = "signed-model"
ADMIN = ("admin", "admin-secret-1234")
USERS = {"reviewer-ana": "reviewer-ana-pw-1234", "mallory": "mallory-pw-123456"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """reviewer-ana has EDIT on MODEL (four versions); mallory has no grant (default READ)."""
    with audited_model_server(tmp_path_factory.mktemp("audit"), ADMIN, MODEL, USERS, ["reviewer-ana"]) as url:
        yield url


def champion(client) -> str:
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def test_a_forged_claim_is_never_applied_and_history_flags_it(server):
    """Old: mallory's well-formed claim (v4 "by reviewer-ana") was waited for, then applied by
    ana's next promote (v4 became @champion, tagged as moved by reviewer-ana) and listed in the
    history as a genuine entry."""
    url = server
    ana = sign_in(url, "reviewer-ana", USERS["reviewer-ana"])
    first = promote(ana, url, MODEL, None, "first champion", version="1")
    last = read_claims(ana, MODEL)[-1]
    forged = asdict(AuditEntry(seq=last.seq + 1, action="promote", version="4", previous="1", reviewer="reviewer-ana",
                               reason="looks fine", at=first.at, identity_source="authenticated by the MLflow server",
                               prev_hash=digest(last.raw), signature="0" * 64))
    mallory = sign_in(url, "mallory", USERS["mallory"])
    with pytest.raises(Exception, match="PERMISSION_DENIED|Permission"):
        mallory.set_registered_model_alias(MODEL, "champion", "4")   # the alias itself is protected
    mallory.create_registered_model(claim_name(MODEL, last.seq + 1), tags={"adaptflow.audit.entry":
                                                                           json.dumps(forged, sort_keys=True)})
    ana = sign_in(url, "reviewer-ana", USERS["reviewer-ana"])
    nxt = promote(ana, url, MODEL, None, "second champion", version="2")
    assert nxt.seq == last.seq + 2 and nxt.previous == "1" and champion(ana) == "2"
    assert "champion.audit_seq" not in ana.get_model_version(MODEL, "4").tags   # v4 was never @champion
    found = history(ana, MODEL)
    assert [e.version for e in found.entries][-2:] == ["1", "2"] and all(e.version != "4" for e in found.entries)
    assert any(f"entry {last.seq + 1} is not signed with the audit key" in p for p in found.problems), found.problems
    assert not [p for p in found.problems if "does not chain" in p]   # the chain skips the forged claim
    cli = subprocess.run([str(Path(sys.executable).parent / "adaptflow"), "history", MODEL, "--params", "none.yaml"],
                         env=env_for_subprocess(MLFLOW_TRACKING_URI=url), capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "not signed with the audit key" in cli.stderr and "second champion" in cli.stdout


def test_a_claim_signed_with_another_key_is_forged_too(server, monkeypatch):
    url = server
    ana = sign_in(url, "reviewer-ana", USERS["reviewer-ana"])
    monkeypatch.setenv(AUDIT_KEY_ENV, "a-key-the-team-does-not-hold-0123456789")
    entry = promote(ana, url, MODEL, None, "under another key", version="3")
    monkeypatch.undo()
    found = history(ana, MODEL)
    assert all(e.reason != "under another key" for e in found.entries)
    assert any(f"entry {entry.seq} is not signed with the audit key" in p for p in found.problems)


def test_without_the_key_nothing_is_written_on_a_server(server, monkeypatch):
    """Old: there was no key; the move was written unsigned."""
    url = server
    ana = sign_in(url, "reviewer-ana", USERS["reviewer-ana"])
    before, current = len(read_claims(ana, MODEL)), champion(ana)
    monkeypatch.delenv(AUDIT_KEY_ENV)
    with pytest.raises(GovernanceError, match=f"{AUDIT_KEY_ENV} is not set: .* nothing changed"):
        promote(ana, url, MODEL, None, "unsigned", version="4" if current != "4" else "1")
    assert len(read_claims(ana, MODEL)) == before and champion(ana) == current
    assert any("not set here" in p for p in history(ana, MODEL).problems)
    monkeypatch.setenv(AUDIT_KEY_ENV, "short")
    with pytest.raises(GovernanceError, match="at least 32"):
        promote(ana, url, MODEL, None, "weak key", version="4" if current != "4" else "1")


def test_an_overlong_reason_is_refused_before_anything_is_written(server):
    """Old: any reason up to the registry's limit was written, and an entry over the tag column's
    5,000 characters fails on PostgreSQL after the claim is half applied."""
    url = server
    ana = sign_in(url, "reviewer-ana", USERS["reviewer-ana"])
    before, current = len(read_claims(ana, MODEL)), champion(ana)
    with pytest.raises(GovernanceError, match=f"--reason is {MAX_REASON_CHARS + 1} characters; at most {MAX_REASON_CHARS}"):
        promote(ana, url, MODEL, None, "x" * (MAX_REASON_CHARS + 1), version="4" if current != "4" else "1")
    assert len(read_claims(ana, MODEL)) == before and champion(ana) == current


def test_an_entry_is_bounded_to_the_registry_tag_column():
    """MLflow 3.17 stores registered-model tags in String(5000). Three hundred labels give 600
    per-label deltas: those go first, the catalogue's metrics stay, and the entry fits."""
    assert entry_limit() == 5000
    deltas = {f"test_precision_label-{i:03d}": 0.01 for i in range(300)}
    deltas |= {f"test_recall_label-{i:03d}": 0.01 for i in range(300)} | {"test_accuracy": 0.02, "val_macro_f1": 0.03}
    entry = AuditEntry(seq=7, action="promote", version="9", previous="8", reviewer="reviewer-ana",
                       reason="r" * MAX_REASON_CHARS, at="2026-12-05T00:00:00+00:00", deltas=deltas)
    kept = bounded(entry, entry_limit())
    raw = written(kept, MODEL, b"k" * 32)
    assert len(raw) <= 5000 and {"test_accuracy", "val_macro_f1"} <= set(kept.deltas)
    assert bounded(kept, entry_limit()) == kept   # one that fits is unchanged
    with pytest.raises(GovernanceError, match="over the registry's 5000"):
        bounded(AuditEntry(seq=1, action="promote", version="1", previous=None, reviewer="r", at="t",
                           reason="\u00e9" * MAX_REASON_CHARS), entry_limit())   # 6 characters each as JSON
