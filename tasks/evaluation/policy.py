"""The output policy (params `policy:`, tasks/config/policy.py) as one checker: evaluation counts
what it would block on every strategy's outputs, and serving applies the very same object to
every answer. A verdict names the rules an output broke, never the text that broke them.

Personal data is found by Presidio's pattern recognisers (a maintained library; no spaCy model
is loaded or downloaded): e-mail, phone numbers (Google's libphonenumber port), payment cards
(regex + Luhn) and IBANs (regex + the ISO 7064 checksum).

Every rule is matched on the text as written and on its folded form (tasks/evaluation/normalize.py:
NFKC, invisible characters removed, Cyrillic / Greek look-alikes folded, doubled spaces and hyphens
collapsed), so `ＡＣＭＥ bank`, `Ac\u200bme bank` or `Асme  bank` break the rule `acme bank` does."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

from tasks.config import PolicySettings
from tasks.evaluation.normalize import forms


@dataclass(frozen=True)
class Verdict:
    rules: tuple[str, ...] = ()   # the rules the output broke (empty: it may be shown)

    @property
    def blocked(self) -> bool:
        return bool(self.rules)


def _offline_email_recognizer():
    """Presidio's e-mail recogniser validates the domain with tldextract, whose default
    extractor fetches the public suffix list over HTTP on first use; this one reads the list
    bundled with tldextract and never goes to the network."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def _recognizer(kind: str):
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, IbanRecognizer, PhoneRecognizer

    if kind == "email":
        return _offline_email_recognizer()
    return {"phone": PhoneRecognizer, "payment_card": CreditCardRecognizer, "iban": IbanRecognizer}[kind]()


class OutputPolicy:
    """`check(text)` -> Verdict; `abstains(confidence)` for classification."""

    def __init__(self, settings: PolicySettings):
        self.settings = settings
        self.rules = settings.rules()
        self._deny = [(f"deny_{name}", re.compile(p)) for name, p in settings.deny.items()] if settings.enabled else []
        self._recognizers: list | None = None   # built on first use: importing Presidio takes ~1 s
        self._redactors: list | None = None
        self._lock = threading.Lock()

    def _personal_data(self) -> list:
        with self._lock:
            if self._recognizers is None:
                kinds = self.settings.personal_data if self.settings.enabled else []
                self._recognizers = [(f"personal_data_{k}", _recognizer(k)) for k in kinds]
            return self._recognizers

    def check(self, text: str) -> Verdict:
        """Every rule on a generated text."""
        if not self.settings.enabled:
            return Verdict()
        broken = []
        if self.settings.max_output_chars and len(text) > self.settings.max_output_chars:
            broken.append("max_length")
        broken += self.check_label(text).rules
        floor = self.settings.min_personal_data_score
        for rule, recognizer in self._personal_data():
            if any(r.score >= floor for form in forms(text)
                   for r in recognizer.analyze(form, entities=recognizer.supported_entities, nlp_artifacts=None) or []):
                broken.append(rule)
        return Verdict(tuple(broken))

    def redact(self, text: str) -> str:
        """`text` with every personal-data span the policy's recognisers find replaced by its kind
        (`<EMAIL>`, `<PHONE>`, ...): what the outcome store keeps with outcomes.store_texts. Applied
        even with policy.enabled false (storing text is the riskier act), on the text as written:
        a span hidden by look-alike characters is found by check(), not here (docs/feedback.md)."""
        with self._lock:
            if self._redactors is None:
                self._redactors = [(k.upper(), _recognizer(k)) for k in self.settings.personal_data]
        floor = self.settings.min_personal_data_score
        spans = sorted({(r.start, r.end, kind) for kind, recognizer in self._redactors
                        for r in recognizer.analyze(text, entities=recognizer.supported_entities, nlp_artifacts=None) or []
                        if r.score >= floor})
        out, at = [], 0
        for start, end, kind in spans:
            if start < at:   # overlapping spans: the first one's tag stands for both
                at = max(at, end)
                continue
            out += [text[at:start], f"<{kind}>"]
            at = end
        return "".join(out) + text[at:]

    def check_label(self, label: str) -> Verdict:
        """A classifier answers one of the labels it was trained on: the deny patterns apply to
        it; the length and personal-data rules are for text a model writes."""
        written = forms(label)
        return Verdict(tuple(rule for rule, pattern in self._deny if any(pattern.search(f) for f in written)))

    def abstains(self, confidence: float) -> bool:
        floor = self.settings.min_confidence
        return self.settings.enabled and floor is not None and confidence < floor


def violation_metrics(verdicts: list[Verdict], rules: list[str], prefix: str) -> dict[str, float]:
    """{prefix}policy_violation_rate (the share of outputs blocked by any rule) and one
    {prefix}policy_violations_<rule> share per rule."""
    n = max(len(verdicts), 1)
    out = {f"{prefix}policy_violation_rate": sum(v.blocked for v in verdicts) / n}
    for rule in rules:
        out[f"{prefix}policy_violations_{rule}"] = sum(rule in v.rules for v in verdicts) / n
    return out


def abstention_metrics(probs: np.ndarray, y_true: np.ndarray, policy: OutputPolicy, prefix: str) -> dict[str, float]:
    """{prefix}abstention_rate and {prefix}answered_accuracy (accuracy on what was not abstained;
    left out when everything abstained). Nothing when the policy never abstains."""
    if policy.settings.min_confidence is None or not policy.settings.enabled:
        return {}
    confidence = probs.max(1)
    answered = np.array([not policy.abstains(float(c)) for c in confidence])
    out = {f"{prefix}abstention_rate": float(1.0 - answered.mean()) if len(answered) else 0.0}
    if answered.any():
        out[f"{prefix}answered_accuracy"] = float((probs.argmax(1)[answered] == y_true[answered]).mean())
    return out


def _with_test_unprefixed(out: dict[str, float]) -> dict[str, float]:
    """The test figures are also logged without a prefix (policy_violation_rate, abstention_rate:
    what the report shows); the val_ ones are what budgets and selection read."""
    return out | {k.removeprefix("test_"): v for k, v in out.items() if k.startswith("test_")}


def text_policy_metrics(policy: OutputPolicy, outputs: dict[str, list[str]]) -> dict[str, float]:
    """Generation: the violation metrics of each split's outputs ({"val_": [...], "test_": [...]})."""
    out = {}
    for prefix, texts in outputs.items():
        out |= violation_metrics([policy.check(t) for t in texts], policy.rules, prefix)
    return _with_test_unprefixed(out)


def label_policy_metrics(policy: OutputPolicy, labels: list[str],
                         scored: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Classification, per split ({"val_": (probs, y_true), ...}): abstentions, the accuracy on
    what was answered, and the text rules applied to the labels answered (a deny-listed label is
    blocked; an abstention shows no label, so it breaks no rule). Only the deny rules can
    apply to a label, so only they get a per-rule share."""
    by_label = [policy.check_label(label) for label in labels]
    rules = [r for r in policy.rules if r.startswith("deny_")]
    out = {}
    for prefix, (probs, y_true) in scored.items():
        shown = [by_label[int(p.argmax())] if not policy.abstains(float(p.max())) else Verdict() for p in probs]
        out |= violation_metrics(shown, rules, prefix) | abstention_metrics(probs, y_true, policy, prefix)
    return _with_test_unprefixed(out)
