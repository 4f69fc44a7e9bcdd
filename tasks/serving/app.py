"""HTTP routes: POST /predict (classification), POST /generate (generation), POST /feedback
(a correction of an answer, durable before its 200), GET /health, /models, /metrics.

Every limit a hostile or broken client could push against answers with a 4xx or a 503 with
Retry-After, never by failing other clients' requests: the body is capped before it is parsed,
each request is checked on its own, the queue is bounded, a request times out, and error bodies
say what was wrong without exception text or paths (those go to the log).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time

# At module level: FastAPI reads the handlers' annotations (postponed by the __future__ import)
# from this module's globals to know that `request` is the HTTP request.
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from tasks.serving.batching import QueueFull
from tasks.serving.checks import RequestError, check_generate_request, check_request
from tasks.serving.exposure import LoadLimiter, public_health, public_models
from tasks.serving.feedback import client_key, feedback_row, request_texts
from tasks.serving.metrics import UNKNOWN
from tasks.serving.outcome import make_outcome, record
from tasks.serving.routing import request_id
from tasks.serving.service import Service, ServingError
from tasks.tasktypes import task_type

log = logging.getLogger("adaptflow.serving")
RETRY_AFTER_SECONDS = "1"
# The header a client may send its key in (or the body's "client"): a canary split is sticky by it.
CLIENT_HEADER = "x-adaptflow-client"


class RetryLater(RequestError):
    """A refusal whose Retry-After is not the default second (a client's load budget refills)."""

    def __init__(self, status: int, message: str, retry_after: str):
        super().__init__(status, message)
        self.retry_after = retry_after


def serving_token(token_env: str | None) -> str | None:
    """The bearer token /predict asks for (None: none asked). A named variable that is unset
    or empty stops the service from starting rather than leaving it open."""
    if token_env is None:
        return None
    token = os.environ.get(token_env, "")
    if not token.strip():
        raise ServingError(f"serving.token_env names {token_env}, which is not set: set it to the token "
                           "clients must send, or set serving.token_env: null")
    return token


def require_token(request: Request, token: str | None) -> None:
    """401 unless the request carries `Authorization: Bearer <token>` (compared in constant time)."""
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise RequestError(401, "this service needs 'Authorization: Bearer <token>'")


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The body, refused (413) past `limit` bytes, whatever Content-Length claims, and (408) when
    it has not all arrived within `timeout` seconds (serving.body_timeout_seconds)."""
    if timeout is not None:
        try:
            return await asyncio.wait_for(read_body(request, limit), timeout)
        except asyncio.TimeoutError as exc:
            raise RequestError(408, f"the body did not arrive within {timeout:g} s "
                                    f"(serving.body_timeout_seconds)") from exc
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestError(413, f"the body is over {limit} bytes (serving.max_body_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over {limit} bytes (serving.max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes):
    try:
        return json.loads(body)
    except ValueError as exc:   # includes bytes that are not UTF-8
        raise RequestError(400, f"the body is not valid JSON: {str(exc)[:120]}") from exc
    except RecursionError as exc:   # [[[[...]]]] nested deeper than the parser goes
        raise RequestError(400, "the body is not valid JSON: nested too deeply") from exc


def error(status: int, message: str, rid: str | None = None, retry_after: str | None = None) -> JSONResponse:
    headers = {"Retry-After": retry_after or RETRY_AFTER_SECONDS} if status in (503, 429) else {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": message, **({"request_id": rid} if rid else {})}, status_code=status,
                        headers=headers)


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="adaptflow serving", description="Registered versions of "
                  + ", ".join(service.models) + "; each followed alias hot-swaps when the registry moves it.")
    settings = service.settings
    token = serving_token(settings.token_env)
    app.state.load_limiter = LoadLimiter(settings.load_rate_per_minute, settings.load_burst)

    @app.post("/predict")
    async def predict(request: Request):
        return await _answer(service, request, token, check_request, _classify)

    @app.post("/generate")
    async def generate(request: Request):
        return await _answer(service, request, token, check_generate_request, _generate)

    @app.post("/feedback")
    async def feedback(request: Request):
        return await _feedback(service, request, token)

    # The read-only routes run on the event loop (they take one short lock), so they answer
    # even while every worker thread waits for a version to load.
    @app.get("/health")
    async def health():
        """200 when every model serves its default alias and nothing is refused; 503 otherwise."""
        body = public_health(service.health())
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/models")
    async def models(request: Request):
        try:
            require_token(request, token)
            authenticated = token is not None
        except RequestError:
            authenticated = False
        return {"loaded": public_models(service.describe_models(), authenticated),
                "shared_bases": service.pool.groups()}

    @app.get("/metrics")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _wait(service: Service, submit):
    """Queue a batch job and wait for it: 503 (retry) when the queue is full or it times out."""
    try:
        future = submit()
    except QueueFull as exc:
        raise RequestError(503, f"the service is busy ({exc}); retry shortly") from exc
    timeout = service.settings.request_timeout_seconds
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except asyncio.TimeoutError as exc:
        raise RequestError(503, f"no answer within {timeout:g} s (serving.request_timeout_seconds); "
                                "retry shortly") from exc


async def _classify(service: Service, req, loaded, alias):
    kind = task_type(loaded.manifest.task)
    if kind.generates:
        raise RequestError(422, f"{req.model} v{loaded.version} generates text: POST {kind.route}")
    probs = await _wait(service, lambda: service.batcher.submit(loaded.key, loaded, req.texts))
    return service.answer(loaded, alias, probs)


async def _generate(service: Service, req, loaded, alias):
    kind = task_type(loaded.manifest.task)
    if not kind.generates:
        raise RequestError(422, f"{req.model} v{loaded.version} is a classifier: POST {kind.route}")
    outputs = await _wait(service, lambda: service.submit_generate(loaded, req.texts, req.max_new_tokens))
    # Off the event loop: the personal-data recognisers take ~10 ms an output (~1 s to build once).
    return await run_in_threadpool(service.answer_generation, loaded, alias, outputs)


async def _answer(service: Service, request: Request, token: str | None, check, run):
    """One request: authenticate, read (capped) and check the body on its own, admit it to a
    version (the canary split, or loading a pinned one off the event loop), run it, record its
    outcome, and count it; a refused or failed request never affects the others, and its error
    says what was wrong without internals. Every answer carries a request id (body and header)."""
    start, arrived, rid = time.perf_counter(), time.time(), request_id()
    label, loaded, alias, routed, route = UNKNOWN, None, None, False, request.url.path.strip("/")
    req, answer, status = None, None, 200
    try:
        require_token(request, token)
        req = check(parse_json(await read_body(request, service.settings.max_body_bytes,
                                               service.settings.body_timeout_seconds)),
                    service.models, service.settings)
        label = req.model
        limit_loads(service, request, req)
        key = request.headers.get(CLIENT_HEADER) or None
        loaded, alias, routed = (service.admit(req, key) if req.version is None
                                 else await run_in_threadpool(service.admit, req, key))
        answer = await run(service, req, loaded, alias)
        response = JSONResponse({**answer, "request_id": rid})
    except RequestError as exc:
        status = exc.status
        response = error(exc.status, str(exc), rid, exc.retry_after if isinstance(exc, RetryLater) else None)
    except Exception:   # the service keeps serving; the details go to the log only
        log.exception("%s failed (request %s)", route, rid)
        status = 500
        response = error(500, f"{route} failed (an internal error; the service log has the details)", rid)
    finally:
        if loaded is not None:
            service.release(loaded)
    seconds = time.perf_counter() - start
    service.metrics.request(label, status, seconds, len(req.texts) if req is not None and status == 200 else 0)
    if loaded is not None:   # a request that reached a version: its outcome is that version's
        texts = ([await run_in_threadpool(request_texts, service.policy, rid, arrived, loaded, req.texts, answer)]
                 if answer is not None and service.recorder is not None and service.recorder.store_texts else [])
        await record(service, make_outcome(service, request_id=rid, arrived=arrived, loaded=loaded, alias=alias,
                                           routed=routed, route=route, status=status, seconds=seconds,
                                           texts=len(req.texts), answer=answer), *texts)
    response.headers["X-Request-Id"] = rid
    return response


async def _feedback(service: Service, request: Request, token: str | None):
    """One correction: authenticate, read (capped), find the answer it names (404 unknown), check
    it against the answering task type, apply the poisoning rules and commit it, then 200. A
    store that cannot commit is a 503: feedback is never acknowledged without being stored."""
    from tasks.outcomes.feedback import FeedbackRefused, answered, store_feedback

    start, rid, status = time.perf_counter(), request_id(), 200
    try:
        require_token(request, token)
        if service.recorder is None or not service.feedback.enabled:
            raise RequestError(404, "feedback is off here: it needs outcomes.enabled and feedback.enabled")
        body = parse_json(await read_body(request, service.settings.max_body_bytes,
                                          service.settings.body_timeout_seconds))
        asked = body.get("request_id") if isinstance(body, dict) else None
        if not isinstance(asked, str) or not asked:
            raise RequestError(422, "'request_id' must be the request id an answer carried")
        key = client_key(body, request.headers.get(CLIENT_HEADER), request.client.host if request.client else "unknown")
        found = await run_in_threadpool(answered, service.recorder.store, asked[:64])
        if found is None:
            raise RequestError(404, f"no answered request {asked[:40]!r} in the outcome store")
        row = feedback_row(body, found, key)
        result = await run_in_threadpool(store_feedback, service.recorder.store, row, service.feedback)
        response = JSONResponse({"status": result, "request_id": asked, "item": row.item})
    except FeedbackRefused as exc:
        status = exc.status
        response = error(exc.status, str(exc), rid)
    except RequestError as exc:
        status = exc.status
        response = error(exc.status, str(exc), rid)
    except Exception:   # the store is down or failed: not acknowledged, so the client retries
        log.exception("feedback failed (request %s)", rid)
        status = 503
        response = error(503, "feedback could not be stored (the outcome store did not answer); retry", rid)
    service.metrics.feedback.labels(str(status)).inc()
    log.info("feedback %s in %.1f ms (request %s)", status, (time.perf_counter() - start) * 1000, rid)
    response.headers["X-Request-Id"] = rid
    return response


def limit_loads(service: Service, request: Request, req) -> None:
    """429 when this client has asked for too many versions that were not loaded
    (serving.load_rate_per_minute, load_burst): cycling version numbers cannot keep loading."""
    if req.version is None or service.is_loaded(req.model, req.version):
        return
    client = request.client.host if request.client else "unknown"
    wait = request.app.state.load_limiter.take(client)
    if wait > 0:
        raise RetryLater(429, f"too many versions asked for by number from {client}: at most "
                              f"{service.settings.load_burst} at once, then {service.settings.load_rate_per_minute:g} a "
                              f"minute (serving.load_rate_per_minute); retry in {wait:.0f} s or ask for an alias",
                         retry_after=str(max(1, round(wait))))
