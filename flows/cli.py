"""adaptflow: run every way to specialize a transformer side by side, and register the best.

  adaptflow init [DIR]
  adaptflow run [--params FILE] [--profile NAME] [--strategies a,b|all] [--base MODEL_FOLDER] [--tune [--tune-trials N]]
                [--data FILE [--text-col C] [--label-col L] [--split-col S] [--group-col G] [--labels a,b]
                 [--validation-size V] [--test-size T] [--drop-empty-texts] [--drop-duplicate-texts]]
                [--model-name NAME]
  adaptflow strategies
  adaptflow promote MODEL (--version N | --from challenger) --reason TEXT [--reviewer NAME] [--profile NAME]
  adaptflow rollback MODEL --reason TEXT [--reviewer NAME] [--profile NAME]
  adaptflow history MODEL
  adaptflow canary start MODEL --version N [--share 0.1] --reason TEXT | stop MODEL --reason TEXT | check MODEL
  adaptflow review create MODEL [--a champion] [--b challenger] [--n 60] [--reviewers 3] [--overlap 20]
                 | serve SESSION [--port P] | close SESSION
  adaptflow feedback fold [MODEL] [--since-hours H] [--params FILE] [--profile NAME] | drift [MODEL]
  adaptflow lineage MODEL@ALIAS
  adaptflow report RUN_ID --out FILE.html
  adaptflow cost RUN_ID [--params FILE] [--profile NAME] [--set cost.KEY=VALUE ...]
  adaptflow serve --models MODEL_A,MODEL_B [--port P]
  adaptflow deploy [--params FILE] [--profile NAME] [--only specialize,retrain,promote,rollback,canary-check,...]
                   [--work-pool POOL --image IMAGE]
  adaptflow ui [--prefect-port P] [--mlflow-port Q]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.options import Spelling, add_options, build, flags, values
from tasks.errors import UserError


def _params_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--params", default="params.yaml", help=help)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptflow", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings live in params.yaml (defaults, one section per strategy, profiles). "
               "MLFLOW_TRACKING_URI overrides the local store under mlflow/.")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="set up a project folder of your own (params.yaml, dvc.yaml, git, DVC)",
                          description="Write params.yaml (the shipped defaults with their comments and "
                                      "profiles; runs named after your data), dvc.yaml (stages that run the "
                                      "installed adaptflow) and a .gitignore into DIR, then `git init` and "
                                      "`dvc init` where missing. Files already there are kept.")
    init.add_argument("dir", nargs="?", default=".", help="the project folder (default: the current one; "
                                                          "created when missing)")
    _run_command(sub)
    sub.add_parser("strategies", help="list the registered strategies with their parameters and defaults")
    _registry_commands(sub)
    _canary_commands(sub)
    _review_commands(sub)
    _feedback_commands(sub)
    _serve_command(sub)
    _ops_commands(sub)
    return parser


# Where `adaptflow run` spells the form's fields (flows/inputs.py) its own way; the rest is generated.
RUN_SPELLING = {"params_file": Spelling(("--params",), metavar="PARAMS"), "base": Spelling(metavar="PATH"),
                "tune_trials": Spelling(metavar="N")}
DATA_SPELLING = {"path": Spelling(("--data",), metavar="FILE", default=None),   # optional here: no file, no group
                 "text_col": Spelling(("--text-col", "--input-col"))}
# The reviewer commands: the model is positional; a version or an alias, one of them, none preselected.
REVIEW_SPELLING = {"model": Spelling(("model",)), "params_file": Spelling(("--params",), metavar="PARAMS"),
                   "from_alias": Spelling(("--from",), default=None)}


def _run_command(sub) -> None:
    from flows.inputs import DataInput, SpecializeInput

    run = sub.add_parser("run", help="run the specialize flow: data, validation, strategies, registry",
                         description="Version the data with DVC, validate it with Great Expectations, "
                                     "train and evaluate each strategy, log to MLflow, and register "
                                     "the best candidate (moving @challenger when it earns it).")
    names = tuple(SpecializeInput.model_fields)
    at = names.index("data")   # the form's data: the group of DataInput's fields, in its place
    add_options(run, SpecializeInput, only=names[:at], spelling=RUN_SPELLING)
    own = run.add_argument_group(
        "your own data", "A CSV, TSV, JSONL or Parquet file instead of data.source in params; the dataset "
                         "keys under data: then start from their defaults, the cleaning rules off unless a "
                         "--drop-* flag asks for one, and the run registers under the file's name unless "
                         "--model-name says otherwise (docs/your-data.md).")
    add_options(own, DataInput, spelling=DATA_SPELLING)
    add_options(run, SpecializeInput, only=names[at + 1:], spelling=RUN_SPELLING)


def _registry_commands(sub) -> None:
    from flows.inputs import PromoteInput, RollbackInput

    store = argparse.ArgumentParser(add_help=False)
    add_options(store, RollbackInput, only=("model", "params_file"), spelling=REVIEW_SPELLING)
    store.add_argument("--profile", help="profile from the params file's `profiles:` (its project.pipeline_account "
                                         "is the account promote and rollback refuse)")
    reviewer = argparse.ArgumentParser(add_help=False)
    add_options(reviewer, RollbackInput, only=("reviewer", "reason"), spelling=REVIEW_SPELLING)
    promote = sub.add_parser("promote", parents=[store, reviewer], help="move @champion to a version (reviewers)",
                             description="Move @champion to a version and append who, when, why, the "
                                         "previous champion and the metric deltas to the audit history.")
    add_options(promote.add_mutually_exclusive_group(required=True), PromoteInput, only=("version", "from_alias"),
                spelling=REVIEW_SPELLING)
    sub.add_parser("rollback", parents=[store, reviewer], help="move @champion back to the previous champion",
                   description="Move @champion back one step in the champion history; repeated, it walks "
                               "further back. With no earlier champion it says so and changes nothing.")
    sub.add_parser("history", parents=[store], help="print the audit history of @champion moves and check it",
                   description="Print every @champion move; warn (exit 1) when the hash chain is broken, an "
                               "entry is unreadable or missing, an audit tag was forged or edited, or "
                               "@champion was moved outside adaptflow.")
    lineage = sub.add_parser("lineage", help="registered version -> run -> data version -> raw source -> validation",
                             description="Print where a registered version came from, as recorded by its run.")
    lineage.add_argument("ref", help="MODEL@ALIAS (e.g. rotten-tomatoes-sentiment@champion) or MODEL/VERSION")
    _params_option(lineage, "params file; its folder holds the local MLflow store")
    report = sub.add_parser("report", help="write the HTML comparison report of a run",
                            description="Rebuild the self-contained HTML report of a specialize run from MLflow.")
    report.add_argument("run_id", help="the MLflow parent run id (printed at the end of `adaptflow run`)")
    report.add_argument("--out", required=True, help="HTML file to write")
    _params_option(report, "params file (store location, budgets)")
    cost = sub.add_parser("cost", help="print what each strategy of a run costs to own, and its break-even points",
                          description="From a finished run's logged figures (nothing is re-measured): per strategy "
                                      "the one-time, monthly and horizon cost, instances, memory per instance and "
                                      "whether it can meet the deployment, then where the cheapest strategy changes "
                                      "along traffic and tenants, for the params' `cost:` settings (docs/cost.md).")
    cost.add_argument("run_id", help="the MLflow parent run id (printed at the end of `adaptflow run`)")
    _params_option(cost, "params file: its `cost:` section and the MLflow store in its folder")
    cost.add_argument("--profile", help="profile from the params file's `profiles:` (its cost: settings apply)")
    cost.add_argument("--set", action="append", default=[], metavar="cost.KEY=VALUE", dest="settings",
                      help="override one cost setting, e.g. --set cost.tenants=32 --set cost.requests_per_day=1e6 "
                           "(repeatable; values read as YAML)")


def _canary_commands(sub) -> None:
    from flows.inputs import CanaryStartInput, CanaryStopInput

    canary = sub.add_parser("canary", help="release a version to a share of the traffic, stop it, or check it",
                            description="A canary answers a share of the requests that name no alias or version "
                                        "(sticky by the client's key); `adaptflow serve` replicas follow it within one "
                                        "poll. `check` compares it with @champion on the live signals in the outcome "
                                        "store with a sequential test, and rolls it back when it does worse "
                                        "(docs/releasing.md). start and stop are audited like promote.")
    actions = canary.add_subparsers(dest="canary_action", required=True)
    spelling = {**REVIEW_SPELLING, "version": Spelling(("--version",)), "share": Spelling(metavar="FRACTION")}
    start = actions.add_parser("start", help="start a canary (reviewers)",
                               description="Route --share of the unpinned traffic to --version; audited.")
    add_options(start, CanaryStartInput, spelling=spelling)
    start.add_argument("--profile", help="profile from the params file's `profiles:`")
    stop = actions.add_parser("stop", help="stop the running canary (reviewers)",
                              description="Send all unpinned traffic back to @champion; audited.")
    add_options(stop, CanaryStopInput, spelling=spelling)
    stop.add_argument("--profile", help="profile from the params file's `profiles:`")
    check = actions.add_parser("check", help="judge the running canary once (what the canary-check deployment runs)",
                               description="Compare the canary with @champion over the outcomes since it started; "
                                           "roll back, hold, or mark it ready for review; write the evidence page "
                                           "under reports/canary/.")
    check.add_argument("model", help="registered model name")
    _params_option(check, "params file (canary:, outcomes:); its folder holds the local MLflow store")
    check.add_argument("--profile", help="profile from the params file's `profiles:`")


def _canary(args) -> int:
    from tasks.config import load_settings, read_pipeline_account
    from tasks.registry import canary

    params = args.params_file if args.canary_action != "check" else args.params
    if args.canary_action == "check":
        settings = load_settings(params, args.profile)   # a wrong params file is refused before a store opens
        client, uri = _registry(params)
        from tasks.release.steps import check_models

        result = check_models(client, uri, settings, [args.model])[0]
        print(result.line() + (f"\npage: {result.page}" if result.page else ""))
        return 0
    # As for promote: a params file that is missing or unreadable is a refusal, before any store opens.
    pipeline = read_pipeline_account(params, args.profile)
    client, uri = _registry(params)
    if args.canary_action == "start":
        entry = canary.start(client, uri, args.model, args.version, args.share, args.reviewer, args.reason,
                             pipeline_account=pipeline)
    else:
        entry = canary.stop(client, uri, args.model, args.reviewer, args.reason, pipeline_account=pipeline)
    print(entry.line())
    return 0


def _review_commands(sub) -> None:
    from flows.inputs import ReviewCreateInput

    review = sub.add_parser("review", help="blinded side-by-side human review of two versions (docs/reviewing.md)",
                            description="Reviewers judge two versions' answers to the same test inputs without "
                                        "knowing which version wrote which; the verdict (win rate with its 95 % "
                                        "interval, agreement, reason tags) is kept on the session's MLflow run and "
                                        "on both versions, and review.require_human makes promote require it.")
    actions = review.add_subparsers(dest="review_action", required=True)
    create = actions.add_parser("create", help="sample test inputs, have both versions answer, deal reviewer seats",
                                description="Sample --n inputs of the test split both versions were tested on "
                                            "(stratified), have both versions answer, put each version on a random "
                                            "side per item, deal the items to --reviewers seats (--overlap of them "
                                            "to every seat) and store the session as an MLflow run (experiment "
                                            "review.experiment). --from traffic is refused: the outcome store keeps "
                                            "figures per request, never its text.")
    add_options(create, ReviewCreateInput, spelling={"model": Spelling(("model",)), "source": Spelling(("--from",)),
                                                     "params_file": Spelling(("--params",), metavar="PARAMS")})
    serve = actions.add_parser("serve", help="the review page on 127.0.0.1 (reviewers sign in and vote)",
                               description="Serve the session's review page on 127.0.0.1 until Ctrl-C. Reviewers sign "
                                           "in as for promote (a name on a local store; their MLflow account on a "
                                           "server; never the pipeline's), see the input and two anonymous answers "
                                           "A and B, and vote (keys a, b, t, x; 1-4 toggle reason tags). Votes go "
                                           "to the outcome store's database (outcomes.store).")
    serve.add_argument("session", help="the session id `adaptflow review create` printed (its MLflow run id)")
    serve.add_argument("--port", type=int, help="port (default: review.port, 8300)")
    close = actions.add_parser("close", help="compute the verdict and record it on the session and both versions",
                               description="Compute the verdict from the votes so far: win rate of b over a (ties "
                                           "and both-bad count half) with a 95 % Wilson interval, Cohen's or "
                                           "Fleiss' kappa on the shared items, Bradley-Terry strengths, reason "
                                           "tags; log it on the session run (metrics, review/verdict.html) and "
                                           "as review.* tags on both versions, which promote's gate reads.")
    close.add_argument("session", help="the session id")
    for action in (serve, close):
        _params_option(action, "params file (review:, outcomes:); its folder holds the local MLflow store")
        action.add_argument("--profile", help="profile from the params file's `profiles:`")


def _review(args) -> int:
    from tasks.config import load_settings, read_pipeline_account
    from tasks.review import steps

    params = args.params_file if args.review_action == "create" else args.params
    settings = load_settings(params, args.profile)   # a wrong params file is refused before a store opens
    client, uri = _registry(params)
    if args.review_action == "create":
        import time

        started = time.perf_counter()
        session = steps.create(client, settings, model=args.model, a=args.a, b=args.b, n=args.n, source=args.source,
                               reviewers=args.reviewers, overlap=args.overlap, seed=args.seed)
        print(f"review session {session.id}: {len(session.items)} items, {session.model} v{session.a} (a) vs "
              f"v{session.b} (b), {session.reviewers} reviewer seat(s), built in {time.perf_counter() - started:.1f} s"
              f"\nreviewers judge at: adaptflow review serve {session.id}")
        return 0
    if args.review_action == "close":
        print(steps.summary(steps.close(client, settings, args.session)))
        return 0
    from tasks.review.page import create_app, serve
    from tasks.review.session import load_session

    session = load_session(client, args.session)
    port = args.port or settings.review.port
    print(f"review page: http://127.0.0.1:{port}/ ({len(session.items)} items, {session.reviewers} seat(s)); "
          "Ctrl-C stops it")
    serve(create_app(session, steps.vote_store(settings), uri, read_pipeline_account(params, args.profile)),
          "127.0.0.1", port)
    return 0


def _feedback_commands(sub) -> None:
    feedback = sub.add_parser("feedback", help="turn accepted user feedback into the next data version",
                              description="POST /feedback stores corrections of served answers in the outcome "
                                          "store; `fold` turns them into the feedback table the data stage merges "
                                          "into train and validation (the test split stays fixed), tracked by DVC "
                                          "(docs/feedback.md).")
    actions = feedback.add_subparsers(dest="feedback_action", required=True)
    fold = actions.add_parser("fold", help="fold stored feedback into the feedback table (what fold-feedback runs)",
                              description="Replay the poisoning rules, resolve conflicting feedback (the majority "
                                          "answer wins, ties are dropped), exclude inputs in the test split, "
                                          "quarantine rows the data contract refuses, write feedback.folder's "
                                          "table and `dvc add` it. The next retrain sees a changed data version.")
    fold.add_argument("model", nargs="?", help="registered model name (default: project.registered_model)")
    fold.add_argument("--since-hours", type=float, help="only feedback of the last this many hours (default: all)")
    _params_option(fold, "params file (feedback:, outcomes:, data:); its folder is the project root")
    fold.add_argument("--profile", help="profile from the params file's `profiles:`")
    drift = actions.add_parser("drift", help="check live inputs for drift and feedback quality once (what "
                                             "drift-check runs)",
                               description="Compare the latest drift.window_requests answered requests (their "
                                           "stored texts) with the validation split: MMD on MiniLM embeddings, "
                                           "text length (KS), predicted labels (chi-square); record the verdict "
                                           "in the outcome store; with drift.retrain, drift starts retrain. Then "
                                           "the champion's feedback quality (feedback.retrain_below_quality: "
                                           "quality surely under it starts retrain too).")
    drift.add_argument("model", nargs="?", help="registered model name (default: project.registered_model)")
    _params_option(drift, "params file (drift:, outcomes:, data:); its folder is the project root")
    drift.add_argument("--profile", help="profile from the params file's `profiles:`")


def _feedback(args) -> int:
    from flows.feedback import fold_feedback
    from flows.inputs import FoldFeedbackInput

    if args.feedback_action == "drift":
        from flows.drift import drift_check
        from flows.inputs import DriftCheckInput

        print("\n".join(drift_check(DriftCheckInput(models=[args.model] if args.model else None,
                                                     params_file=args.params, profile=args.profile))))
        return 0
    out = fold_feedback(FoldFeedbackInput(model=args.model, since_hours=args.since_hours, params_file=args.params,
                                          profile=args.profile))
    print(f"{out.table}: " + ", ".join(f"{k} {v}" for k, v in out.counts.items()))
    return 0


def _serve_command(sub) -> None:
    serve = sub.add_parser("serve", help="serve registered models over HTTP, following @champion",
                           description="Answer POST /predict (classifiers) and POST /generate (generating "
                                       "models) from each model's followed aliases (serving.aliases; "
                                       "@champion by default), one base model in memory for all adapters on it, "
                                       "switching when a reviewer promotes or rolls back. Every answer passes "
                                       "the output policy (`policy:`: blocked outputs name their rules, unsure "
                                       "classifications abstain). GET /health, /models, /metrics. Settings: the "
                                       "`serving:` and `policy:` sections of params.yaml.")
    serve.add_argument("--models", required=True, help="comma-separated registered model names")
    serve.add_argument("--host", help="address to listen on (default: serving.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: serving.port)")
    _params_option(serve, "params file; its folder holds the local MLflow store")


def _ops_commands(sub) -> None:
    deploy = sub.add_parser("deploy", help="register the Prefect deployments and serve them (PREFECT_API_URL)",
                            description="Register the deployments specialize, retrain (cron: ops.retrain_cron), "
                                        "promote, rollback, canary-start, canary-stop, canary-check (cron: "
                                        "canary.check_cron), review-create, fold-feedback and drift-check (cron: drift.check_cron) with "
                                        "the Prefect server in PREFECT_API_URL, then "
                                        "execute their runs in this process until Ctrl-C.")
    _params_option(deploy, "params file (default: params.yaml)")
    deploy.add_argument("--profile", help="profile the deployed runs use by default, e.g. smoke")
    deploy.add_argument("--only", help="comma-separated subset of specialize, retrain, promote, rollback, "
                                         "canary-start, canary-stop, canary-check, review-create, "
                                         "fold-feedback, drift-check")
    deploy.add_argument("--limit", type=int, help="most flow runs at once (default: no limit)")
    deploy.add_argument("--work-pool", help="register for this work pool's workers instead of serving "
                                            "(e.g. a Kubernetes pool, infra/README.md), then return")
    deploy.add_argument("--image", help="with --work-pool: the adaptflow image its jobs run (infra/Dockerfile), for a "
                                        "pool whose template takes one; infra/'s Kubernetes template fixes its own")
    ui = sub.add_parser("ui", help="start a Prefect server and an MLflow server on 127.0.0.1",
                        description="Start the Prefect server (state in $PREFECT_HOME, default .prefect/) and an "
                                    "MLflow server over the project's store (mlflow/), wait for both health "
                                    "checks, print their URLs; Ctrl-C stops both.")
    ui.add_argument("--prefect-port", type=int, default=4200, help="Prefect port (default: 4200)")
    ui.add_argument("--mlflow-port", type=int, default=5000, help="MLflow port (default: 5000)")
    _params_option(ui, "params file; its folder holds .prefect/ and mlflow/")


def _deploy(args) -> int:
    import os

    from flows.deployments import NAMES, serve_deployments

    only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else None
    unknown = sorted(set(only or []) - set(NAMES))
    if unknown or not os.environ.get("PREFECT_API_URL"):
        problem = (f"unknown deployment(s) {', '.join(unknown)}; known: {', '.join(NAMES)}" if unknown else
                   "set PREFECT_API_URL to the Prefect server to register with (e.g. `adaptflow ui` prints it)")
        print(f"adaptflow deploy: {problem}", file=sys.stderr)
        return 2
    try:
        if args.work_pool:
            from flows.deployments import register_for_pool

            ids = register_for_pool(args.params, args.work_pool, args.image, args.profile, only)
            print(f"registered {len(ids)} deployment(s) for work pool {args.work_pool}: {', '.join(only or NAMES)}")
        else:
            serve_deployments(args.params, args.profile, only, args.limit)
    except ValueError as exc:   # SettingsError: a wrong params file or profile
        print(f"adaptflow deploy: {exc}", file=sys.stderr)
        return 2
    return 0


def _ui(args) -> int:
    from flows.ui import run_ui

    return run_ui(args.params, args.prefect_port, args.mlflow_port)


def _registry(params: str):
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from tasks.tracking import use_store

    uri = use_store(Path(params).resolve().parent)
    return MlflowClient(), uri


def _govern(args) -> int:
    from tasks.config import read_pipeline_account
    from tasks.registry import governance

    try:
        # Before any store is opened: a params file that is missing or unreadable is a refusal,
        # never "no pipeline account" (issue 27, finding 1); `history` changes nothing.
        pipeline = None if args.command == "history" else read_pipeline_account(args.params_file, args.profile)
        client, uri = _registry(args.params_file)
        if args.command == "history":
            found = governance.history(client, args.model)
            print("\n".join(e.line() for e in found.entries) if found.entries else f"{args.model}: no @champion moves yet")
            for problem in found.problems:   # tampering, gaps, unreadable entries: reported, never fatal
                print(f"adaptflow history: WARNING: {problem}", file=sys.stderr)
            return 1 if found.problems else 0
        if args.command == "promote":
            from tasks.config import read_review_settings
            from tasks.review import gate

            requirement = read_review_settings(args.params_file, args.profile).require_human
            print(gate.promote(client, uri, args.model, args.reviewer, args.reason, version=args.version,
                               from_alias=args.from_alias, pipeline_account=pipeline,
                               requirement=requirement).line())
        else:
            print(governance.rollback(client, uri, args.model, args.reviewer, args.reason,
                                      pipeline_account=pipeline).line())
    except (governance.GovernanceError, ValueError) as exc:   # ValueError: SettingsError in the params file
        print(f"adaptflow {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve(args) -> int:
    import logging

    from tasks.config import load_settings
    from tasks.serving.service import ServingError

    try:
        loaded = load_settings(args.params)
    except ValueError as exc:
        print(f"adaptflow serve: {exc}", file=sys.stderr)
        return 2
    settings = loaded.serving
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _registry(args.params)
    from tasks.serving.run import serve

    from tasks.outcomes.recorder import make_recorder

    try:
        serve(models, settings, args.host or settings.host, args.port or settings.port, loaded.policy,
              make_recorder(loaded.outcomes, loaded.root), loaded.feedback)
    except ServingError as exc:
        print(f"adaptflow serve: {exc}", file=sys.stderr)
        return 2
    return 0


def data_input(args) -> dict | None:
    """The --data options as the flow's `data` form (None without --data)."""
    from flows.inputs import DataInput

    chosen = values(args, DataInput)
    path = chosen.pop("path")
    if not path:
        given = [flags(name, DATA_SPELLING.get(name))[0] for name, value in chosen.items() if value]
        if given:
            raise ValueError(f"{', '.join(given)} describe(s) a file given with --data FILE; for the file in "
                             f"params, set the same keys under data: (text_col, label_col, ...)")
        return None
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise ValueError(f"--data {path}: no such file ({resolved})")
    return {"path": str(resolved), **chosen}


