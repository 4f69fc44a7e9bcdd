"""`adaptflow lineage MODEL@ALIAS`: from a registered version back to the data it came from.

Everything is read from what the run recorded (version tags, the parent run's tags and its
validation artifact); nothing is recomputed."""
from __future__ import annotations

import json

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


class LineageError(ValueError):
    pass


def resolve(client: MlflowClient, ref: str):
    """MODEL@ALIAS or MODEL/VERSION -> the model version."""
    try:
        if "@" in ref:
            name, alias = ref.rsplit("@", 1)
            return client.get_model_version_by_alias(name, alias)
        if "/" in ref:
            name, version = ref.rsplit("/", 1)
            return client.get_model_version(name, version)
    except MlflowException as exc:
        raise LineageError(f"{ref}: no such registered version ({exc.message.splitlines()[0]})") from exc
    raise LineageError(f"{ref}: write MODEL@ALIAS (e.g. my-model@champion) or MODEL/VERSION")


def lineage(client: MlflowClient, ref: str) -> list[tuple[str, list[tuple[str, str]]]]:
    mv = resolve(client, ref)
    t = mv.tags
    parent_id = t.get("parent_run_id", "")
    validation = {}
    if parent_id:
        try:
            path = client.download_artifacts(parent_id, "validation/summary.json")
            validation = json.loads(open(path).read())
        except (MlflowException, OSError):
            validation = {}
    splits = [(f"{s} md5", t.get(f"data.{s}_md5", "?")) for s in ("train", "validation", "test")]
    feedback = {}
    if parent_id and t.get("data.feedback_md5"):
        try:
            feedback = json.loads(open(client.download_artifacts(parent_id, "validation/feedback.json")).read())
        except (MlflowException, OSError):
            feedback = {}
    return [
        ("registered version", [("model", f"{mv.name} v{mv.version}"), ("aliases", ", ".join(mv.aliases) or "-"),
                                ("strategy", t.get("strategy", "?")), ("saves", t.get("saves", "?")),
                                ("base", f"{t.get('base.name', '?')} ({t.get('base.registered', '?')}, "
                                         f"fingerprint {t.get('base.fingerprint', '?')[:12]})")]),
        ("run", [("strategy run", t.get("run_id", "?")), ("parent run", parent_id or "?"),
                 ("git commit", t.get("git.commit", "?") + (" (dirty tree)" if t.get("git.dirty") == "true" else "")),
                 ("params hash", t.get("params.hash", "?")), ("profile", t.get("profile", "?"))]),
        ("data version", [("version", t.get("data.version", "?")), *splits]),
        ("raw source", [("source", t.get("data.source", "?")),
                        ("raw md5", t.get("data.raw_md5", "?")), ("raw path", t.get("data.raw_path", "?")),
                        ("DVC remote", t.get("data.remote", "?"))]),
        *([("user feedback", [("table md5", t["data.feedback_md5"]),
                              ("rows", str(feedback.get("counts", {}).get("rows", "?"))),
                              ("quarantined", str(feedback.get("counts", {}).get("quarantined", "?"))),
                              ("from versions", ", ".join(feedback.get("versions", [])) or "?")])]
          if t.get("data.feedback_md5") else []),
        ("validation", [("result", t.get("validation", "?")),
                        ("expectations", str(validation.get("evaluated_expectations", "?"))),
                        ("failures", str(len(validation.get("failures", [])) if validation else "?"))]),
    ]


def format_lineage(chain: list[tuple[str, list[tuple[str, str]]]]) -> str:
    lines = []
    for i, (section, rows) in enumerate(chain):
        lines.append(("   " * min(i, 1)) + ("└─ " if i else "") + section)
        lines += [f"      {k:<14} {v}" for k, v in rows]
    return "\n".join(lines)
