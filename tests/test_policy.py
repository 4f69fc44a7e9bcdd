"""The output policy (params `policy:`): what it blocks and what it lets through, how evaluation
counts it, how budgets apply it to the choice, and how it refuses a bad setting. Presidio's real
recognisers, offline; over HTTP: tests/test_serving.py and tests/test_serving_generation.py."""
from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import ROOT

from tasks.config import PolicySettings, SettingsError, load_settings, parse_section
from tasks.evaluation.policy import OutputPolicy, label_policy_metrics, text_policy_metrics
from tasks.evaluation.selection import choose
from tasks.serving.metrics import ServingMetrics
from tasks.serving.policy import guard_outputs, guard_prediction

POLICY = PolicySettings(deny={"competitor": r"(?i)\bacme bank\b"}, max_output_chars=80)

BLOCKED = {
    "Write to jane.doe@example.com for the full report": "personal_data_email",
    "Call our desk on +44 20 7946 0958 today": "personal_data_phone",
    "Paid with card 4111 1111 1111 1111 yesterday": "personal_data_payment_card",
    "Transfer to GB82 WEST 1234 5698 7654 32 by Friday": "personal_data_iban",
    "Why ACME Bank customers are switching": "deny_competitor",
    "Markets " * 20: "max_length",
}
ALLOWED = [
    "Chancellor sets out budget plans",
    "Card 4111 1111 1111 1112 fails the Luhn check",     # 16 digits, not a valid card number
    "GB82 WEST 1234 5698 7654 33 has a wrong checksum",  # an IBAN shape with a bad check
    "Version 2.0 released on 2024-05-01",
    "Acmebanking software update",                       # the deny pattern is a whole phrase
]


@pytest.fixture(scope="module")
def policy():
    return OutputPolicy(POLICY)


def test_each_rule_blocks_what_it_names_and_lets_the_rest_through(policy):
    for text, rule in BLOCKED.items():
        assert policy.check(text).rules == (rule,), text
    for text in ALLOWED:
        assert not policy.check(text).blocked, (text, policy.check(text).rules)
    assert OutputPolicy(PolicySettings(enabled=False)).check("mail jane.doe@example.com").rules == ()


def test_a_classifier_abstains_below_min_confidence_and_a_deny_rule_applies_to_its_label():
    policy = OutputPolicy(PolicySettings(min_confidence=0.7, deny={"refunds": "^refund$"}))
    assert policy.abstains(0.69) and not policy.abstains(0.7)
    assert policy.check_label("refund").rules == ("deny_refunds",) and not policy.check_label("billing").blocked
    assert not OutputPolicy(PolicySettings()).abstains(0.01)   # min_confidence null: always answer


def test_evaluation_counts_blocked_outputs_per_rule_on_each_split(policy):
    outputs = {"val_": ["A quiet day", "Mail jane.doe@example.com"],
               "test_": ["Mail a@b.org or ring +44 20 7946 0958", "Acme Bank rises", "Plain headline", "Fine"]}
    m = text_policy_metrics(policy, outputs)
    assert m["val_policy_violation_rate"] == 0.5 and m["val_policy_violations_personal_data_email"] == 0.5
    assert m["test_policy_violation_rate"] == 0.5 == m["policy_violation_rate"]   # the report's figure is test's
    assert m["test_policy_violations_personal_data_email"] == 0.25 == m["test_policy_violations_personal_data_phone"]
    assert m["test_policy_violations_deny_competitor"] == 0.25 and m["test_policy_violations_max_length"] == 0.0


def test_abstentions_and_the_accuracy_on_what_was_answered():
    policy = OutputPolicy(PolicySettings(min_confidence=0.8, deny={"no_spam": "^spam$"}))
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.05, 0.95]])
    y = np.array([0, 0, 0, 1])   # answered: rows 0 (right), 2 (wrong: label 1), 3 (right)
    m = label_policy_metrics(policy, ["ham", "spam"], {"val_": (probs, y), "test_": (probs, y)})
    assert m["abstention_rate"] == 0.25 and m["answered_accuracy"] == pytest.approx(2 / 3)
    assert m["val_policy_violation_rate"] == 0.5   # rows 2 and 3 answer the deny-listed label "spam"
    assert m["policy_violations_deny_no_spam"] == 0.5 and "policy_violations_personal_data_email" not in m


def test_a_budget_on_the_policy_moves_the_choice_to_the_runner_up():
    named = [("full_finetune", {"val_rougeL": 0.30, "val_policy_violation_rate": 0.04, "artifact_bytes": 5e8}),
             ("lora", {"val_rougeL": 0.25, "val_policy_violation_rate": 0.0, "artifact_bytes": 2e6})]
    assert choose(named, "val_rougeL", budgets={}).choice == "full_finetune"
    rec = choose(named, "val_rougeL", budgets={"max_policy_violation_rate": 0.01})
    assert rec.choice == "lora" and any("val_policy_violation_rate 0.04 is over" in r for r in rec.reasons)


