"""A passed gate's result, reused. A gate run on the same bytes under the same contract, the same
adaptflow code and the same Great Expectations gives the same result, so a run whose data and
settings did not change copies the earlier run's evidence (summary, GE's results, Data Docs) into
its own run instead of computing it again, as DVC skips a stage whose inputs did not change.
A rerun of the demo's data then never imports Great Expectations (2.6 s of CPU) nor runs the two
gates (0.6 + 1.6 s with the token count; AMX Xeon). `ops.reuse_passed_gates: false` checks every
time. Only a gate that passed is reused: a failure is computed again, so its message is fresh.

The key is a sha256 of the gate's inputs: the files' DVC md5s, the contract's settings, the
base's fingerprint (the split gate counts tokens), `code.version` (tasks/, flows/, dvc.yaml) and
GE's version. The parent run that passed carries it as the tag `validation.<gate>.key`; a run
that reused one names it in `validation.<gate>.reused_from`."""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from tasks.data.contract import ValidationReport
from tasks.tracking import code_version


def key_tag(gate: str) -> str:
    return f"validation.{gate}.key"


def reused_tag(gate: str) -> str:
    return f"validation.{gate}.reused_from"


def gate_key(gate: str, root: Path, inputs: dict) -> str:
    """One id for everything the gate's result depends on (`inputs`: JSON-able, dataclasses as dicts)."""
    from importlib.metadata import version

    blob = json.dumps({"gate": gate, "inputs": inputs, "code": code_version(root),
                       "great_expectations": version("great_expectations")}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def passed_earlier(parent_run_id: str, gate: str, key: str) -> str | None:
    """The latest run of this experiment (not deleted) whose gate passed with this key, if any."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([experiment_id], f"tags.`{key_tag(gate)}` = '{key}'",
                              order_by=["attributes.start_time DESC"], max_results=5)
    return next((r.info.run_id for r in runs if r.info.run_id != parent_run_id), None)


def reuse(earlier_run_id: str, parent_run_id: str, gate: str) -> ValidationReport | None:
    """The earlier run's passed report, its validation/<gate>/ artifacts copied to this run; None
    when they cannot be read (removed by hand, an older run): the gate then runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(earlier_run_id, f"validation/{gate}", tmp))
            summary = json.loads((local / "summary.json").read_text())
            results = json.loads((local / "great_expectations_results.json").read_text())
        except Exception:   # noqa: BLE001 -- evidence gone or unreadable: the gate runs instead
            return None
        if not summary.get("success") or summary.get("gate") != gate:
            return None
        client.log_artifacts(parent_run_id, str(local), f"validation/{gate}")
    return ValidationReport(gate, True, int(summary["evaluated_expectations"]), [], results,
                            list(summary.get("labels", [])), bool(summary.get("labels_inferred")),
                            None, list(summary.get("warnings", [])))
