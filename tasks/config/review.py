"""The `review:` section of params.yaml: where blinded review sessions are kept, the review page's
port, and whether `adaptflow promote` requires a passing human verdict (tasks/review acts on it)."""
from __future__ import annotations

from dataclasses import dataclass, fields

from tasks.config.schema import require


@dataclass(frozen=True)
class HumanReviewRequirement:
    # Judgments (votes) the verdict must rest on: 60 gives a Wilson interval about +/-0.12 wide at 0.5.
    min_judgments: int = 60
    # The lower end of the 95 % interval of the version's win rate (ties count half) must reach
    # this: 0.5 = people preferred it, or at least did not prefer the version it was compared with.
    min_win_rate_lower: float = 0.5
    # Cohen's / Fleiss' kappa on the items every reviewer judged; null: not required. 0.4: "moderate".
    min_agreement: float | None = 0.4

    def __post_init__(self):
        require(self.min_judgments >= 1, "min_judgments must be at least 1")
        require(0 <= self.min_win_rate_lower <= 1, "min_win_rate_lower must be in [0, 1]")
        require(self.min_agreement is None or -1 <= self.min_agreement <= 1, "min_agreement must be in [-1, 1] or null")


@dataclass(frozen=True)
class ReviewSettings:
    # null (the default): promote needs no human verdict. A mapping, e.g. {min_judgments: 60,
    # min_win_rate_lower: 0.5, min_agreement: 0.4}: promote refuses a version without a passing one.
    require_human: HumanReviewRequirement | dict | None = None
    experiment: str = "adaptflow-review"   # the MLflow experiment holding the session runs
    port: int = 8300                       # adaptflow review serve (on 127.0.0.1)

    def __post_init__(self):
        if isinstance(self.require_human, dict):
            known = {f.name for f in fields(HumanReviewRequirement)}
            unknown = sorted(set(self.require_human) - known)
            require(not unknown, f"require_human: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            object.__setattr__(self, "require_human", HumanReviewRequirement(**self.require_human))
        require(self.require_human is None or isinstance(self.require_human, HumanReviewRequirement),
                "require_human must be null or a mapping of min_judgments, min_win_rate_lower, min_agreement")
        require(bool(self.experiment.strip()), "experiment must name an MLflow experiment")
        require(0 < self.port < 65536, "port must be in 1..65535")