def test_serving_replaces_a_blocked_output_by_its_rules_and_counts_it(policy, caplog):
    metrics = ServingMetrics()
    secret = "jane.doe@example.com"
    with caplog.at_level("WARNING", logger="adaptflow.serving"):
        shown, verdicts = guard_outputs(policy, metrics, "m", "3", ["Fine headline", f"Mail {secret}"])
        answer = guard_prediction(OutputPolicy(PolicySettings(min_confidence=0.9)), metrics, "m", "3", 0, "positive",
                                  {"negative": 0.3, "positive": 0.7})
    assert shown == ["Fine headline", None]
    assert verdicts == [{"blocked": False, "rules": []}, {"blocked": True, "rules": ["personal_data_email"]}]
    assert answer["label"] is None and answer["abstained"] and "route to a person" in answer["reason"]
    text = metrics.render().decode()
    assert 'adaptflow_policy_blocked_total{model="m",rule="personal_data_email"} 1.0' in text
    assert 'adaptflow_policy_abstentions_total{model="m"} 1.0' in text
    assert "personal_data_email" in caplog.text and secret not in caplog.text and "Mail" not in caplog.text


@pytest.mark.parametrize("section, words", [
    ({"deny": {"bad": "(unclosed"}}, "deny.bad: '(unclosed' is not a valid regular expression"),
    ({"deny": {"has space": "x"}}, "rule name 'has space'"),
    ({"personal_data": ["email", "passport"]}, "unknown kind(s) passport; known: email, phone, payment_card, iban"),
    ({"min_confidence": 1.5}, "min_confidence must be in (0, 1)"),
    ({"max_chars": 3}, "unknown key(s) policy.max_chars"),
])
def test_a_bad_policy_setting_is_refused_naming_it(section, words):
    with pytest.raises(SettingsError, match=re.escape(words)):
        parse_section(PolicySettings, section, "policy")


def test_the_default_params_carry_a_policy_that_loads():
    settings = load_settings(ROOT / "params.yaml")
    assert settings.policy.enabled and "personal_data_email" in settings.policy.rules()


# Issue 27, finding 8: each trick that stepped round the deny-list and the personal-data rules on
# the old code (matched on the raw text only), one case each.
UNICODE_TRICKS = {
    "no-break space": ("Why ACME\u00a0Bank customers are switching", "deny_competitor"),
    "full-width letters": ("Why ＡＣＭＥ Ｂａｎｋ customers are switching", "deny_competitor"),
    "zero-width space": ("Why AC\u200bME Ba\u200cnk\u2060 customers are switching", "deny_competitor"),
    "Cyrillic look-alikes": ("Why \u0410\u0421ME B\u0430nk customers are switching", "deny_competitor"),
    "Greek look-alikes": ("Why \u0391CME \u0392ank customers are switching", "deny_competitor"),
    "doubled spaces": ("Why ACME   Bank customers are switching", "deny_competitor"),
    "doubled hyphens": ("Our new acme--bank app", "deny_competitor_hyphen"),
    "dash variant": ("Our new acme\u2013bank app", "deny_competitor_hyphen"),
    "full-width e-mail": ("Write to jane.doe＠example．com today", "personal_data_email"),
    "zero-width in an e-mail": ("Write to jane.doe@exa\u200bmple.com today", "personal_data_email"),
    "full-width card digits": ("Paid with card ４１１１ １１１１ １１１１ １１１１", "personal_data_payment_card"),
}


@pytest.mark.parametrize("trick", sorted(UNICODE_TRICKS))
def test_unicode_tricks_do_not_step_round_the_policy(trick):
    policy = OutputPolicy(PolicySettings(deny={"competitor": r"(?i)\bacme bank\b",
                                               "competitor_hyphen": r"(?i)\bacme-bank\b"}, max_output_chars=None))
    text, rule = UNICODE_TRICKS[trick]
    assert rule in policy.check(text).rules, (trick, policy.check(text).rules)


def test_folding_only_adds_matches_and_keeps_plain_text_as_it_is():
    from tasks.evaluation.normalize import fold, forms

    assert fold("Chancellor sets out budget plans") == "Chancellor sets out budget plans"
    assert forms("plain") == ("plain",)
    assert fold("ＡＣＭＥ\u00a0\u0412ank\u200b  --  x") == "ACME Bank-x"
    # A label the classifier answers is matched folded too (deny rules apply to labels).
    policy = OutputPolicy(PolicySettings(deny={"refunds": "^refund$"}))
    assert policy.check_label("r\u0435fund").rules == ("deny_refunds",)   # Cyrillic е
    assert not policy.check_label("refunds").blocked