def run_input(args):
    """The specialize flow's form (SpecializeInput), filled from `adaptflow run`'s options; paths
    resolved from the current folder."""
    from flows.inputs import SpecializeInput

    data = data_input(args)
    if args.tune_trials is not None and not args.tune:
        raise ValueError("--tune-trials N goes with --tune")
    chosen = values(args, SpecializeInput)
    if chosen["base"]:
        chosen["base"] = str(Path(chosen["base"]).expanduser().resolve())
    return build(SpecializeInput, {**chosen, "data": data}, RUN_SPELLING)


def _start_temporary_prefect_server():
    """Prefect's temporary API server for this run, or None when Prefect's settings name a server
    (PREFECT_API_URL) or forbid a temporary one. Started right after the checks, before the
    imports: its own process takes about 4 s, beside them. Prefect would start the same one at the flow's first
    API call, after importing prefect.server (3 s) into this process (measured with pyinstrument
    on an AMD EPYC: the flow began 10.4 s after the command, 6.4 s of it before the server's start).
    Called from the main thread: the server ends when it does."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    from tasks.ops.servers import free_port, start_temporary_prefect

    server = start_temporary_prefect(free_port(), Path(PREFECT_HOME.value()) / "temporary-server.log")
    print(f"Prefect: temporary server on {server.url} (runs recorded under {PREFECT_HOME.value()}; "
          "`adaptflow ui` shows them)", file=sys.stderr)
    return server


def _run(args) -> int:
    """`adaptflow run`, beside the temporary Prefect server it starts (stopped however it ends).
    The checks come first: a first run on a machine times a bf16 step there (about 1 s, then
    cached) on one thread, which Prefect's server starting on the other core does not skew
    (bench/precision_check.py), and a refused run then starts no server either."""
    try:  # fail in seconds, before the flow starts, when a setting or the hardware is wrong
        run = run_input(args)
        settings = _check(run)
    except (ValueError, UserError) as exc:
        print(f"adaptflow run: {exc}", file=sys.stderr)
        return 2
    server = None if args.await_approval else _start_temporary_prefect_server()
    try:
        return _run_flow(run, settings, server)
    finally:
        if server is not None:
            _send_what_prefect_holds()
            server.stop()


def _send_what_prefect_holds(timeout: float = 30) -> None:
    """Prefect's log and event workers send their last batches (the flow's final log lines and
    state events) before the server stops; Prefect itself drains them at exit, too late here."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)


