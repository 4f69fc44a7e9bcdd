"""task: generation -- one strategy's inputs and measurements. The splits are encoded as chat
prompts + targets (loss on the target only); trained strategies go through the same loop as
classification; every strategy then writes greedy outputs for the same test inputs, scored with
ROUGE / chrF / BLEU / exact match / embedding similarity, with cost and risk beside them.
Prompting strategies are scored on every prompt variant; the one best on validation ROUGE-L is
saved, so no choice looks at test."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd
import torch

from tasks.artifacts.manifest import params_dict
from tasks.config import Settings
from tasks.evaluation.cost import PeakRSS, size_metrics
from tasks.evaluation.forgetting import forgetting_metrics
from tasks.evaluation.generate import Generated, generate_texts, latency, prompt_formats
from tasks.evaluation.policy import OutputPolicy, text_policy_metrics
from tasks.evaluation.progress import ProgressLines
from tasks.evaluation.text_metrics import (
    TextScores,
    quality_metrics,
    risk_metrics,
    text_scores,
)
from tasks.models.base import ResolvedBase
from tasks.models.heads import Head
from tasks.models.loading import load_tokenizer
from tasks.models.precision import autocast_in
from tasks.models.prompts import PromptFormat, encode_pairs
from tasks.models.subset import subset_indices
from tasks.strategies import registry
from tasks.training.fitting import build_and_train, kept_val_loss
from tasks.training.hardware import check_hardware, evaluation_precision, generation_precision, threads_per_process
from tasks.training.loop import TrainResult, mean_loss, seed_everything
from tasks.training.strategy_run import STAGE, GenerationDetails, Outcome, StrategyInputs, TrainingPart
from tasks.tasktypes import register_part, task_type


def run_prompt(settings: Settings) -> PromptFormat:
    g = settings.generation
    return PromptFormat(g.system_prompt, g.instruction)


def with_run_prompt(params, fmt: PromptFormat):
    """Prompting params whose instruction / system prompt are left empty take the run's."""
    names = {f.name for f in fields(params)}
    change = {k: getattr(fmt, k) for k in ("instruction", "system_prompt") if k in names and not getattr(params, k)}
    return replace(params, **change) if change else params


def prepare_generation_inputs(settings: Settings, base: ResolvedBase, frames: dict[str, pd.DataFrame], name: str
                              ) -> StrategyInputs:
    strategy = registry.get(name, settings.task)
    fmt = run_prompt(settings)
    params = with_run_prompt(settings.strategy_params[name], fmt)
    cfg, g = settings.train, settings.generation
    hardware = check_hardware(cfg)
    torch.set_num_threads(threads_per_process(cfg, hardware))
    tokenizer = load_tokenizer(base.path)
    limits = {"train": cfg.max_train_examples, "validation": cfg.max_eval_examples, "test": cfg.max_eval_examples}
    positions = {split: subset_indices(len(frame), limits[split], cfg.seed) for split, frame in frames.items()}
    picked = {split: frame.iloc[positions[split]] for split, frame in frames.items()}
    formats, max_length = {split: fmt for split in frames}, settings.model.max_length
    if strategy.retrieves:   # `<name>+retrieval`: each example's neighbours as earlier turns
        from tasks.strategies.retrieval_index import generation_formats
        from tasks.strategies.with_retrieval import attach_index, split_neighbours

        params = attach_index(params, frames["train"], task_type(settings.task).answer_column)
        # Only the rows the limits keep are searched; a train row's position in frames["train"]
        # is its id in the index, so it never retrieves itself.
        found = split_neighbours(params, picked, [int(i) for i in positions["train"]])
        formats = {split: generation_formats(rows, fmt, params.demo_max_chars) for split, rows in found.items()}
        max_length += params.context_tokens
    splits = {split: encode_pairs(tokenizer, formats[split], rows["text"].astype(str).tolist(),
                                  rows["target"].astype(str).tolist(), max_length, g.max_target_tokens)
              for split, rows in picked.items()}
    return StrategyInputs(name=name, strategy=strategy, params=params, base=base, tokenizer=tokenizer, labels=[],
                          splits=splits, train_frame=frames["train"], hardware=hardware,
                          head=Head.for_task(settings.task, instruction=fmt.instruction), prompt=fmt,
                          generation_precision=generation_precision(g.precision, hardware)[0])


