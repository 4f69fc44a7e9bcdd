"""Greedy generation as evaluation and serving run it (tasks/evaluation/generate.generate_texts)
against the plain way (each batch's whole left-padded prompts through the model's generate), on
the headlines profile's own test leads and base (SmolLM2-135M-Instruct), for zero_shot (the
frozen base) and lora (PEFT-wrapped). Ways, each over the same texts in one process, interleaved:

  plain                 16 a batch, whole prompts, linear layers as they are (before)
  + prefix cache        the shared prefix's key/value cache (tasks/models/prefix_cache.py)
  + few-row linear      and decoding's linear layers flipped (tasks/models/few_rows.py)
  adaptflow @ N         both, N a batch (generation.batch_size)
  adaptflow @ N bf16    the same on bf16 copies of the weights (--bf16; generation.precision)

Each way's outputs are compared with plain's (same texts out of how many), or with the first
bf16 way's under --bf16-only (its speedup column too).

  .venv/bin/python bench/generation.py [--strategies zero_shot,lora] [--texts 250] [--repeats 1] [--bf16 | --bf16-only]
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import headlines, interleaved, median, table, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="zero_shot,lora")
    parser.add_argument("--texts", type=int, default=250, help="test leads generated per way")
    parser.add_argument("--batches", default="32,48,64", help="generation.batch_size values with both changes (16: + few-row linear)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="also each batch size with generation.precision bf16")
    parser.add_argument("--bf16-only", action="store_true",
                        help="only the bf16 ways (each batch size), compared with the first one's outputs")
    args = parser.parse_args()

    names = args.strategies.split(",")
    settings, frames, base = headlines(names)
    import torch
    texts = frames["test"]["text"].astype(str).tolist()[:args.texts]
    print(f"{base.name}, {len(texts)} test leads, max_new_tokens {settings.generation.max_new_tokens}, "
          f"{torch.get_num_threads()} threads", flush=True)
    rows, detail = [], {}
    for name in names:
        bench = _Bench(settings, base, frames, name, texts)
        ways = {} if args.bf16_only else {
            "plain @ 16": bench.way("plain @ 16", 16, prefix=False, flip=False),
            "+ prefix cache @ 16": bench.way("+ prefix cache @ 16", 16, prefix=True, flip=False),
            "+ few-row linear @ 16": bench.way("+ few-row linear @ 16", 16, prefix=True, flip=True)}
        for b in map(int, args.batches.split(",")):
            if not args.bf16_only:
                ways[f"adaptflow @ {b}"] = bench.way(f"adaptflow @ {b}", b, prefix=True, flip=True)
            if args.bf16 or args.bf16_only:
                ways[f"adaptflow @ {b} bf16"] = bench.way(f"adaptflow @ {b} bf16", b, True, True, "bf16")
        times = interleaved(ways, args.repeats)
        first = next(iter(ways))   # plain @ 16, or the first bf16 way
        plain = median(times[first])
        for way, secs in times.items():
            same = sum(a == b for a, b in zip(bench.outputs[way], bench.outputs[first]))
            rows.append({"strategy": name, "way": way, "seconds": round(median(secs), 1),
                         "texts/s": round(len(texts) / median(secs), 2), "speedup": round(plain / median(secs), 2),
                         "same outputs": f"{same}/{len(texts)}"})
        detail[name] = {"times": times}
        print(table([r for r in rows if r["strategy"] == name]), flush=True)
    print("\n" + table(rows))
    write("generation", {"texts": len(texts), "repeats": args.repeats, "rows": rows, "strategies": detail})


class _Bench:
    """One strategy's model (zero_shot: as built; lora: PEFT LoRA on the base, untrained weights
    perturbed so the adapter changes every projection) and the run's prompt format."""

    def __init__(self, settings, base, frames, name: str, texts: list[str]):
        import torch

        from tasks.training.generation import prepare_generation_inputs

        self.settings, self.texts = settings, texts
        self.inputs = prepare_generation_inputs(settings, base, frames, name)
        i = self.inputs
        self.model = i.strategy.build(i.base.path, i.head, i.params).eval()
        if name == "lora":
            torch.manual_seed(0)
            with torch.no_grad():
                for n, p in self.model.named_parameters():
                    if "lora_B" in n:
                        p.normal_(0, 0.01)
        self.outputs: dict[str, list[str]] = {}

    def way(self, key: str, batch_size: int, prefix: bool, flip: bool, precision: str = "fp32"):
        return lambda: self._run(key, batch_size, prefix, flip, precision)

    def _run(self, key: str, batch_size: int, prefix: bool, flip: bool, precision: str) -> float:
        from tasks.evaluation import generate

        g, i = self.settings.generation, self.inputs
        fmt = getattr(self.model, "prompt_format", None) or i.prompt
        patches = [mock.patch.object(generate, "few_row_linear", lambda _model: nullcontext())] if not flip else []
        if not prefix:
            patches += [mock.patch.object(generate, "caches_prefix", lambda _model: False),
                        mock.patch.object(type(self.model), "generate_prompts", lambda *a: None, create=True)]
        with _all(patches):
            start = time.perf_counter()
            out = generate.generate_texts(self.model, i.tokenizer, fmt, self.texts, self.settings.model.max_length,
                                          g.max_new_tokens, batch_size, precision=precision)
            seconds = time.perf_counter() - start
        self.outputs[key] = out.texts
        return seconds


def _all(patches):
    from contextlib import ExitStack

    stack = ExitStack()
    for p in patches:
        stack.enter_context(p)
    return stack


if __name__ == "__main__":
    main()
