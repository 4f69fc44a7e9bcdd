"""`--await-approval`: the flow pauses after proposing a challenger; a reviewer's typed input
(sent through the Prefect API, as the UI's resume form does) promotes or rejects; a timeout
changes nothing."""
from __future__ import annotations

import threading
import time

from mlflow.tracking import MlflowClient

from flows.specialize import SpecializeInput, specialize
from conftest import read_history
from tasks.tracking import use_store

MODEL = "rotten-tomatoes-sentiment"



def reviewer_answers(answer: dict) -> threading.Thread:
    """A reviewer who waits for the paused run, then resumes it with `answer`."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    # Asked of the server: the Prefect harness is shared with other test modules' runs.
    PAUSED = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))

    def act():
        deadline = time.monotonic() + 300
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                paused = client.read_flow_runs(flow_run_filter=PAUSED, limit=1)
                if paused:
                    resume_flow_run(paused[0].id, run_input=answer)
                    return
                time.sleep(0.5)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def run(project_factory, tiny_bert, timeout=120):
    project = project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["zero_shot"]},
                               "project": {"approval_timeout_seconds": timeout, "approval_poll_seconds": 1}})
    state = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke",
                                       await_approval=True), return_state=True)
    assert state.is_completed(), state
    use_store(project)
    return state.result(), MlflowClient()


def test_approval_promotes_with_the_reviewers_words(harness, project_factory, tiny_bert):
    thread = reviewer_answers({"approve": True, "reviewer": "ana", "reason": "beats the baseline"})
    out, client = run(project_factory, tiny_bert)
    thread.join(timeout=5)
    assert out.review == "approved"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == out.registered_version
    [entry] = read_history(client, MODEL)
    assert (entry.reviewer, entry.reason, entry.version) == ("ana", "beats the baseline", out.registered_version)


def test_rejection_is_recorded_and_changes_no_alias(harness, project_factory, tiny_bert):
    reviewer_answers({"approve": False, "reviewer": "ben", "reason": "too few examples"})
    out, client = run(project_factory, tiny_bert)
    assert out.review == "rejected"
    tags = client.get_model_version(MODEL, out.registered_version).tags
    assert (tags["review.outcome"], tags["review.by"], tags["review.reason"]) == ("rejected", "ben", "too few examples")
    assert read_history(client, MODEL) == []
    assert "champion" not in client.get_registered_model(MODEL).aliases


def test_a_timeout_changes_nothing(harness, project_factory, tiny_bert):
    out, client = run(project_factory, tiny_bert, timeout=3)
    assert out.review == "timed_out"
    assert client.get_model_version(MODEL, out.registered_version).tags["review.outcome"] == "timed_out"
    assert read_history(client, MODEL) == []
    assert "champion" not in client.get_registered_model(MODEL).aliases
