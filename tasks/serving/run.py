"""Starting the service: in the foreground for `adaptflow serve`, or in a thread (tests, bench)."""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

from tasks.config import FeedbackSettings, PolicySettings, ServingSettings
from tasks.outcomes.recorder import Recorder
from tasks.serving.exposure import exposure_problem
from tasks.serving.service import Service, ServingError


def serve(models: list[str], settings: ServingSettings, host: str, port: int,
          policy: PolicySettings | None = None, recorder: Recorder | None = None,
          feedback: FeedbackSettings | None = None) -> None:
    """Load the followed aliases, then answer on host:port until interrupted (Ctrl-C, SIGTERM);
    every answer passes `policy` (params' policy:, as in evaluation) and, with a `recorder`, is
    recorded in the outcome store before it goes."""
    import torch
    import uvicorn

    from tasks.serving.app import create_app, serving_token

    serving_token(settings.token_env)   # a missing token stops us before anything loads
    problem = exposure_problem(host, settings)
    if problem:
        raise ServingError(problem)
    torch.set_num_threads(settings.threads)
    service = Service(models, settings, policy=policy, recorder=recorder, feedback=feedback,
                      replica=f"{socket.gethostname()}:{os.getpid()}:{port}").start()
    try:
        # limit_concurrency: past it uvicorn answers 503 itself, before any work is queued.
        uvicorn.run(create_app(service), host=host, port=port, log_level="info",
                    limit_concurrency=settings.max_connections)
    finally:
        service.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Running:
    service: Service
    server: object
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.service.stop()


def start_in_thread(service: Service, host: str = "127.0.0.1", port: int | None = None,
                    timeout: float = 60) -> Running:
    """uvicorn in a background thread on a free port; returns once it accepts connections."""
    import uvicorn

    from tasks.serving.app import create_app

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(create_app(service), host=host, port=port, log_level="warning",
                                           limit_concurrency=service.settings.max_connections))
    thread = threading.Thread(target=server.run, name="adaptflow-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.05)
    return Running(service, server, thread, f"http://{host}:{port}")
