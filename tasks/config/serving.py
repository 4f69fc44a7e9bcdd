"""The `serving:` section of params.yaml: how `adaptflow serve` answers (tasks/serving/ acts on it)."""
from __future__ import annotations

from dataclasses import dataclass, field

from tasks.config.schema import require


@dataclass(frozen=True)
class ServingSettings:
    host: str = "127.0.0.1"          # loopback unless a deployment says otherwise
    port: int = 8000
    # Aliases the service follows for each model; requests name one of them (default: the first).
    aliases: list[str] = field(default_factory=lambda: ["champion", "challenger"])
    poll_seconds: float = 5.0        # how often the registry is asked where the aliases point
    max_texts: int = 64              # per request
    max_chars: int = 2000            # per text; the longest Rotten Tomatoes snippet is ~300
    batch_wait_ms: float = 5.0       # how long the first queued request waits for company
    max_batch: int = 32              # texts per forward pass
    merged: list[str] = field(default_factory=list)   # models whose LoRA/IA3 versions serve merged
    # Requests for different LoRA versions on one shared base run in one forward pass, each text
    # through its own adapter (PEFT's mixed adapter batches). false: one version per batch,
    # switched between batches (IA3, prompt tuning and `adapters` versions are always served so).
    mixed_batches: bool = True
    threads: int = 2                 # torch intra-op threads (this machine has 2 cores)
    max_extra_versions: int = 2      # versions asked for by number, kept loaded per model (LRU)
    # The version an alias served before a swap stays loaded, so a rollback is a route change
    # (~0.1 s) instead of a download and load (~0.4 s for a tiny LoRA, more for a full model).
    keep_previous: bool = True
    # POST /generate: the most new tokens a request may ask for (and the default); a version's own
    # generation.max_new_tokens bounds it further.
    max_new_tokens: int = 64
    # Limits that keep one client from failing everyone's requests (tasks/serving/app.py).
    max_body_bytes: int = 1_048_576  # a body is refused (413) past this, before it is parsed
    max_queue_texts: int = 1024      # texts waiting for the model; more: 503 with Retry-After
    request_timeout_seconds: float = 30.0   # a request not answered by then: 503 with Retry-After
    max_connections: int = 64        # uvicorn's limit_concurrency: more at once get 503
    max_pending_loads: int = 2       # requests waiting for a version asked for by number to load
    # The environment variable holding a bearer token for /predict (None: no token asked). The
    # token itself never goes into params.
    token_env: str | None = None
    # A host other than loopback with no token_env is refused at start; true says a proxy in front
    # authenticates (tasks/serving/exposure.py).
    allow_unauthenticated_network: bool = False
    # A request body not fully received by then: 408 and the connection closes, so slow senders
    # cannot hold every connection (max_connections) for everyone else.
    body_timeout_seconds: float = 10.0
    # Loads of versions asked for by number, per client address: load_burst at once, then
    # load_rate_per_minute (429 with Retry-After past it). A version already loaded costs nothing.
    load_rate_per_minute: float = 6.0
    load_burst: int = 3

    def __post_init__(self):
        require(bool(self.host.strip()), "host must not be empty")
        require(0 < self.port < 65536, f"port must be in 1..65535, got {self.port}")
        require(bool(self.aliases) and all(isinstance(a, str) and a.strip() for a in self.aliases),
                 "aliases must list at least one alias name (the first is the default)")
        require(len(set(self.aliases)) == len(self.aliases), "aliases must be unique")
        require(self.poll_seconds > 0, "poll_seconds must be positive")
        require(self.max_texts > 0 and self.max_chars > 0, "max_texts and max_chars must be positive")
        require(self.batch_wait_ms >= 0, "batch_wait_ms must be >= 0")
        require(self.max_batch > 0, "max_batch must be positive")
        require(all(isinstance(m, str) and m.strip() for m in self.merged),
                 "merged must list registered model names")
        require(self.threads > 0, "threads must be positive")
        require(self.max_extra_versions >= 0, "max_extra_versions must be >= 0")
        require(self.max_new_tokens > 0, "max_new_tokens must be positive")
        require(self.max_body_bytes > 0 and self.max_queue_texts >= self.max_texts,
                 "max_body_bytes must be positive and max_queue_texts at least max_texts")
        require(self.request_timeout_seconds > 0 and self.max_connections > 0 and self.max_pending_loads > 0,
                 "request_timeout_seconds, max_connections and max_pending_loads must be positive")
        require(self.body_timeout_seconds > 0 and self.load_rate_per_minute > 0 and self.load_burst >= 1,
                 "body_timeout_seconds and load_rate_per_minute must be positive and load_burst at least 1")
        require(self.token_env is None or (isinstance(self.token_env, str) and self.token_env.strip() != ""),
                 "token_env must name an environment variable (or be null)")

    @property
    def default_alias(self) -> str:
        return self.aliases[0]
