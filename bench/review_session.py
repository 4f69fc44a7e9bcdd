"""Time to build a blinded review session on a project's registered versions, and what a reviewer
sees (the first items as the page shows them: answers in the recorded random order, no version).

  python bench/review_session.py --project DIR --model bbc-headlines --a champion --b challenger --n 60 \
      [--profile headlines] [--reviewers 3] [--overlap 20]

Prints the wall time and process CPU time of `adaptflow review create`'s work (sampling, two
version loads, 2 x n answers, the MLflow run), the session id, and three items as shown.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, required=True, help="the project folder (params.yaml, mlflow/)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--a", default="champion")
    parser.add_argument("--b", default="challenger")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--reviewers", type=int, default=3)
    parser.add_argument("--overlap", type=int, default=20)
    parser.add_argument("--profile")
    args = parser.parse_args()

    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    from mlflow.tracking import MlflowClient

    from tasks.config import load_settings
    from tasks.review import steps
    from tasks.tracking import use_store

    params = args.project.resolve() / "params.yaml"
    settings = load_settings(params, args.profile)
    use_store(params.parent)
    wall, cpu = time.perf_counter(), time.process_time()
    session = steps.create(MlflowClient(), settings, model=args.model, a=args.a, b=args.b, n=args.n, source="test",
                           reviewers=args.reviewers, overlap=args.overlap, seed=0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"session {session.id}: {len(session.items)} items, {args.model} v{session.a} vs v{session.b}, "
          f"built in {wall:.1f} s wall, {cpu:.1f} s CPU (this process)")
    print(f"b shown on the left on {sum(it.swapped for it in session.items)} of {len(session.items)} items")
    for item in session.items[:3]:
        print(json.dumps({"input": item.input[:160], "A": item.shown()[0], "B": item.shown()[1]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