def _run_flow(run, settings, server) -> int:
    import os

    if run.await_approval and not os.environ.get("PREFECT_API_URL"):
        print("adaptflow run: --await-approval needs a Prefect server the reviewer can reach; set "
              "PREFECT_API_URL (e.g. start one with `prefect server start`)", file=sys.stderr)
        return 2
    from tasks.ops import fork_server

    try:
        _start_fork_server(settings)
        return _run_specialize(run, server)
    finally:
        fork_server.close_unused()


def _start_fork_server(settings) -> None:
    """The strategies' fork server, started before this command's own imports (after the checks:
    a first run on a machine times a bf16 step there, on a quiet CPU). Its imports (6 s of CPU)
    then overlap these and Prefect's server start, not the flow's data steps: the first strategy
    waited 2.0 s for it when the flow started it (AMX Xeon, `--strategies zero_shot`)."""
    from tasks.ops.fanout import forks_strategies
    from tasks.ops.fork_server import start_early
    from tasks.tracking import tracking_uri

    if forks_strategies(settings):
        start_early(tracking_uri(settings.root))


def _run_specialize(run, server) -> int:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.specialize import specialize
    from tasks.ops.collector import freeze_loaded

    if server is not None:
        server.wait_healthy(poll=0.1)
    freeze_loaded()
    with temporary_settings({PREFECT_API_URL: server.url} if server is not None else {}):
        state = specialize(run, return_state=True)
    return _outcome(state)


