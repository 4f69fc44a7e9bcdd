"""One line of progress at a time for long steps without a bar (tasks/evaluation/progress.py),
and greedy generation reporting through it."""
from __future__ import annotations

from tasks.evaluation.progress import ProgressLines, duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_at_most_every_interval_and_a_closing_line():
    clock, lines = Clock(), []
    progress = ProgressLines("few_shot test: generated", 512, every_seconds=30, write=lines.append, clock=clock)
    for done, at in [(16, 10), (32, 29), (96, 60), (112, 75), (128, 91), (512, 320)]:
        clock.now = at
        progress(done)
    assert lines == ["few_shot test: generated 96/512 (1.6/s, about 4 min 20 s left)",
                     "few_shot test: generated 128/512 (1.4/s, about 4 min 33 s left)",
                     "few_shot test: generated 512/512 in 5 min 20 s"]


def test_a_short_step_writes_nothing():
    clock, lines = Clock(), []
    progress = ProgressLines("lora validation: generated", 64, write=lines.append, clock=clock)
    for done in (16, 32, 48, 64):
        clock.now += 5
        progress(done)
    assert lines == []


def test_durations_read_like_a_person_would_say_them():
    assert [duration(s) for s in (42, 260, 3900)] == ["42 s", "4 min 20 s", "1 h 05 min"]


def test_greedy_generation_reports_each_batch(tiny_llama):
    from tasks.evaluation.generate import generate_texts
    from tasks.models.loading import load_tokenizer
    from tasks.models.prompts import PromptFormat
    from transformers import AutoModelForCausalLM

    seen = []
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    texts = ["a story about markets", "team wins", "short", "a fourth text", "five"]
    out = generate_texts(model, load_tokenizer(tiny_llama), PromptFormat("Be brief.", "Write the headline."), texts, 64, 4, 2,
                         progress=seen.append)
    assert seen == [2, 4, 5] and len(out.texts) == 5
