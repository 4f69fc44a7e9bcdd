"""The LM head on target positions only (tasks/training/losses.forward_loss) against full logits
(every position through the head, then the loss picks the targets), on the headlines profile's own
data and base (SmolLM2-135M-Instruct; a 576 x 49,152 head; ~10 % of positions carry a target):
a training step (forward with the loss, backward, AdamW) and a validation check (the loop's
`mean_loss` over the validation split at 4x the batch), per strategy. Both ways run the same
batches in one process, interleaved, medians; their losses are printed side by side.

  .venv/bin/python bench/lm_head.py [--strategies full_finetune,lora] [--steps 6] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import headlines, interleaved, median, table, write  # noqa: E402

WAYS = ("full logits", "target positions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="full_finetune,lora")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    names = args.strategies.split(",")
    settings, frames, base = headlines(names)
    import torch
    print(f"{base.name}, batch {settings.train.batch_size}, {args.steps} steps a repeat, {args.repeats} repeats, "
          f"{torch.get_num_threads()} threads, fp32")
    rows, detail = [], {}
    for name in names:
        bench = _Bench(settings, base, frames, name, args.steps)
        times = interleaved({f"{way}: {part}": bench.timer(way, part) for part in ("step", "check") for way in WAYS},
                            args.repeats)
        med = {k: median(v) for k, v in times.items()}
        for way in WAYS:
            rows.append({"strategy": name, "loss": way, "step s": round(med[f"{way}: step"] / args.steps, 3),
                         "check s": round(med[f"{way}: check"], 2), "train loss": round(median(bench.losses[way]), 5),
                         "val loss": round(bench.val[way], 5)})
        detail[name] = {"times": times, "step_speedup": med[f"{WAYS[0]}: step"] / med[f"{WAYS[1]}: step"],
                        "check_speedup": med[f"{WAYS[0]}: check"] / med[f"{WAYS[1]}: check"]}
        print(table(rows[-2:]), flush=True)
        print(f"  target positions: step {detail[name]['step_speedup']:.2f}x, check {detail[name]['check_speedup']:.2f}x",
              flush=True)
    print("\n" + table(rows))
    write("lm_head", {"steps": args.steps, "repeats": args.repeats, "rows": rows,
                      "strategies": detail})


class _Bench:
    """One strategy's model and data; `timer(way, part)` times `steps` training steps from the
    same starting weights, or one validation check, with either loss."""

    def __init__(self, settings, base, frames, name: str, steps: int):
        from tasks.training.generation import prepare_generation_inputs

        self.settings, self.steps = settings, steps
        self.inputs = prepare_generation_inputs(settings, base, frames, name)
        bs = settings.train.batch_size
        self.data = self.inputs.splits["train"].select(list(range(steps * bs)))
        self.losses: dict[str, list[float]] = {way: [] for way in WAYS}
        self.val: dict[str, float] = {}
        self._checked = None   # a check changes no weight: one model read from disk serves every check

    def _model(self):
        from tasks.training.loop import seed_everything

        seed_everything(self.settings.train.seed)
        i = self.inputs
        return i.strategy.build(i.base.path, i.head, i.params)

    def timer(self, way: str, part: str):
        return (lambda: self._steps(way)) if part == "step" else (lambda: self._check(way))

    def _loss(self, way: str, model, inputs: dict, labels, reduction: str = "mean"):
        from tasks.training.losses import batch_loss, forward_loss

        if way == WAYS[0]:
            return batch_loss(model(**inputs).logits, labels, reduction)
        return forward_loss(model, model, inputs, labels, reduction)

    def _steps(self, way: str) -> float:
        from tasks.models.encoding import batches
        from tasks.training.loop import make_optimizer
        from tasks.training.loop_settings import loop_config

        model = self._model()
        cfg = loop_config(self.inputs.params, self.settings.train, self.inputs.hardware, epochs=1, eval_every=10**9)
        optimizer, _, _ = make_optimizer(model, cfg, len(self.data), 1, "bench")
        model.train()
        start, total = time.perf_counter(), 0.0
        for _, inputs, labels in batches(self.data, self.settings.train.batch_size, self.inputs.pad_id):
            loss = self._loss(way, model, inputs, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            total += loss.item()
        seconds = time.perf_counter() - start
        self.losses[way].append(total / self.steps)
        return seconds

    def _check(self, way: str) -> float:
        import torch

        from tasks.models.encoding import batches
        from tasks.training.losses import loss_count

        if self._checked is None:
            self._checked = self._model().eval()
        model, val = self._checked, self.inputs.splits["validation"]
        start, total, n = time.perf_counter(), 0.0, 0
        with torch.no_grad():
            for _, inputs, labels in batches(val, self.settings.train.batch_size * 4, self.inputs.pad_id):
                total += self._loss(way, model, inputs, labels, "sum").item()
                n += loss_count(labels)
        seconds = time.perf_counter() - start
        self.val[way] = total / n
        return seconds


if __name__ == "__main__":
    main()