def _check(run):
    """What the run's form gets wrong that shows in seconds: its settings, a project folder
    outside git, the hardware they ask for, a base model that cannot do the task. Returns the
    settings."""
    from tasks.data.dvc import require_git
    from tasks.models.base import check_base_for_task, resolve_base_path
    from tasks.tasktypes import task_type
    from tasks.training.hardware import check_hardware

    settings = run.settings()
    require_git(settings.root)
    check_hardware(settings.train)
    if run.base or task_type(settings.task).base_kind != "any":
        check_base_for_task(resolve_base_path(settings.model.base, settings.root), settings.model.base, settings.task)
    return settings


def _outcome(state) -> int:
    """Print what the specialize flow's final state says; the exit code: 0, 2 for a user error
    (its message, no traceback), 1 for anything else (a bug: Prefect's log has its traceback)."""
    if state.is_completed():
        out = state.result()
        print(f"\n{out.table}\n\nMLflow parent run {out.parent_run_id}; data version {out.data_version}"
              f"\nreport: {out.report or 'not built (see the warning above)'}")
        for name, error in out.failed.items():   # recorded as FAILED child runs; the others went on
            print(f"FAILED {name}: {error.splitlines()[0] if error else ''}", file=sys.stderr)
        return 0
    exc = state.result(raise_on_failure=False)   # the exception the flow raised, its type intact
    if isinstance(exc, UserError):
        print(f"\nadaptflow run stopped: {exc}", file=sys.stderr)
        return 2
    print(f"\nadaptflow run failed ({type(exc).__name__}): {exc}\nThe Prefect log above has the traceback.",
          file=sys.stderr)
    return 1


