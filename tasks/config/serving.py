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
    threads: int = 2                 # torch intra-op threads (this machine has 2 cores)
    max_extra_versions: int = 2      # versions asked for by number, kept loaded per model (LRU)
    # The version an alias served before a swap stays loaded, so a rollback is a route change
    # (~0.1 s) instead of a download and load (~0.4 s for a tiny LoRA, more for a full model).
    keep_previous: bool = True
    # POST /generate: the most new tokens a request may ask for (and the default); a version's own
    # generation.max_new_tokens bounds it further.
    max_new_tokens: int = 64

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

    @property
    def default_alias(self) -> str:
        return self.aliases[0]
