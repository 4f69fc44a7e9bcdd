"""One reviewer in tests/test_audit_server.py: promotes and rolls back `model` in a loop through
adaptflow's governance functions, as its own process with its own MLflow account, and prints
the sequence numbers of its moves as JSON. Usage: python audit_reviewer.py MODEL ROUNDS SEED"""
import json
import os
import random
import sys

from mlflow.tracking import MlflowClient

from tasks.registry import governance


def main(model: str, rounds: int, seed: int) -> None:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    client, rng = MlflowClient(uri, uri), random.Random(seed)
    me = os.environ["MLFLOW_TRACKING_USERNAME"]   # the signed-in account, so the name is accepted
    moves, refused = [], []
    for i in range(rounds):
        try:
            if rng.random() < 0.6:
                entry = governance.promote(client, uri, model, me, f"round {i}", version=str(rng.randint(1, 4)))
            else:
                entry = governance.rollback(client, uri, model, me, f"round {i}")
            moves.append(entry.seq)
        except governance.GovernanceError as exc:   # already champion, nothing to roll back to
            refused.append(str(exc)[:80])
    print(json.dumps({"moves": moves, "refused": len(refused)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
