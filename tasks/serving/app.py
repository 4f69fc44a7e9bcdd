"""HTTP routes: POST /predict (classification), POST /generate (generation), GET /health, /models,
/metrics."""
from __future__ import annotations

import asyncio
import logging
import time

# At module level: FastAPI reads the handlers' annotations (postponed by the __future__ import)
# from this module's globals to know that `request` is the HTTP request.
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from tasks.serving.checks import RequestError, check_generate_request, check_request
from tasks.serving.metrics import UNKNOWN
from tasks.serving.service import Service

log = logging.getLogger("adaptflow.serving")


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="adaptflow serving", description="Registered versions of "
                  + ", ".join(service.models) + "; each followed alias hot-swaps when the registry moves it.")

    @app.post("/predict")
    async def predict(request: Request):
        return await _answer(service, request, check_request, _classify)

    @app.post("/generate")
    async def generate(request: Request):
        return await _answer(service, request, check_generate_request, _generate)

    @app.get("/health")
    def health():
        return service.health()

    @app.get("/models")
    def models():
        return {"loaded": service.describe_models(), "shared_bases": service.pool.groups()}

    @app.get("/metrics")
    def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _classify(service: Service, req, loaded, alias):
    if loaded.manifest.task != "classification":
        raise RequestError(422, f"{req.model} v{loaded.version} generates text: POST /generate")
    probs = await asyncio.wrap_future(service.batcher.submit(loaded.key, loaded, req.texts))
    return service.answer(loaded, alias, probs)


async def _generate(service: Service, req, loaded, alias):
    if loaded.manifest.task != "generation":
        raise RequestError(422, f"{req.model} v{loaded.version} is a classifier: POST /predict")
    outputs = await asyncio.wrap_future(service.submit_generate(loaded, req.texts, req.max_new_tokens))
    return service.answer_generation(loaded, alias, outputs)


async def _answer(service: Service, request: Request, check, run):
    """One request: parse and check the body, admit it to a version (loading a pinned one off the
    event loop), run it, and count it; a refused or failed request never affects the others."""
    start = time.perf_counter()
    label, loaded = UNKNOWN, None
    try:
        try:
            body = await request.json()
        except ValueError as exc:
            raise RequestError(400, f"the body is not valid JSON: {exc}") from exc
        req = check(body, service.models, service.settings)
        label = req.model
        loaded, alias = (service.admit(req) if req.version is None
                         else await run_in_threadpool(service.admit, req))
        answer = await run(service, req, loaded, alias)
    except RequestError as exc:
        service.metrics.request(label, exc.status, time.perf_counter() - start)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    except Exception as exc:   # the service keeps serving; the client learns what failed
        log.exception("%s failed", request.url.path)
        service.metrics.request(label, 500, time.perf_counter() - start)
        return JSONResponse({"error": f"{request.url.path.strip('/')} failed: {type(exc).__name__}: {exc}"},
                            status_code=500)
    finally:
        if loaded is not None:
            service.release(loaded)
    service.metrics.request(label, 200, time.perf_counter() - start, len(req.texts))
    return answer