def _generate(model, inputs: StrategyInputs, settings: Settings, split: str) -> Generated:
    g, data = settings.generation, inputs.splits[split]
    return generate_texts(model, inputs.tokenizer, inputs.prompt, list(data.sources), settings.model.max_length,
                          g.max_new_tokens, g.batch_size,   # no bar here: a line every 30 s of a long split
                          ProgressLines(f"{inputs.name} {split}: generated", len(data.sources)), g.batch_tokens,
                          inputs.generation_precision)


def _score(model, inputs: StrategyInputs, settings: Settings, split: str) -> tuple[Generated, TextScores]:
    out = _generate(model, inputs, settings, split)
    return out, text_scores(out.texts, list(inputs.splits[split].references))


@dataclass(frozen=True)
class GenerationVariants:
    rows: list[dict]             # per variant: index, params, validation and test ROUGE-L
    chosen: int                  # the variant best on validation ROUGE-L
    model: object
    params: object
    test: tuple[Generated, TextScores]   # the chosen variant's test outputs and scores
    val_texts: list[str]         # the chosen variant's validation outputs (the policy's val_ figures)

    def metrics(self) -> dict[str, float]:
        scores = np.array([r["test"]["rougeL"] for r in self.rows])
        chosen = self.rows[self.chosen]["validation"]   # selection reads the saved variant's validation score
        return {"val_rougeL": chosen["rougeL"], "val_chrf": chosen["chrf"],
                "prompt_variant_std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
                "prompt_variant_mean_rougeL": float(scores.mean()), "chosen_variant": float(self.chosen)}


def score_generation_variants(inputs: StrategyInputs, settings: Settings) -> GenerationVariants:
    rows, best = [], None
    for i, variant in enumerate(inputs.strategy.variants(inputs.params, inputs.train_frame, [])):
        model = inputs.strategy.build(inputs.base.path, inputs.head, variant)
        val_out, val = _score(model, inputs, settings, "validation")
        test = _score(model, inputs, settings, "test")
        rows.append({"variant": i, "params": params_dict(variant), "validation": {"rougeL": float(val.rougeL.mean()), "chrf": float(val.chrf.mean())},
                     "test": {"rougeL": float(test[1].rougeL.mean()), "chrf": float(test[1].chrf.mean())}})
        if best is None or val.rougeL.mean() > best[0]:
            best = (val.rougeL.mean(), i, model, variant, test, val_out.texts)
    return GenerationVariants(rows, best[1], best[2], best[3], best[4], best[5])


def _perplexity(model, inputs: StrategyInputs, settings: Settings, training: TrainResult | None = None) -> float:
    """exp(mean validation loss per target token), each strategy with its own prompt (few-shot
    demonstrations make a prompt longer than model.max_length, which bounds training examples,
    not what a frozen model may read: up to the 1,024 tokens its prompts need), in the run's
    evaluation precision (hardware.py: the training precision on a CPU run). A trained model's
    loss is the check that kept its weights (`training`, the loop's TrainResult): the same data,
    weights and precision, so not run again (one pass over the headlines profile's 100 validation
    examples: 8.3 s in fp32, 3.9 s in bf16 on an AMX Xeon, bench/eval_precision.py)."""
    data, precision = inputs.splits["validation"], evaluation_precision(inputs.hardware)
    formats = prompt_formats(model, inputs.prompt, list(data.sources))
    if any(f != inputs.prompt for f in formats):
        data = encode_pairs(inputs.tokenizer, formats, list(data.sources), list(data.references),
                            max(settings.model.max_length, 1024), settings.generation.max_target_tokens)
    elif (kept := kept_val_loss(training, precision)) is not None:
        return float(np.exp(kept))
    with autocast_in(model, precision):
        return float(np.exp(mean_loss(model, data, settings.train.batch_size, inputs.pad_id)))


