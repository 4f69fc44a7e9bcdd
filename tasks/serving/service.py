"""The serving service: which version each followed alias serves, requests in flight, swaps
when the registry moves an alias, refusals, health.

A request is bound to a loaded version when it is admitted; a swap only moves the alias, so
requests already admitted finish on the old version, which is freed when its last request is
done. A version that fails to load (a base fingerprint mismatch, a broken artifact) is refused:
the alias keeps serving the previous version, /health and the log say why.
"""
from __future__ import annotations

import logging
import os
import random
import re
import socket
import shutil
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from mlflow.exceptions import MlflowException

from tasks.artifacts.fetch import fetch_version, registered_base
from tasks.config import FeedbackSettings, PolicySettings, ServingSettings
from tasks.evaluation.policy import OutputPolicy
from tasks.serving.batching import Batcher
from tasks.serving.checks import PredictRequest, RequestError
from tasks.outcomes.recorder import Recorder
from tasks.outcomes.store import ServingEvent
from tasks.serving.follow import Change, Route, plan_changes, resolve
from tasks.serving.metrics import ServingMetrics
from tasks.serving.policy import guard_outputs, guard_prediction
from tasks.serving.pool import Loaded, Pool
from tasks.serving.routing import CANARY, CanaryRoute, goes_to_canary
from tasks.serving.workdir import new_workdir

log = logging.getLogger("adaptflow.serving")


class ServingError(ValueError):
    """The service cannot start as asked (the message says why)."""


@dataclass(frozen=True)
class Refusal:
    alias: str
    version: str
    reason: str
    at: str
    # A wrong base or a broken artifact stays wrong: not retried until the alias moves. A
    # registry or storage error (OSError, MlflowException) may pass: retried at the next poll.
    retried: bool = False


