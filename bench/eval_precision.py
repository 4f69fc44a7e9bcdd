"""Evaluation passes in the run's training precision: fp32 against bf16 autocast, side by side in
one process, on the default profile's base (MiniLM, classification) and the headlines profile's
(SmolLM2-135M-Instruct, generation), with each profile's own settings:

  forgetting probe   the features of evaluation.forgetting_*_examples BBC News articles, then the
                     probe fitted on each; seconds, accuracy and McNemar on the paired test rows
  validation loss    (headlines) the base's mean loss per target token on the validation split,
                     as val_perplexity measures a prompting strategy; seconds and both values

  .venv/bin/python bench/eval_precision.py [--repeats 2]

What a bf16 run does since `autocast_in` (tasks/models/precision.py): both figures come from the
precision the run trains in, so a trained model's validation loss is its kept check's.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, interleaved, median, table, write  # noqa: E402

PRECISIONS = ("no", "bf16")


def probe_rows(profile: str | None, repeats: int) -> list[dict]:
    import numpy as np

    from tasks.config import load_settings
    from tasks.evaluation import forgetting as fg
    from tasks.evaluation.statistics import mcnemar
    from tasks.models.base import load_base
    from tasks.models.heads import Head
    from tasks.models.loading import load_tokenizer
    from tasks.models.precision import autocast_in

    s = load_settings(str(ROOT / "params.yaml"), profile)
    ev, base = s.evaluation, load_base(s.model.base, s.root)
    tok = load_tokenizer(base.path)
    model = Head.for_task(s.task, s.validation.labels).load(base.path)
    probe = fg.probe_data(tok, ev.forgetting_train_examples, ev.forgetting_test_examples, ev.forgetting_max_length,
                          s.train.seed)
    feats = {}

    def probe_features(p: str) -> None:
        with autocast_in(model, p):
            feats[p] = (fg.features(model, probe.train, tok.pad_token_id),
                        fg.features(model, probe.test, tok.pad_token_id))

    seconds = interleaved({p: lambda p=p: probe_features(p) for p in PRECISIONS}, repeats)
    y_test = np.asarray(probe.test.labels)
    correct = {p: fg.probe_correct(feats[p][0], probe.train.labels, feats[p][1], y_test) for p in PRECISIONS}
    test = mcnemar(correct["no"], correct["bf16"])
    return [{"profile": profile or "default", "pass": f"forgetting probe ({base.name}, {len(probe.train.labels)}+"
             f"{len(y_test)} articles)", **_timings(seconds),
             "fp32": float(correct["no"].mean()), "bf16": float(correct["bf16"].mean()),
             "discordant": f"{test.only_a_correct}/{test.only_b_correct}", "p": test.p_value, "loss_diff": ""}]


def loss_rows(repeats: int) -> list[dict]:
    import numpy as np

    from bench.common import headlines
    from tasks.models.precision import autocast_in
    from tasks.training.loop import mean_loss
    from tasks.training.run import prepare_inputs

    settings, frames, base = headlines(["zero_shot"])
    inputs = prepare_inputs(settings, base, frames, "zero_shot")
    model = inputs.head.load(base.path)
    data = inputs.splits["validation"]
    losses = {}

    def loss(p: str) -> None:
        with autocast_in(model, p):
            losses[p] = mean_loss(model, data, settings.train.batch_size, inputs.pad_id)

    seconds = interleaved({p: lambda p=p: loss(p) for p in PRECISIONS}, repeats)
    return [{"profile": "headlines", "pass": f"validation loss ({base.name}, {len(data)} examples)",
             **_timings(seconds), "fp32": float(np.exp(losses["no"])), "bf16": float(np.exp(losses["bf16"])),
             "discordant": "", "p": "", "loss_diff": abs(losses["bf16"] / losses["no"] - 1)}]


def _timings(seconds: dict[str, list[float]]) -> dict[str, float]:
    fp32, bf16 = median(seconds["no"]), median(seconds["bf16"])
    return {"fp32_s": fp32, "bf16_s": bf16, "speedup": fp32 / bf16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    import torch

    torch.set_num_threads(2)
    rows = probe_rows(None, args.repeats) + probe_rows("headlines", args.repeats) + loss_rows(args.repeats)
    print(table(rows))
    print("probe rows: fp32 / bf16 are test accuracies, discordant = only fp32 right / only bf16 right, p = exact "
          "McNemar; loss row: fp32 / bf16 are perplexities, loss_diff the losses' relative difference")
    print(f"wrote {write('eval_precision', {'rows': rows})}")


if __name__ == "__main__":
    main()
