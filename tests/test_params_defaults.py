"""Strategy defaults are stated once, in each strategy's params dataclass: params.yaml holds only
what this project changes (the base file, each profile, and generation.strategies alike)."""
from __future__ import annotations

from dataclasses import fields

import yaml
from conftest import ROOT

from tasks.config import load_settings
from tasks.strategies import registry
from tasks.strategies.with_retrieval import RetrievalFields


def _defaults(cls: type) -> dict:
    return {f.name: registry.field_default(f) for f in fields(cls)}


def _strategy_sections(raw: dict):
    """(where, task, its strategy sections, the sections it is merged onto) for the base file and
    each profile, at each task type's strategies_section (strategies; generation.strategies)."""
    from tasks.config.load import section_at
    from tasks.tasktypes import names, task_type

    tasks = {task_type(t).strategies_section: t for t in names()}
    base = {where: section_at(raw, where) for where in tasks}
    for where, sections in base.items():
        yield where, tasks[where], sections, {}
    for name, profile in (raw.get("profiles") or {}).items():
        for where in tasks:
            yield f"profiles.{name}.{where}", tasks[where], section_at(profile, where), base[where]


def settings_equal_to_what_applies_anyway(raw: dict) -> list[str]:
    """Every strategy setting whose value is what would apply without it: the dataclass default,
    or, in a profile, the value the base file already sets."""
    same = []
    for where, task, sections, inherited in _strategy_sections(raw):
        for name, section in sections.items():
            if name == "run":
                continue
            defaults = _defaults(registry.get(name, task).params_cls)
            below = inherited.get(name) or {}
            for key, value in (section or {}).items():
                if key == "retrieval":   # `<name>+retrieval`'s option: RetrievalFields' defaults
                    option_defaults, option_below = _defaults(RetrievalFields), below.get("retrieval") or {}
                    same += [f"{where}.{name}.retrieval.{k}" for k, v in value.items()
                             if v == option_below.get(k, option_defaults[k])]
                elif value == below.get(key, defaults[key]):
                    same.append(f"{where}.{name}.{key}")
    return same


def test_params_yaml_states_only_what_differs_from_the_strategy_defaults():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    same = settings_equal_to_what_applies_anyway(raw)
    assert not same, f"params.yaml repeats a default (drop it; `adaptflow strategies` shows it): {same}"
    # The check itself finds a copied default, a copied few-shot template and a profile repeating the base.
    from tasks.strategies.few_shot import DEFAULT_TEMPLATES

    copied = {"strategies": {"lora": {"r": 8, "target_modules": ["query"], "retrieval": {"k": 4}},
                             "few_shot": {"templates": DEFAULT_TEMPLATES}},
              "generation": {"strategies": {"few_shot": {"k": 3}}},
              "profiles": {"p": {"strategies": {"lora": {"target_modules": ["query"]}}}}}
    assert settings_equal_to_what_applies_anyway(copied) == [
        "strategies.lora.r", "strategies.lora.retrieval.k", "strategies.few_shot.templates",
        "generation.strategies.few_shot.k", "profiles.p.strategies.lora.target_modules"]


def test_the_demo_prompt_tuning_starts_from_its_movie_review_question():
    """The demo's prompt tuning starts where it did when this question was the code's default:
    the data are movie reviews, so params.yaml says so (the default states the task instead)."""
    for profile in (None, "smoke", "causal"):
        params = load_settings(ROOT / "params.yaml", profile, ["prompt_tuning"]).strategy_params["prompt_tuning"]
        assert params.init_text == "Is this movie review positive or negative?"
