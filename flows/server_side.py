"""What a Prefect form may not choose: the pipeline's MLflow account and where on the worker a
run may read files. Anyone who can reach the Prefect API fills in the forms, so these come from
the process that runs the flows, never from a field or from a file a field names.

`adaptflow deploy` pins them in its own environment, which its flow runs inherit, from the params
file it was started with (`pin`): the project folder, and `project.pipeline_account` ("" when
that file declares none). A worker started otherwise (a work pool's) has them in its
environment (infra/README.md: the `adaptflow-env` ConfigMap, the compose worker). A reviewer
flow without them refuses; a run from a deployment without them refuses.

Paths in a form (`params_file`, `data.path`, `base`) must resolve, symlinks followed, inside
the project folder or a folder of ADAPTFLOW_ALLOWED_PATHS (os.pathsep-separated, set by the
operator). A run started from the command line (`adaptflow run`) names its user's own files and
is not confined, unless its environment pins a project folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from tasks.errors import UserError

PROJECT_ROOT_ENV = "ADAPTFLOW_PROJECT_ROOT"
PIPELINE_ACCOUNT_ENV = "ADAPTFLOW_PIPELINE_ACCOUNT"   # "": the deployed params declare no pipeline account
# review.require_human of the deployed params as JSON ("null": promote needs no human verdict)
REVIEW_GATE_ENV = "ADAPTFLOW_REVIEW_REQUIRE_HUMAN"
ALLOWED_PATHS_ENV = "ADAPTFLOW_ALLOWED_PATHS"
HOW = ("`adaptflow deploy` sets it for the runs it serves; a work pool's worker needs it in its environment "
       "(infra/README.md, \"Deployments and scheduled retraining\")")


class ServerSideError(ValueError, UserError):
    """A form asked for something only the serving process decides; nothing ran."""


def pin(params_file: str | Path, profile: str | None = None) -> None:
    """Fix the project folder and the pipeline account for the flow runs this process starts,
    from the params file it was started with. A missing or unreadable file is a SettingsError."""
    import json
    from dataclasses import asdict

    from tasks.config import read_pipeline_account, read_review_settings

    params = Path(params_file).resolve()
    account = read_pipeline_account(params, profile)
    gate = read_review_settings(params, profile).require_human
    os.environ[PROJECT_ROOT_ENV] = str(params.parent)
    os.environ[PIPELINE_ACCOUNT_ENV] = account or ""
    os.environ[REVIEW_GATE_ENV] = json.dumps(asdict(gate) if gate else None)


def review_requirement(params_file: str):
    """review.require_human as the serving process pinned it; without a pin (a worker started
    otherwise), the confined params file's."""
    import json

    from tasks.config import HumanReviewRequirement, read_review_settings

    if REVIEW_GATE_ENV in os.environ:
        raw = json.loads(os.environ[REVIEW_GATE_ENV] or "null")
        return HumanReviewRequirement(**raw) if raw else None
    return read_review_settings(params_file).require_human


def pipeline_account() -> str | None:
    """The pipeline's MLflow account as the serving process knows it (None: it declares none)."""
    if PIPELINE_ACCOUNT_ENV not in os.environ:
        raise ServerSideError(f"{PIPELINE_ACCOUNT_ENV} is not set in the process running this flow, so the "
                              f"pipeline's account cannot be refused; nothing changed. {HOW}; set it to the "
                              "pipeline's MLflow account, or to an empty value where there is none (a local store)")
    return os.environ[PIPELINE_ACCOUNT_ENV].strip() or None


def from_deployment() -> bool:
    """True inside a flow run created from a deployment (a form, the API, a schedule)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


def confining_root() -> Path | None:
    """The project folder a form's paths must stay in; None for a command-line run with no pin."""
    pinned = os.environ.get(PROJECT_ROOT_ENV, "").strip()
    if pinned:
        return Path(pinned).resolve()
    if from_deployment():
        raise ServerSideError(f"{PROJECT_ROOT_ENV} is not set in the process running this deployment, so the "
                              f"paths in its form cannot be checked; nothing ran. {HOW}")
    return None


def allowed_roots(root: Path) -> list[Path]:
    extra = [Path(p).expanduser().resolve() for p in os.environ.get(ALLOWED_PATHS_ENV, "").split(os.pathsep)
             if p.strip()]
    return [root, *extra]


def inside(path: Path, roots: list[Path]) -> bool:
    """Whether `path` (already resolved) is one of `roots` or under one."""
    return any(path == r or path.is_relative_to(r) for r in roots)


def confine(value: str, field: str, root: Path) -> str:
    """`value` resolved from the project folder (symlinks followed), refused outside the allowed folders."""
    path = Path(value).expanduser()
    resolved = (path if path.is_absolute() else root / path).resolve()
    roots = allowed_roots(root)
    if not inside(resolved, roots):
        raise ServerSideError(f"{field}={value!r} resolves to {resolved}, outside the project folder {root}"
                              + (f" and {ALLOWED_PATHS_ENV} ({', '.join(map(str, roots[1:]))})" if roots[1:] else "")
                              + f"; a form may only name files there. Put the file in the project, or have the "
                              f"operator add its folder to {ALLOWED_PATHS_ENV} in the worker's environment")
    return str(resolved)


def confine_params(params_file: str) -> str:
    """The form's params file, checked when runs are confined (unchanged otherwise)."""
    root = confining_root()
    return params_file if root is None else confine(params_file, "params_file", root)


def confine_run(run):
    """A SpecializeInput with its paths checked and made absolute when runs are confined."""
    from tasks.models.packaged import PACKAGED

    root = confining_root()
    if root is None:
        return run
    changes = {"params_file": confine(run.params_file, "params_file", root)}
    if run.base and run.base not in PACKAGED:   # a packaged name is not a path
        changes["base"] = confine(run.base, "base", root)
    if run.data is not None:
        changes["data"] = run.data.model_copy(update={"path": confine(run.data.path, "data.path", root)})
    return run.model_copy(update=changes)
