"""The `policy:` section of params.yaml: the rules every output must pass before a user sees it.
One definition, applied the same way to the test outputs in evaluation and to every answer in
serving (tasks/evaluation/policy.py checks it)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from tasks.config.schema import require

# Personal-data kinds the policy can look for (Presidio's pattern recognisers; a payment card
# counts only when its digits pass the Luhn check, an IBAN only when its checksum does).
PERSONAL_DATA = ("email", "phone", "payment_card", "iban")
_RULE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


@dataclass(frozen=True)
class PolicySettings:
    enabled: bool = True
    # Generated text longer than this many characters is blocked (null: no limit). Headlines are
    # ~40 characters; 24 new tokens write at most ~150.
    max_output_chars: int | None = 400
    # name -> regular expression (Python syntax, searched in the output; add (?i) for any case).
    # A match blocks the output; the name is what a blocked response and /metrics report. Matched on
    # the text as written and on its folded form (NFKC, no zero-width characters, Cyrillic/Greek
    # look-alikes as Latin, one space / hyphen between words: tasks/evaluation/normalize.py), so
    # write patterns for plain text.
    deny: dict[str, str] = field(default_factory=dict)
    personal_data: list[str] = field(default_factory=lambda: list(PERSONAL_DATA))
    # Presidio scores a validated match 1.0 and a phone number 0.4; below this it is not counted.
    min_personal_data_score: float = 0.4
    # Classification: a top probability below this abstains ("route to a person") instead of
    # answering (null: always answer).
    min_confidence: float | None = None

    def __post_init__(self):
        require(self.max_output_chars is None or self.max_output_chars > 0,
                "max_output_chars must be positive (or null: no limit)")
        require(isinstance(self.deny, dict), "deny must map a rule name to a regular expression")
        for name, pattern in self.deny.items():
            require(isinstance(name, str) and bool(_RULE_NAME.match(name)),
                    f"deny: rule name {name!r} must be a letter then letters, digits or _ (at most 40)")
            require(isinstance(pattern, str) and pattern != "", f"deny.{name} must be a non-empty regular expression")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"deny.{name}: {pattern!r} is not a valid regular expression: {exc}") from exc
        unknown = [k for k in self.personal_data if k not in PERSONAL_DATA]
        require(not unknown, f"personal_data: unknown kind(s) {', '.join(map(str, unknown))}; "
                             f"known: {', '.join(PERSONAL_DATA)}")
        require(0 < self.min_personal_data_score <= 1, "min_personal_data_score must be in (0, 1]")
        require(self.min_confidence is None or 0 < self.min_confidence < 1,
                "min_confidence must be in (0, 1) (or null: never abstain)")

    def rules(self) -> list[str]:
        """Every rule name this policy can report (the per-rule metrics and /metrics labels)."""
        if not self.enabled:
            return []
        out = ["max_length"] if self.max_output_chars else []
        return out + [f"deny_{n}" for n in self.deny] + [f"personal_data_{k}" for k in self.personal_data]