@dataclass(frozen=True)
class GenerateTarget:
    """A /generate batch: the version and the token cap its requests share."""
    loaded: Loaded
    max_new_tokens: int


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[^\s'\"(),;:]+){2,}")


def public_reason(exc: BaseException) -> str:
    """What a client (or /health) may learn of a failure: its type and message, local paths
    replaced by <path>, at most 300 characters. The log keeps the whole of it."""
    return f"{type(exc).__name__}: {_PATH.sub('<path>', str(exc))}"[:300]


class Service:
    def __init__(self, models: list[str], settings: ServingSettings, client=None,
                 policy: PolicySettings | None = None, recorder: Recorder | None = None, replica: str = "",
                 feedback: FeedbackSettings | None = None):
        from mlflow.tracking import MlflowClient

        if not models:
            raise ServingError("name at least one registered model to serve (--models A,B)")
        self.models, self.settings = list(dict.fromkeys(models)), settings
        self.client = client or MlflowClient()
        self.metrics = ServingMetrics()
        # Where each answer's outcome row goes (tasks/outcomes; None: nothing recorded), and this
        # replica's name in those rows.
        self.recorder, self.replica = recorder, replica or f"{socket.gethostname()}:{os.getpid()}"
        if recorder is not None:
            self.metrics.watch_recorder(recorder)
        self.feedback = feedback or FeedbackSettings()   # POST /feedback's bounds and rules
        self._canary: dict[str, CanaryRoute | None] = {m: None for m in self.models}
        self._rng = random.Random()
        # params' policy: section, the one evaluation applied to the test outputs.
        self.policy = OutputPolicy(policy if policy is not None else PolicySettings())
        self.batcher = Batcher(self._run_batch, settings.batch_wait_ms / 1000, settings.max_batch,
                               settings.max_queue_texts, mix_key=self._mix_key, run_mixed=self._run_mixed)
        self.pool = Pool(settings.merged, self.batcher.call, settings.mixed_batches)
        self._lock = threading.Lock()
        self._routes: dict[Route, str] = {}
        self._loaded: dict[tuple[str, str], Loaded] = {}
        self._inflight: Counter[tuple[str, str]] = Counter()
        self._pinned: dict[str, OrderedDict[str, None]] = {m: OrderedDict() for m in self.models}
        self._refused: dict[Route, Refusal] = {}
        self._failed_versions: dict[tuple[str, str], str] = {}
        self._held: Counter[tuple[str, str]] = Counter()   # loaded, not yet routed or pinned
        self._pending_loads = 0   # requests waiting for a version asked for by number
        self._previous: dict[Route, str] = {}   # what each alias served before its last swap
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._workdir = new_workdir()   # and removes those of replicas killed before they could
        self.last_poll: str | None = None
        self.poll_error: str | None = None

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> "Service":
        for model in self.models:
            try:
                self.client.get_registered_model(model)
            except MlflowException as exc:
                raise ServingError(f"no registered model {model!r} in the registry "
                                   f"({self.client.tracking_uri}); check --models and MLFLOW_TRACKING_URI") from exc
        self.batcher.start()
        if self.recorder is not None:
            self.recorder.start()
        self.sync_once()   # the default aliases load before the port opens
        self._follower = threading.Thread(target=self._follow, name="adaptflow-follow", daemon=True)
        self._follower.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=60)
        self.batcher.stop()
        if self.recorder is not None:
            self.recorder.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _follow(self) -> None:
        while not self._stop.wait(self.settings.poll_seconds):
            try:
                self.sync_once()
            except Exception:   # never let the follower die: the next poll tries again
                log.exception("following the registry failed")

    # ---- following the registry ----------------------------------------------------
    def sync_once(self) -> list[Change]:
        with self._sync_lock:
            try:
                found = resolve(self.client, self.models, self.settings.aliases)
            except Exception as exc:   # registry unreachable: keep serving what is loaded
                self.poll_error = f"{_now()}: {type(exc).__name__}: {str(exc)[:300]}"
                log.warning("registry poll failed, still serving the loaded versions: %s", self.poll_error)
                return []
            self.last_poll, self.poll_error = _now(), None
            resolved = {**found.routes, **{(m, CANARY): c.version if c else None for m, c in found.canaries.items()}}
            with self._lock:
                self._follow_canaries(found.canaries)
                refused = {r: f.version for r, f in self._refused.items() if not f.retried}
                for route, version in resolved.items():   # the alias moved on from a refused version
                    if route in self._refused and self._refused[route].version != version:
                        del self._refused[route]
                        refused.pop(route, None)
                changes = plan_changes(dict(self._routes), resolved, refused)
            for change in changes:
                self._apply(change)
            self._retire_unused()
            return changes

    def _follow_canaries(self, canaries: dict[str, CanaryRoute | None]) -> None:
        """Under the lock: a stopped canary stops taking traffic now (its version is freed once
        idle), a changed share applies to the next request."""
        for model, canary in canaries.items():
            self._canary[model] = canary
            self.metrics.canary_share.labels(model).set(canary.share if canary else 0.0)
            if canary is None:
                self._routes.pop((model, CANARY), None)
                self._refused.pop((model, CANARY), None)

    def _apply(self, change: Change) -> None:
        route = (change.model, change.alias)
        try:
            loaded = self._ensure_loaded(change.model, change.new)
        except Exception as exc:
            log.debug("load failed", exc_info=True)
            log.error("loading %s v%s failed: %s: %s", change.model, change.new, type(exc).__name__, exc)
            refusal = Refusal(change.alias, change.new, public_reason(exc), _now(),
                              retried=isinstance(exc, (OSError, MlflowException)))
            with self._lock:
                self._refused[route] = refusal
            self.metrics.refusals.labels(change.model).inc()
            if self.recorder is not None:   # the canary check rolls back a canary no replica can load
                self.recorder.record(ServingEvent(time.time(), self.replica, change.model, change.new, "refused",
                                                  f"@{change.alias}: {refusal.reason}"))
            log.error("REFUSED %s@%s -> v%s; still serving %s%s: %s", change.model, change.alias, change.new,
                      f"v{change.old}" if change.old else "nothing",
                      " (retried at the next poll)" if refusal.retried else "", refusal.reason)
            return
        with self._lock:
            self._routes[route] = change.new
            self._refused.pop(route, None)
            self._held[loaded.key] -= 1
            if change.old is not None and self.settings.keep_previous:
                self._previous[route] = change.old
        self.metrics.serving.labels(change.model, change.alias).set(float(change.new))
        if change.old is not None:
            self.metrics.swaps.labels(change.model).inc()
        log.info("%s@%s: %s -> v%s (%s, %s, loaded in %.2f s)", change.model, change.alias,
                 f"v{change.old}" if change.old else "(none)", change.new, loaded.manifest.strategy,
                 loaded.mode, loaded.load_seconds)

    def _ensure_loaded(self, model: str, version: str) -> Loaded:
        """The loaded version, held (never retired) until the caller routes or pins it and
        drops the hold."""
        key = (model, version)
        with self._lock:
            if key in self._loaded:
                self._held[key] += 1
                return self._loaded[key]
        folder = fetch_version(model, version, self._workdir / model / version)
        loaded = self.pool.load(model, version, folder, registered_base(model, version, self.client))
        with self._lock:
            self._loaded.setdefault(key, loaded)
            self._held[key] += 1
            return self._loaded[key]

    def _retire_unused(self) -> None:
        """Free versions no alias serves (or served just before), no pin holds and no request uses."""
        with self._lock:
            used = {(m, v) for (m, _), v in self._routes.items()}
            used |= {(m, v) for m, pins in self._pinned.items() for v in pins}
            used |= {(m, v) for (m, _), v in self._previous.items()}
            gone = [k for k in self._loaded if k not in used and self._inflight[k] == 0 and self._held[k] <= 0]
            retired = [self._loaded.pop(k) for k in gone]
        for loaded in retired:
            log.info("%s v%s unloaded (no alias serves it, no request uses it)", loaded.model, loaded.version)
            self.batcher.post(lambda loaded=loaded: self.pool.unload(loaded))

    # ---- requests -------------------------------------------------------------------
    def admit(self, req: PredictRequest, client_key: str | None = None) -> tuple[Loaded, str | None, bool]:
        """The loaded version a request runs on (counted in flight until release), the alias it
        came through, and whether the canary split chose it: a request naming no alias and no
        version goes to the canary for `share` of the keys (or at random without a key)."""
        alias = None
        if req.version is None:
            alias = req.alias or self.settings.default_alias
            with self._lock:
                split = req.alias is None and (req.model, CANARY) in self._routes
                if split and goes_to_canary(req.model, self._canary_route(req.model), req.client or client_key,
                                            self._rng):
                    alias = CANARY
                version = self._routes.get((req.model, alias))
                if version is None:
                    refusal = self._refused.get((req.model, alias))
                    raise RequestError(503, f"{req.model} has no @{alias} loaded"
                                       + (f" (v{refusal.version} was refused: {refusal.reason})" if refusal else
                                          " (the registry has no such alias for it yet)"))
                loaded = self._loaded[(req.model, version)]
                self._inflight[loaded.key] += 1
            return loaded, alias, split
        return self._load_pinned(req.model, req.version), None, False

    def is_loaded(self, model: str, version: str) -> bool:
        with self._lock:
            return (model, version) in self._loaded

    def _canary_route(self, model: str) -> CanaryRoute | None:
        """The split as loaded here: the share the registry says, the version this replica holds."""
        canary = self._canary.get(model)
        return CanaryRoute(self._routes[(model, CANARY)], canary.share) if canary else None

    def _load_pinned(self, model: str, version: str) -> Loaded:
        """A version asked for by number (counted in flight), loaded on demand and pinned;
        the least recently asked-for pin goes beyond serving.max_extra_versions."""
        with self._lock:
            if (model, version) in self._loaded:
                pins = self._pinned[model]
                if version in pins:
                    pins.move_to_end(version)
                self._inflight[(model, version)] += 1
                return self._loaded[(model, version)]
            failed = self._failed_versions.get((model, version))
        if failed:
            raise RequestError(409, f"{model} v{version} cannot be served: {failed}")
        if self.settings.max_extra_versions == 0:
            raise RequestError(404, f"{model} v{version} is not loaded and serving.max_extra_versions is 0; "
                                    f"ask for an alias ({', '.join(self.settings.aliases)})")
        try:
            self.client.get_model_version(model, version)
        except MlflowException as exc:
            raise RequestError(404, f"{model} has no version {version}") from exc
        with self._lock:   # loads run one at a time: a client cycling version numbers waits in line, bounded
            if self._pending_loads >= self.settings.max_pending_loads:
                raise RequestError(503, f"{self._pending_loads} version loads are waiting "
                                        f"(serving.max_pending_loads); retry shortly")
            self._pending_loads += 1
        try:
            loaded = self._ensure_loaded(model, version)
        except Exception as exc:
            reason = public_reason(exc)
            with self._lock:
                self._failed_versions[(model, version)] = reason
            self.metrics.refusals.labels(model).inc()
            log.error("REFUSED %s v%s (asked for by number): %s: %s", model, version, type(exc).__name__, exc)
            raise RequestError(409, f"{model} v{version} cannot be served: {reason}") from exc
        finally:
            with self._lock:
                self._pending_loads -= 1
        with self._lock:
            pins = self._pinned[model]
            pins[version] = None
            while len(pins) > self.settings.max_extra_versions:
                pins.popitem(last=False)
            self._held[loaded.key] -= 1
            self._inflight[loaded.key] += 1
        self._retire_unused()
        return loaded

    def release(self, loaded: Loaded) -> None:
        with self._lock:
            self._inflight[loaded.key] -= 1
            idle = self._inflight[loaded.key] == 0
        if idle:
            self._retire_unused()

    def _run_batch(self, target, texts: list[str]):
        if isinstance(target, GenerateTarget):
            return self.pool.generate(target.loaded, texts, self.settings.max_batch, target.max_new_tokens)
        return list(self.pool.predict(target, texts, self.settings.max_batch))

    @staticmethod
    def _mix_key(target) -> str | None:
        """/predict requests to versions with one mix key share forward passes (Pool.predict_mixed)."""
        return target.mix or None if isinstance(target, Loaded) else None

    def _run_mixed(self, items: list[tuple[Loaded, list[str]]]):
        return [list(p) for p in self.pool.predict_mixed(items, self.settings.max_batch)]

    def submit_generate(self, loaded: Loaded, texts: list[str], max_new_tokens: int):
        """Queue texts for generation; requests merge into one batch per version and token cap."""
        return self.batcher.submit((*loaded.key, "generate", max_new_tokens), GenerateTarget(loaded, max_new_tokens),
                                   texts)

    def answer_generation(self, loaded: Loaded, alias: str | None, outputs: list[str]) -> dict[str, Any]:
        """The outputs as the policy lets them through (blocked ones null, with their rules)."""
        shown, verdicts = guard_outputs(self.policy, self.metrics, loaded.model, loaded.version, outputs)
        return {"model": loaded.model, "version": loaded.version, "alias": alias,
                "strategy": loaded.manifest.strategy, "outputs": shown, "policy": verdicts}

    def answer(self, loaded: Loaded, alias: str | None, probs) -> dict[str, Any]:
        labels = loaded.manifest.labels
        return {"model": loaded.model, "version": loaded.version, "alias": alias,
                "strategy": loaded.manifest.strategy,
                "predictions": [guard_prediction(self.policy, self.metrics, loaded.model, loaded.version, i,
                                                 labels[int(p.argmax())],
                                                 {label: float(x) for label, x in zip(labels, p)})
                                for i, p in enumerate(probs)]}

    # ---- what is loaded, and health -----------------------------------------------
    def describe_models(self) -> list[dict[str, Any]]:
        with self._lock:
            aliases: dict[tuple[str, str], list[str]] = {}
            for (m, a), v in self._routes.items():
                aliases.setdefault((m, v), []).append(a)
            previous = {(m, v) for (m, _), v in self._previous.items()}
            return [{**loaded.describe(), "aliases": sorted(aliases.get(key, [])),
                     "pinned": key[1] in self._pinned.get(key[0], {}), "previous": key in previous,
                     "in_flight": self._inflight[key]}
                    for key, loaded in sorted(self._loaded.items(), key=lambda kv: (kv[0][0], int(kv[0][1])))]

    def health(self) -> dict[str, Any]:
        with self._lock:
            models = {}
            degraded = self.poll_error is not None
            for m in self.models:
                serving = {a: self._routes.get((m, a)) for a in self.settings.aliases}
                refused = [asdict(r) for (mm, _), r in self._refused.items() if mm == m]
                degraded |= bool(refused) or serving[self.settings.default_alias] is None
                canary = self._canary_route(m) if (m, CANARY) in self._routes else None
                models[m] = {"serving": serving, "refused": refused,
                             "canary": {"version": canary.version, "share": canary.share} if canary else None}
        return {"status": "degraded" if degraded else "ok", "models": models, "last_poll": self.last_poll,
                "poll_error": self.poll_error, "poll_seconds": self.settings.poll_seconds,
                "shared_bases": self.pool.groups()}
