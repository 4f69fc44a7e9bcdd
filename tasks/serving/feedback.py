"""POST /feedback: checking a body against the answering task type's feedback_body (pure), and
the texts an answer leaves in the outcome store with outcomes.store_texts on (redacted by the
output policy's personal-data rules before they leave the process).

Feedback is taken only on a text this service answered and stored: without outcomes.store_texts
the answer's texts are not in the store and feedback is refused with a message saying to turn it
on (a client sending the text along could attach any text to any request id)."""
from __future__ import annotations

import time
from typing import Any

from tasks.outcomes.feedback import Answered, FeedbackRow, client_hash, text_hash
from tasks.outcomes.store import RequestText
from tasks.serving.checks import RequestError
from tasks.serving.routing import MAX_CLIENT_KEY
from tasks.tasktypes import task_type

_TYPES = {"string": str, "integer": int}


def check_fields(body: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """A flat JSON object against a task type's feedback_body: no unknown field, the required
    ones present, each of its type and bounds; 400/422 naming the field."""
    if not isinstance(body, dict):
        raise RequestError(400, 'the body must be a JSON object like {"request_id": "...", ...}')
    known = schema["properties"]
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise RequestError(422, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    missing = [name for name in schema["required"] if name not in body]
    if missing:
        raise RequestError(422, f"missing field(s) {', '.join(missing)}")
    options = [alt["required"][0] for alt in schema.get("anyOf", [])]
    if options and not any(name in body for name in options):
        raise RequestError(422, f"give at least one of {', '.join(options)}")
    for name, value in body.items():
        spec = known[name]
        kind = _TYPES[spec["type"]]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise RequestError(422, f"'{name}' must be a{'n' if spec['type'][0] == 'i' else ''} {spec['type']}")
        if kind is int and not spec.get("minimum", value) <= value <= spec.get("maximum", value):
            raise RequestError(422, f"'{name}' must be in {spec.get('minimum', '')}..{spec.get('maximum', '')}, "
                                    f"got {value}")
        if kind is str and not spec.get("minLength", 0) <= len(value) <= spec.get("maxLength", len(value)):
            raise RequestError(422, f"'{name}' must be {spec.get('minLength', 0)}..{spec.get('maxLength', '')} "
                                    f"characters long")
    return body


def feedback_row(body: Any, answered: Answered, client_key: str,
                 now: float | None = None) -> FeedbackRow:
    """The row a checked body becomes: the answering version's task type says what it carries;
    a label outside that version's label set is 422 (naming the set)."""
    kind = task_type(answered.task)
    body = check_fields(body, kind.feedback_body)
    item = body.get("item", 0)
    if item >= len(answered.inputs):
        raise RequestError(422, f"'item' {item} is out of range: request {answered.request_id} had "
                                f"{len(answered.inputs)} text(s)")
    label = body.get("label")
    if label is not None and label not in answered.labels:
        raise RequestError(422, f"label {label[:80]!r} is not one of {answered.model} v{answered.version}'s labels: "
                                f"{', '.join(map(str, answered.labels))}")
    output = body.get("output")   # its length: tasks/outcomes/feedback.py's screen
    text, answer = answered.inputs[item], answered.outputs[item]
    return FeedbackRow(request_id=answered.request_id, item=item, client=client_hash(client_key),
                       at=time.time() if now is None else now, model=answered.model, version=answered.version,
                       task=answered.task, input=text, text_hash=text_hash(text),
                       answer=None if answer is None else str(answer), label=label, output=output,
                       rating=body.get("rating"))


def client_key(body: Any, header: str | None, address: str) -> str:
    """Whom the per-client rules count: the body's `client`, else the client header, else the
    caller's address."""
    key = body.get("client") if isinstance(body, dict) else None
    key = key or header or f"address:{address}"
    if not isinstance(key, str) or len(key) > MAX_CLIENT_KEY:
        raise RequestError(422, f"'client' must be a string of at most {MAX_CLIENT_KEY} characters")
    return key


def request_texts(policy, request_id: str, arrived: float, loaded, texts: list[str], answer: dict) -> RequestText:
    """What an answered request leaves in the store with outcomes.store_texts on: its inputs and
    what was shown, each redacted (~10 ms a text: run it off the event loop)."""
    kind = task_type(loaded.manifest.task)
    shown = ([p.get("label") for p in answer["predictions"]] if "predictions" in answer
             else [None if o is None else policy.redact(o) for o in answer.get("outputs", [])])
    return RequestText(request_id=request_id, at=arrived, model=loaded.model, version=loaded.version,
                       task=kind.name, inputs=[policy.redact(t) for t in texts], outputs=shown,
                       labels=list(loaded.manifest.labels) if kind.has_labels else [])
