"""The `feedback:` section of params.yaml: what POST /feedback accepts (its bounds and the rules
against a poisoned batch) and how fold-feedback turns accepted feedback into data
(tasks/outcomes/feedback.py and tasks/data/feedback.py act on them; docs/feedback.md)."""
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

    def __post_init__(self):
        require(self.max_text_chars > 0 and self.max_input_chars > 0, "max_text_chars and max_input_chars must be positive")
        require(self.window_hours > 0, "window_hours must be positive")
        require(self.max_per_client >= 1, "max_per_client must be >= 1")
        require(self.flood_min_rows >= 1, "flood_min_rows must be >= 1")
        require(0 < self.flood_max_share <= 1, "flood_max_share must be in (0, 1]")
        require(bool(self.folder.strip()), "folder must be a path under the project")
