"""HTTP routes: POST /predict, GET /health, /models, /metrics."""
from __future__ import annotations

import asyncio
import logging
import time

# At module level: FastAPI reads the handlers' annotations (postponed by the __future__ import)
# from this module's globals to know that `request` is the HTTP request.
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from tasks.serving.checks import RequestError, check_request
from tasks.serving.metrics import UNKNOWN
from tasks.serving.service import Service

log = logging.getLogger("adaptflow.serving")


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="adaptflow serving", description="Registered versions of "
                  + ", ".join(service.models) + "; each followed alias hot-swaps when the registry moves it.")

    @app.post("/predict")
    async def predict(request: Request):
        start = time.perf_counter()
        label = UNKNOWN
        loaded = None
        try:
            try:
                body = await request.json()
            except ValueError as exc:
                raise RequestError(400, f"the body is not valid JSON: {exc}") from exc
            req = check_request(body, service.models, service.settings)
            label = req.model
            # A version asked for by number may need loading: off the event loop.
            loaded, alias = (service.admit(req) if req.version is None
                             else await run_in_threadpool(service.admit, req))
            probs = await asyncio.wrap_future(service.batcher.submit(loaded.key, loaded, req.texts))
            answer = service.answer(loaded, alias, probs)
        except RequestError as exc:
            service.metrics.request(label, exc.status, time.perf_counter() - start)
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except Exception as exc:   # the service keeps serving; the client learns what failed
            log.exception("predict failed")
            service.metrics.request(label, 500, time.perf_counter() - start)
            return JSONResponse({"error": f"prediction failed: {type(exc).__name__}: {exc}"}, status_code=500)
        finally:
            if loaded is not None:
                service.release(loaded)
        service.metrics.request(label, 200, time.perf_counter() - start, len(req.texts))
        return answer

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