def compute_generation(inputs: StrategyInputs, settings: Settings) -> Outcome:
    """Train (or score every prompt variant), generate on test, then cost and risk."""
    cfg, g = settings.train, settings.generation
    seed_everything(cfg.seed)
    with PeakRSS() as rss:
        variants, training = None, None
        if inputs.strategy.variants is None:
            trained, params = build_and_train(inputs, cfg, inputs.name), inputs.params
            model, training, metrics = trained.model, trained.training, dict(trained.metrics)
            val_out, val = _score(model, inputs, settings, "validation")
            val_texts = val_out.texts
            metrics |= {"val_rougeL": float(val.rougeL.mean()), "val_chrf": float(val.chrf.mean())}
            out, scores = _score(model, inputs, settings, "test")
        else:
            variants = score_generation_variants(inputs, settings)
            model, params, (out, scores) = variants.model, variants.params, variants.test
            val_texts = variants.val_texts
            metrics = size_metrics(model) | variants.metrics()
        metrics |= quality_metrics(scores, cfg.seed) | risk_metrics(out.texts, out.hit_cap)
        metrics |= {"val_perplexity": _perplexity(model, inputs, settings, training),
                    "generation_seconds": out.seconds,
                    "throughput_examples_per_s": len(out.texts) / max(out.seconds, 1e-9)}
        sample = list(inputs.splits["test"].sources)[: g.latency_examples]
        metrics |= latency(model, inputs.tokenizer, inputs.prompt, sample, settings.model.max_length, g.max_new_tokens,
                           inputs.generation_precision)
        measure = inputs.strategy.retrieval_metrics   # a retrieving strategy: the index and what a query costs
        if measure is not None:
            metrics |= measure(model, list(inputs.splits["test"].sources), inputs.tokenizer, inputs.prompt)
    test = inputs.splits["test"]
    # Outside the peak-memory window: the personal-data recognisers are the policy's, not the model's.
    metrics |= text_policy_metrics(OutputPolicy(settings.policy), {"val_": val_texts, "test_": out.texts})
    metrics |= {"peak_rss_mb": rss.peak_mb, "test_examples": float(len(test)),
                "train_seconds": training.train_seconds if training else 0.0}
    metrics |= forgetting_metrics(model, inputs.strategy.trains, inputs.base, inputs.head, inputs.tokenizer,
                                  settings.evaluation, cfg.seed, evaluation_precision(inputs.hardware))
    details = GenerationDetails(list(test.sources), list(test.references), out.texts, scores.rougeL, scores.chrf)
    return Outcome(model, params, metrics, details, training, variants, None)


def seed_scores(inputs: StrategyInputs, settings: Settings) -> dict[str, float]:
    """Validation and test ROUGE-L / chrF of the recipe trained with settings.train.seed."""
    model = build_and_train(inputs, settings.train, f"{inputs.name} (seed {settings.train.seed})").model
    out = {}
    for split in ("validation", "test"):
        scores = _score(model, inputs, settings, split)[1]
        prefix = "val" if split == "validation" else "test"
        out |= {f"{prefix}_rougeL": float(scores.rougeL.mean()), f"{prefix}_chrf": float(scores.chrf.mean())}
    return out


def outputs_record(details: GenerationDetails) -> dict:
    """test_outputs.json: every test input with its reference, the output and its scores."""
    return {"examples": [{"input": s, "reference": r, "output": o, "rougeL": round(float(x), 5),
                          "chrf": round(float(c), 5)}
                         for s, r, o, x, c in zip(details.sources, details.references, details.outputs,
                                                  details.rougeL, details.chrf)]}


__all__ = ["compute_generation", "outputs_record", "prepare_generation_inputs"]


register_part("generation", STAGE, TrainingPart(
    prepare=prepare_generation_inputs, compute=compute_generation, seed_scores=seed_scores))