def _exit_on_sigterm() -> None:
    """SIGTERM (kill, a scheduler stopping us) becomes SystemExit, so open MLflow runs are
    closed as FAILED instead of being left RUNNING forever."""
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _exit_on_sigterm()
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()  # before Prefect, MLflow, DVC or transformers read their settings
    try:
        return _dispatch(args)
    except UserError as exc:   # any command: a message that says what to fix, no traceback
        print(f"adaptflow {args.command}: {exc}", file=sys.stderr)
        return 2


def cost_overrides(pairs: list[str]) -> dict:
    """`--set cost.KEY=VALUE` pairs as load_settings overrides ({"cost": {KEY: VALUE}}), values
    read as YAML numbers (32, 1e6, null)."""
    import yaml

    out: dict = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or section != "cost" or not dot or not name:
            raise UserError(f"--set {pair!r}: expected cost.KEY=VALUE, e.g. --set cost.tenants=32")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UserError(f"--set {pair!r}: the value is not valid YAML ({exc})") from exc
        if isinstance(parsed, str):   # YAML reads 2e6 as text; every cost setting is a number
            try:
                parsed = float(parsed)
            except ValueError:
                raise UserError(f"--set {pair!r}: cost settings are numbers (or null), not {value!r}") from None
        out[name] = parsed
    return {"cost": out} if out else {}


