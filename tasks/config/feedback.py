"""The `feedback:` and `drift:` sections of params.yaml: what POST /feedback accepts (its bounds
and the rules against a poisoned batch), where fold-feedback writes the feedback table, and how
live inputs are checked for drift (tasks/outcomes/feedback.py, tasks/data/feedback*.py and
tasks/release/drift.py act on them; docs/feedback.md)."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.config.schema import require


@dataclass(frozen=True)
class FeedbackSettings:
    enabled: bool = True
    # A corrected output longer than this is refused (413); so is feedback on an input longer than
    # max_input_chars: one over-long text must not outweigh hundreds of ordinary ones in training.
    max_text_chars: int = 2000
    max_input_chars: int = 2000
    # The rules against one client poisoning the data, over the last `window_hours` of its feedback:
    # at most `max_per_client` accepted rows (then 429), and once it has sent `flood_min_rows`, no
    # more of one label than `flood_max_share` of them (a flood of one label is refused, 429).
    window_hours: float = 24.0
    max_per_client: int = 1000
    flood_min_rows: int = 50
    flood_max_share: float = 0.8
    # Where fold-feedback writes the feedback table (a CSV under the project, tracked by DVC).
    folder: str = "data/feedback"
    # Feedback quality as a retrain trigger, judged by the drift check each time it runs
    # (tasks/release/feedback_quality.py): over the @champion version's latest quality_window_rows
    # accepted feedback rows (the poisoning rules replayed first), the task type's quality (the share
    # of labels that agree with the label shown; generation: ratings scaled to 0..1). When even the
    # upper end of its one-sided (1 - quality_alpha) interval is under retrain_below_quality, `retrain`
    # starts with the finding as its trigger. None: the trigger is off. Users correct wrong answers
    # more often than they confirm right ones, so this agreement sits under the test accuracy: set it
    # from what the feedback of a version known to be good looks like (docs/feedback.md).
    retrain_below_quality: float | None = None
    quality_window_rows: int = 500
    quality_min_rows: int = 100        # fewer judging rows than this: no verdict
    quality_alpha: float = 0.05

    def __post_init__(self):
        require(self.max_text_chars > 0 and self.max_input_chars > 0, "max_text_chars and max_input_chars must be positive")
        require(self.window_hours > 0, "window_hours must be positive")
        require(self.max_per_client >= 1, "max_per_client must be >= 1")
        require(self.flood_min_rows >= 1, "flood_min_rows must be >= 1")
        require(0 < self.flood_max_share <= 1, "flood_max_share must be in (0, 1]")
        require(bool(self.folder.strip()), "folder must be a path under the project")
        require(self.retrain_below_quality is None or 0 < self.retrain_below_quality <= 1,
                "retrain_below_quality must be null (off) or in (0, 1]")
        require(self.quality_min_rows >= 10, "quality_min_rows must be >= 10")
        require(self.quality_window_rows >= self.quality_min_rows, "quality_window_rows must be >= quality_min_rows")
        require(0 < self.quality_alpha < 0.5, "quality_alpha must be in (0, 0.5)")


@dataclass(frozen=True)
class DriftSettings:
    # Each check compares the latest `window_requests` answered requests of a model (their stored
    # texts: outcomes.store_texts) with `reference_rows` rows of the validation split it was trained on.
    enabled: bool = True
    window_requests: int = 500
    min_requests: int = 100            # fewer stored requests than this: no verdict yet
    reference_rows: int = 500
    # The false-alarm rate per window (split over the three tests, Bonferroni); the MMD test's
    # permutations must allow a p-value under alpha / 3.
    alpha: float = 0.01
    permutations: int = 500
    # The embedding test counts only when the (unbiased) MMD² is also at least this: in windows of
    # 500, Rotten Tomatoes reviews of films the reference does not hold were significant on p alone
    # in 26 of 100 windows at MMD² 0.0006-0.0009; BBC headlines measured 0.045 or more, even 10 at a
    # time (bench/drift.py; docs/feedback.md). Chosen after that measurement, on that corpus.
    min_mmd: float = 0.01
    # Drift starts the `retrain` flow with the finding as its trigger (false: the check only reports).
    retrain: bool = False
    # The drift-check deployment's schedule (hourly).
    check_cron: str = "17 * * * *"

    def __post_init__(self):
        require(self.window_requests >= 10 and self.min_requests >= 10, "window_requests and min_requests must be >= 10")
        require(self.reference_rows >= 10, "reference_rows must be >= 10")
        require(0 < self.alpha < 0.5, "alpha must be in (0, 0.5)")
        require(self.min_mmd >= 0, "min_mmd must be >= 0")
        require(self.permutations >= 3 / self.alpha, f"permutations must be at least 3 / alpha = {3 / self.alpha:g} "
                                                     "(else the MMD test can never reach alpha / 3)")
        require(len(self.check_cron.split()) == 5, "check_cron must be a 5-field cron expression")
