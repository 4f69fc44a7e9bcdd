"""Checking a /predict or /generate body before anything is queued (pure: no model, no registry)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.artifacts.predictor import text_problem
from tasks.config import ServingSettings
from tasks.serving.routing import CANARY, MAX_CLIENT_KEY
from tasks.tasktypes import names as task_names
from tasks.tasktypes import task_type


class RequestError(ValueError):
    """A request the service refuses; `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PredictRequest:
    model: str
    texts: list[str]
    alias: str | None = None      # one of serving.aliases; None with version None = the default
    version: str | None = None    # a version number, loaded on demand
    max_new_tokens: int | None = None   # /generate only: at most serving.max_new_tokens
    client: str | None = None     # the client's key: a canary split is sticky by it (hashed, never stored)


def known_fields(route: str) -> set[str]:
    """The body fields a route accepts: the request schema its task type declares."""
    return next(set(task_type(t).request_schema["properties"]) for t in task_names() if task_type(t).route == route)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_generate_request(body: Any, models: list[str], settings: ServingSettings) -> PredictRequest:
    """A /generate body: a /predict body plus an optional max_new_tokens, bounded by the server."""
    req = check_request(body, models, settings, known_fields("/generate"))
    cap = body.get("max_new_tokens", settings.max_new_tokens)
    if isinstance(cap, bool) or not isinstance(cap, int) or not 0 < cap <= settings.max_new_tokens:
        raise RequestError(422, f"'max_new_tokens' must be an integer in 1..{settings.max_new_tokens} "
                                f"(serving.max_new_tokens), got {cap!r}")
    return PredictRequest(req.model, req.texts, req.alias, req.version, cap, req.client)


def check_request(body: Any, models: list[str], settings: ServingSettings,
                  known: set[str] | None = None) -> PredictRequest:
    known = known_fields("/predict") if known is None else known
    if not isinstance(body, dict):
        raise RequestError(400, 'the body must be a JSON object like {"model": "...", "texts": ["..."]}')
    unknown = sorted(set(body) - known)
    if unknown:
        raise RequestError(422, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(422, f"'model' must name a served model: {', '.join(models)}")
    if model not in models:
        raise RequestError(404, f"model {model!r} is not served here; served: {', '.join(models)}")
    alias, version = body.get("alias"), body.get("version")
    if alias is not None and version is not None:
        raise RequestError(422, "give 'alias' or 'version', not both")
    if alias is not None and alias not in (*settings.aliases, CANARY):
        raise RequestError(404, f"alias {alias!r} is not followed; followed: {', '.join(settings.aliases)} "
                                f"(serving.aliases in params) and {CANARY} while a canary runs")
    if version is not None:
        # ASCII digits only: "²".isdigit() is True and int("²") fails; at most 18 digits.
        digits = str(version) if isinstance(version, int) and not isinstance(version, bool) and version >= 0 else version
        if not (isinstance(digits, str) and digits.isascii() and digits.isdigit() and len(digits) <= 18):
            raise RequestError(422, f"'version' must be a version number, got {str(version)[:40]!r}")
        version = str(int(digits))
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts:
        raise RequestError(422, "'texts' must be a non-empty list of strings")
    if len(texts) > settings.max_texts:
        raise RequestError(413, f"{len(texts)} texts in one request; the limit is {settings.max_texts} "
                                f"(serving.max_texts): split the request")
    problem = text_problem(texts)   # the predictor's own rule, checked before anything is queued
    if problem:
        raise RequestError(422, problem)
    long = [i for i, t in enumerate(texts) if len(t) > settings.max_chars]
    if long:
        raise RequestError(413, f"text(s) at position(s) {long[:10]} exceed {settings.max_chars} characters "
                                f"(serving.max_chars)")
    # A lone surrogate ("\ud800" in JSON) is a valid Python str but not text: the tokenizer fails
    # on it, and would fail every request merged into the same batch.
    unencodable = [i for i, t in enumerate(texts) if not _is_utf8(t)]
    if unencodable:
        raise RequestError(422, f"text(s) at position(s) {unencodable[:10]} are not valid Unicode text "
                                f"(a lone surrogate such as \\ud800)")
    client = body.get("client")
    if client is not None and not (isinstance(client, str) and 0 < len(client) <= MAX_CLIENT_KEY and _is_utf8(client)):
        raise RequestError(422, f"'client' must be a non-empty string of at most {MAX_CLIENT_KEY} characters "
                                "(the key a canary split is sticky by)")
    return PredictRequest(model=model, texts=list(texts), alias=alias, version=version, client=client)