def _cost(args) -> int:
    from mlflow.exceptions import MlflowException

    from tasks.config import load_settings
    from tasks.evaluation.steps import cost_text

    settings = load_settings(args.params, args.profile, overrides=cost_overrides(args.settings))
    _registry(args.params)
    try:
        print(cost_text(settings, args.run_id))
    except MlflowException as exc:
        print(f"adaptflow cost: run {args.run_id}: {exc.message.splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


def _init(args) -> int:
    from tasks.data.project import init_project

    report = init_project(Path(args.dir))
    print("\n".join(report.lines()))
    where = "" if Path(args.dir).resolve() == Path.cwd() else f"cd {args.dir}\n  "
    print(f"\nNext, your data (docs/your-project.md):\n  {where}adaptflow run --data FILE --text-col TEXT "
          f"--label-col LABEL --profile smoke\n  (generation: --task generation --input-col INPUT "
          f"--target-col TARGET)")
    return 0


def _dispatch(args) -> int:
    if args.command == "init":
        return _init(args)
    if args.command == "strategies":
        from tasks.strategies import registry

        print(registry.describe_all())
        return 0
    if args.command in ("promote", "rollback", "history"):
        return _govern(args)
    if args.command == "canary":
        return _canary(args)
    if args.command == "review":
        return _review(args)
    if args.command == "feedback":
        return _feedback(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "deploy":
        return _deploy(args)
    if args.command == "ui":
        return _ui(args)
    if args.command == "report":
        from pathlib import Path

        from mlflow.exceptions import MlflowException

        from tasks.config import load_settings
        from tasks.evaluation.steps import build_report

        settings = load_settings(args.params)   # a wrong params file is refused before a store is opened
        _registry(args.params)
        try:
            Path(args.out).write_text(build_report(settings, args.run_id))
        except MlflowException as exc:
            print(f"adaptflow report: run {args.run_id}: {exc.message.splitlines()[0]}", file=sys.stderr)
            return 2
        print(f"wrote {args.out}")
        return 0
    if args.command == "cost":
        return _cost(args)
    if args.command == "lineage":
        from tasks.data.lineage import LineageError, format_lineage, lineage

        client, _ = _registry(args.params)
        try:
            print(format_lineage(lineage(client, args.ref)))
        except LineageError as exc:
            print(f"adaptflow lineage: {exc}", file=sys.stderr)
            return 2
        return 0
    return _run(args)


def entry() -> None:
    """The `adaptflow` command: main(), then an exit without the interpreter's module teardown
    (3.2 s after `adaptflow run`, measured on an AMD EPYC; threads, atexit hooks and output are
    finished first). An exception leaves the normal way, with its traceback."""
    from tasks.ops.quick_exit import exit_now

    exit_now(main())


if __name__ == "__main__":
    entry()
