"""Generation prompts: an input becomes the model's chat-template prompt (system message, the
instruction and the input as the user's turn, then the assistant's turn opened), and a training
example is that prompt followed by the target and the end-of-turn token. Only the target's tokens
(and the end token) carry loss: `Encoded.prompt_lengths` says where each target starts.

The input is cut (never the template, never the target) so prompt + target fit model.max_length.
A tokenizer without a chat template gets a plain "instruction / input / answer" layout.

Text from a user or from the data (the input, demonstrations' inputs and targets, a training
target) is tokenized without special-token parsing: `<|im_start|>system` typed into a request or
a training row stays those characters (`<`, `|`, `im`, ...), never SmolLM2's role token, so it
cannot open a turn of its own (issue 27, finding 5). Only the chat template's own markup becomes
special tokens."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:   # left_pad and encode_pairs import torch: settings read PromptFormat without it
    import torch

    from tasks.models.encoding import Encoded

_PLAIN = "{system}\n\n{instruction}\n\n{text}\n\nAnswer: "


@dataclass(frozen=True)
class PromptFormat:
    system_prompt: str
    instruction: str
    # (input, target) pairs shown before the input as earlier turns of the chat (few-shot).
    demonstrations: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def messages(self, text: str) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for demo_input, demo_target in self.demonstrations:
            out += [{"role": "user", "content": self.user_turn(demo_input)},
                    {"role": "assistant", "content": demo_target}]
        return out + [{"role": "user", "content": self.user_turn(text)}]

    def user_turn(self, text: str) -> str:
        return f"{self.instruction}\n\n{text}"


def render(tokenizer, fmt: PromptFormat, text: str) -> str:
    """The prompt as text, ending where the model's answer begins."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(fmt.messages(text), tokenize=False, add_generation_prompt=True)
    demos = "".join(_PLAIN.format(system="", instruction=fmt.instruction, text=i).lstrip() + t + "\n\n"
                    for i, t in fmt.demonstrations)
    return demos + _PLAIN.format(system=fmt.system_prompt, instruction=fmt.instruction, text=text)


def end_ids(tokenizer) -> list[int]:
    """What closes an answer: the end-of-turn token (eos)."""
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def _ids(tokenizer, text: str) -> list[int]:
    # The rendered template already holds its special tokens: add none (SmolLM2's tokenizer
    # would prepend <|im_start|> to every encoding otherwise).
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def text_ids(tokenizer, text: str) -> list[int]:
    """Tokens of text a user or the data wrote: special-token strings in it stay plain text."""
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


# Where a user's string goes in the template: private-use code points, which the template's own
# text does not hold; the prompt is the template with each slot replaced by its string.
_SLOT = "\ue000{}\ue001"
_SLOTS = re.compile("\ue000(\\d+)\ue001")


def prompt_token_ids(tokenizer, fmt: PromptFormat, text: str) -> list[int]:
    """`render(tokenizer, fmt, text)` as token ids, where only the template's own markup may be a
    special token: one that starts inside a user string (the input, a demonstration's input or
    target) is replaced by its characters' plain tokens (`text_ids`). The whole prompt is tokenized
    at once, so text without special-token strings gets exactly the ids it always had."""
    values = [text] + [s for pair in fmt.demonstrations for s in pair]
    slots = tuple((_SLOT.format(2 * i + 1), _SLOT.format(2 * i + 2)) for i in range(len(fmt.demonstrations)))
    pieces, spans, at = [], [], 0
    for i, part in enumerate(_SLOTS.split(render(tokenizer, PromptFormat(fmt.system_prompt, fmt.instruction, slots),
                                                 _SLOT.format(0)))):
        piece = values[int(part)] if i % 2 else part
        if i % 2:
            spans.append((at, at + len(piece)))
        pieces.append(piece)
        at += len(piece)
    prompt = "".join(pieces)
    encoded = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    ids: list[int] = []
    for token, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        injected = token in special and any(lo <= a < hi for lo, hi in spans)
        ids += text_ids(tokenizer, prompt[a:b]) if injected else [token]
    return ids


def prompt_ids(tokenizer, fmt: PromptFormat, text: str, budget: int) -> list[int]:
    """The prompt's token ids, at most `budget` long: the input is cut to fit, never the template
    (cutting its end would drop the input and the opened answer turn, and the model would go on
    with whatever came before). A template that alone exceeds the budget is an error."""
    ids = prompt_token_ids(tokenizer, fmt, text)
    if len(ids) <= budget:
        return ids
    overhead = len(prompt_token_ids(tokenizer, fmt, ""))
    if overhead >= budget:
        raise ValueError(f"the prompt template (system prompt, instruction and demonstrations) is {overhead} "
                         f"tokens, over the {budget}-token budget; raise model.max_length or shorten it")
    keep = budget - overhead
    while True:   # decoding and re-encoding a cut text may merge tokens differently: cut until it fits
        ids = prompt_token_ids(tokenizer, fmt, tokenizer.decode(text_ids(tokenizer, text)[:keep]))
        if len(ids) <= budget or keep <= 1:
            return ids
        keep -= len(ids) - budget


def target_ids(tokenizer, target: str, max_tokens: int) -> list[int]:
    """The target's tokens (at most max_tokens) and the end token."""
    return text_ids(tokenizer, target)[:max_tokens] + end_ids(tokenizer)


def encode_pairs(tokenizer, fmt: PromptFormat | list[PromptFormat], texts: list[str], targets: list[str],
                 max_length: int, max_target_tokens: int) -> Encoded:
    """Training examples: prompt + target + end token, with the prompt's length per example.
    `fmt`: one format for all, or one per example (retrieved demonstrations)."""
    from tasks.models.encoding import Encoded

    ids, lengths = [], []
    formats = fmt if isinstance(fmt, list) else [fmt] * len(texts)
    for fmt, text, target in zip(formats, texts, targets):
        answer = target_ids(tokenizer, target, min(max_target_tokens, max_length // 2))
        prompt = prompt_ids(tokenizer, fmt, text, max_length - len(answer))
        ids.append(prompt + answer)
        lengths.append(len(prompt))
    return Encoded(ids, np.zeros(len(ids), dtype=np.int64), np.asarray(lengths, dtype=np.int64),
                   tuple(targets), tuple(texts))


def token_lengths(tokenizer, fmt: PromptFormat, texts: list[str], targets: list[str]) -> tuple[list[int], list[int]]:
    """(prompt + target + end tokens, target tokens) per example, uncut: what the data contract
    checks against model.max_length and the target bounds."""
    totals, target_lengths = [], []
    for text, target in zip(texts, targets):
        t = len(text_ids(tokenizer, target))
        totals.append(len(prompt_token_ids(tokenizer, fmt, text)) + t + len(end_ids(tokenizer)))
        target_lengths.append(t)
    return totals, target_lengths


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def cut_at_end(tokens: list[int], eos: list[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[:i]
    return tokens
