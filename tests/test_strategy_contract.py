"""The strategy contract, run for every registered strategy on a tiny random BERT: it builds,
the loss falls on a fixed batch, it saves only what it should, and it reloads with identical
logits."""
from __future__ import annotations

from dataclasses import replace

import dataclasses
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import LABELS
from safetensors import safe_open

import tasks.strategies as package
from tasks.models.heads import Head
from tasks.evaluation.cost import count_parameters
from tasks.models.encoding import collate
from tasks.strategies import registry
from tasks.strategies.registry import Strategy, TrainableParams
from tasks.training.loop import seed_everything

TEXTS = ["a wonderful, moving film", "dull and far too long", "the best thing this year",
         "a mess from start to finish", "sharp, funny and kind", "i walked out", "pure joy",
         "tedious"]
Y = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
# Settings that must differ on the tiny models (the defaults are sized for MiniLM's 6 layers
# and named for BERT's modules).
TINY_OVERRIDES = {
    "bert": {"partial_finetune": {"frozen_layers": 1}},
    "llama": {"partial_finetune": {"frozen_layers": 1}, "lora": {"target_modules": ["q_proj", "v_proj"]}},
}
EMBEDDINGS = ("word_embeddings", "embed_tokens")   # BERT and Llama token embeddings (base weights)
# Combinations a library cannot do: the strategy must refuse them with this message.
UNSUPPORTED = {("lora_prompt", "llama"): "does not support for llama models"}
CASES = [(name, kind) for name in registry.names("classification") for kind in ("bert", "llama")
         if (kind == "llama" or registry.get(name).base_kind == "any") and (name, kind) not in UNSUPPORTED]
# The `+retrieval` variant of trained strategies of each library and kind of artifact.
CASES += [("lora+retrieval", "bert"), ("partial_finetune+retrieval", "llama"), ("prompt_tuning+retrieval", "bert"),
          ("bottleneck_adapter+retrieval", "bert")]


@pytest.mark.parametrize("name,kind", sorted(UNSUPPORTED))
def test_unsupported_base_is_refused_clearly(name: str, kind: str, request):
    strategy = registry.get(name)
    with pytest.raises(ValueError, match=UNSUPPORTED[(name, kind)]):
        strategy.build(request.getfixturevalue(f"tiny_{kind}"), Head.for_task('classification', LABELS), strategy.parse_params({}))


def _batch(base_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    return collate(tok(TEXTS, truncation=True, max_length=32)["input_ids"], tok.pad_token_id)


def _eval_loss(model, batch) -> float:
    """Loss without dropout, so a fall is the optimizer's doing, not noise."""
    model.eval()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(**batch).logits, Y).item()


def test_every_strategy_module_is_registered():
    # registry, search, sharing and retrieval_index are the package's vocabulary (registration,
    # search spaces, versions on a shared base, the retrieval index), not strategies; with_retrieval
    # registers the `+retrieval` variant of every trained strategy (register_variant).
    modules = {m.name for m in pkgutil.iter_modules(package.__path__)
               if not m.name.startswith("_")
               and m.name not in {"registry", "search", "sharing", "retrieval_index", "with_retrieval"}}
    for name in modules:
        importlib.import_module(f"tasks.strategies.{name}")
    # A module is named after its strategy; a second implementation of a name for another task
    # is <name>_<task> (zero_shot_generation).
    registered = set(registry.names()) | {f"{n}_generation" for n in registry.names("generation")}
    assert modules <= registered, f"modules without registration: {modules - registered}"


def test_registrar_rejects_bad_and_duplicate_names():
    s = registry.get("lora")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(s)
    with pytest.raises(ValueError, match="bad strategy name"):
        registry.register(dataclasses.replace(s, name="Bad-Name"))


def test_bad_strategy_setting_names_the_key():
    with pytest.raises(ValueError, match=r"strategies.lora: unknown setting\(s\) rank"):
        registry.get("lora").parse_params({"rank": 4})
    with pytest.raises(ValueError, match="strategies.lora: .*dropout"):
        registry.get("lora").parse_params({"dropout": 1.5})


def _params_classes() -> set[type]:
    """Every params class a strategy can be run with: each registered one, each trained one's
    `+retrieval` variant, and the shared fields."""
    from tasks.strategies.with_retrieval import RetrievalFields

    out = {s.params_cls for s in registry.all_strategies()} | {TrainableParams, RetrievalFields}
    return out | {registry.get(f"{s.name}+retrieval", s.tasks[0]).params_cls
                  for s in registry.all_strategies() if s.trains}


def test_every_params_field_has_its_default_and_help_in_the_dataclass():
    """A parameter is documented once, where it is declared (`field(metadata={"help": ...})`,
    as PEFT does); `adaptflow strategies` prints it."""
    missing = sorted(f"{cls.__name__}.{f.name}" for cls in _params_classes() for f in dataclasses.fields(cls)
                     if not registry.param_help(f))
    assert not missing, f"params fields without help: {missing}"
    for cls in _params_classes():   # and every field has a default: a section may leave it out
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        assert not required, f"{cls.__name__}: no default for {required}"


def test_strategies_are_described_per_task_with_type_default_and_help():
    text = registry.describe_all()
    classification, generation = text.split("\n== generation: ")
    assert classification.startswith("== classification: ")
    assert "params: generation.strategies.<name> in params.yaml" in generation
    for task, part in (("classification", classification), ("generation", generation)):
        for name in registry.names(task):
            assert f"\n{name}  [" in part, (task, name)
    assert "\nbottleneck_adapter  [" not in generation   # classification only
    lora = registry.describe(registry.get("lora"))
    assert lora.startswith("lora  [trains; saves adapter; library peft]  PEFT LoRA adapters")
    assert "\n    r: int = 8\n        rank of each low-rank update\n" in lora
    assert "\n    target_modules: list[str] | None = null\n" in lora
    assert "\n    context_tokens: int = 128\n" in text.split("+retrieval")[-1]   # the option's own fields
    few_shot = registry.describe(registry.get("few_shot"))   # long defaults are cut: a template's name, not its text
    assert 'templates: dict[str, dict[str, str]] = {"review-sentiment@v1": ..., "critic-verdict@v1": ...}' in few_shot


def test_prompt_tuning_starts_from_the_task_unless_its_params_say_otherwise(tiny_bert: Path):
    """No domain text as a default: the virtual tokens start from the labels (classification) or
    the run's instruction (generation); init_text sets another text, "" a random start."""
    from tasks.strategies.prompt_tuning import init_text, peft_config

    params = registry.get("prompt_tuning").parse_params({})
    head = Head.for_task("classification", LABELS)
    assert init_text(params, head) == f"Classify the text as one of: {', '.join(LABELS)}."
    assert init_text(params, Head("generation", instruction="Write the headline.")) == "Write the headline."
    assert init_text(replace(params, init_text="Is it good?"), head) == "Is it good?"
    assert peft_config(tiny_bert, params, head).prompt_tuning_init_text == init_text(params, head)
    assert peft_config(tiny_bert, replace(params, init_text=""), head).prompt_tuning_init == "RANDOM"


INACTIVE = "none are activated for the forward pass"   # the `adapters` library's warning


def _inactive_adapter_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if INACTIVE in r.getMessage()]


def test_an_inactive_adapter_is_detected(tiny_bert: Path, caplog):
    """The check below can fail: deactivate the adapter and the warning is caught."""
    strategy = registry.get("bottleneck_adapter")
    model = strategy.build(tiny_bert, Head.for_task('classification', LABELS), strategy.parse_params({}))
    model.set_active_adapters(None)
    with caplog.at_level("WARNING"):
        model(**_batch(tiny_bert))
    assert _inactive_adapter_warnings(caplog)


def _few_shot_demos(params):
    demos = [{"text": TEXTS[i], "label": LABELS[int(Y[i])]} for i in range(2)]
    return dataclasses.replace(params, demonstrations=demos, variants=[])


@pytest.mark.parametrize("name,kind", CASES)
def test_strategy_contract(name: str, kind: str, request, tmp_path: Path, caplog, monkeypatch):
    caplog.set_level("WARNING")
    tiny_base = request.getfixturevalue(f"tiny_{kind}")
    strategy: Strategy = registry.get(name)
    params = strategy.parse_params(TINY_OVERRIDES[kind].get(name.removesuffix("+retrieval"), {}))
    if name == "few_shot":
        params = _few_shot_demos(params)
    if name == "retrieval_few_shot" or strategy.retrieves:   # the run builds its index from the train split
        from tasks.strategies.with_retrieval import attach_index

        monkeypatch.setenv("ADAPTFLOW_CACHE", str(tmp_path / "cache"))
        train = pd.DataFrame({"text": TEXTS, "label": [LABELS[int(y)] for y in Y]})
        params = dataclasses.replace(params, k=2)
        params = attach_index(params, train, "label") if strategy.retrieves else strategy.variants(params, train, LABELS)[0]
    seed_everything(0)
    model = strategy.build(tiny_base, Head.for_task('classification', LABELS), params)
    # What its model can measure, the strategy declares (training reads the declaration).
    assert hasattr(model, "retrieval_metrics") == (strategy.retrieval_metrics is not None)
    # `adapters` logs the inactive-adapter warning once inside train_adapter itself, while it
    # switches the adapter on; only forward passes after building are checked.
    caplog.clear()
    batch = _batch(tiny_base)
    trainable, total = count_parameters(model)

    if strategy.trains:
        assert isinstance(params, TrainableParams)
        assert trainable > 0
        head = [n for n, p in model.named_parameters() if p.requires_grad and ("classifier" in n or ".score." in f".{n}")]
        assert head, "the classification head must train (and be counted)"
        # A higher rate than the defaults so a tiny random model moves in a few steps.
        lr = max(params.learning_rate, 1e-3)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        loss_before = _eval_loss(model, batch)
        for _ in range(10):
            model.train()
            torch.nn.functional.cross_entropy(model(**batch).logits, Y).backward()
            opt.step()
            opt.zero_grad()
        loss_after = _eval_loss(model, batch)
        assert loss_after < loss_before - 1e-3, f"{name}: loss did not fall: {loss_before} -> {loss_after}"
    else:
        assert trainable == 0

    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
        if strategy.merge is not None:   # the merged copy predicts the same, the original is untouched
            torch.testing.assert_close(strategy.merge(model)(**batch).logits, before, rtol=0, atol=1e-5)
            torch.testing.assert_close(model(**batch).logits, before, rtol=0, atol=0)
    out = tmp_path / name
    out.mkdir()
    strategy.save(model, out)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not any(p.suffix == ".bin" for p in files), "weights must be stored as safetensors"
    tensors = {k for p in files if p.suffix == ".safetensors" for k in safe_open(p, "pt").keys()}
    if strategy.saves == "adapter":
        base_keys = [k for k in tensors if any(e in k for e in EMBEDDINGS)]
        assert not base_keys, f"{name}: adapter artifact holds base weights: {base_keys[:3]}"
        weights = [p for p in files if "retrieval_index" not in p.parts]   # the index is data, not weights
        assert sum(p.stat().st_size for p in weights) < 0.2 * (tiny_base / "model.safetensors").stat().st_size
    elif strategy.saves == "partial_weights":
        assert tensors and not any(e in k for k in tensors for e in (*EMBEDDINGS, ".layer.0.", ".layers.0.")), \
            "frozen layers must not be saved"
    elif strategy.saves == "full_model":
        assert any(e in k for k in tensors for e in EMBEDDINGS)
    else:
        assert not tensors, f"{name}: a config-only strategy saved tensors"

    seed_everything(123)  # a different seed: reloading must not depend on the RNG
    assert not _inactive_adapter_warnings(caplog), f"{name}: an adapter was not active while training"
    reloaded = strategy.load(tiny_base, out, Head.for_task('classification', LABELS), params)
    caplog.clear()
    with torch.no_grad():
        after = reloaded(**batch).logits
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    assert not _inactive_adapter_warnings(caplog), f"{name}: an adapter was not active after reloading"


def test_partial_finetune_refuses_to_freeze_every_layer(tiny_bert: Path):
    strategy = registry.get("partial_finetune")
    with pytest.raises(ValueError, match="freezes all 2 layers; use at most 1"):
        strategy.build(tiny_bert, Head.for_task('classification', LABELS), strategy.parse_params({"frozen_layers": 2}))


def test_partial_finetune_freezes_exactly_the_lower_layers(tiny_bert: Path):
    strategy = registry.get("partial_finetune")
    model = strategy.build(tiny_bert, Head.for_task('classification', LABELS), strategy.parse_params({"frozen_layers": 1}))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("bert.embeddings") or ".layer.0." in n for n in trainable)
    assert any(".layer.1." in n for n in trainable) and any("classifier" in n for n in trainable)


def test_few_shot_cached_scores_equal_uncached(tiny_llama: Path):
    strategy = registry.get("few_shot")
    model = strategy.build(tiny_llama, Head.for_task('classification', LABELS), _few_shot_demos(strategy.parse_params({})))
    batch = _batch(tiny_llama)
    rows = model._own_tokens(batch["input_ids"], batch["attention_mask"])
    assert all(r and r[0] != model.bos for r in rows)
    torch.testing.assert_close(model.score(rows), model.score_uncached(rows), rtol=0, atol=1e-4)
    # Verbalizers of several tokens and unequal lengths: the answers' later tokens run as a second step.
    wordy = replace(model.params, verbalizers={"negative": "quite bad overall, sadly", "positive": "good"})
    model = strategy.build(tiny_llama, Head.for_task('classification', LABELS), wordy)
    assert max(map(len, model.answers)) > 2 and len({len(a) for a in model.answers}) == 2
    torch.testing.assert_close(model.score(rows), model.score_uncached(rows), rtol=0, atol=1e-4)


def test_few_shot_calibration_removes_the_content_free_label_bias(tiny_llama: Path):
    strategy = registry.get("few_shot")
    params = _few_shot_demos(strategy.parse_params({}))
    model = strategy.build(tiny_llama, Head.for_task('classification', LABELS), params)
    batch = _batch(tiny_llama)
    raw = model.score(model._own_tokens(batch["input_ids"], batch["attention_mask"]))
    p_free = torch.softmax(model.score(model.content_free), -1).mean(0)
    torch.testing.assert_close(model(**batch).logits, raw - torch.log(p_free), rtol=0, atol=1e-6)
    plain = strategy.build(tiny_llama, Head.for_task('classification', LABELS), dataclasses.replace(params, calibrate=False))
    torch.testing.assert_close(plain(**batch).logits, raw, rtol=0, atol=0)


def test_demonstrations_are_balanced_and_reproducible():
    import pandas as pd

    from tasks.strategies.few_shot import draw_demonstrations

    train = pd.DataFrame({"text": [f"t{i}" for i in range(40)], "label": ["negative", "positive"] * 20})
    demos = draw_demonstrations(train, LABELS, 4, seed=3)
    assert demos == draw_demonstrations(train, LABELS, 4, seed=3)
    assert sorted(d["label"] for d in demos) == ["negative", "negative", "positive", "positive"]
    assert demos != draw_demonstrations(train, LABELS, 4, seed=4)


def test_an_adapter_is_refused_on_another_base(tiny_bert: Path, tmp_path: Path):
    """Trained on tiny base A, pointed at tiny base B (same architecture, other weights): the
    fingerprint check refuses before any weight is loaded."""
    import shutil

    from transformers import BertConfig, BertModel

    from tasks.models.base import BaseModelError, load_base
    from tasks.artifacts.manifest import Manifest
    from tasks.artifacts.predictor import load_predictor

    other = tmp_path / "other-base"
    shutil.copytree(tiny_bert, other)
    torch.manual_seed(1)
    BertModel(BertConfig.from_pretrained(tiny_bert)).save_pretrained(other)
    strategy = registry.get("lora")
    params = strategy.parse_params({})
    folder = tmp_path / "lora"
    folder.mkdir()
    strategy.save(strategy.build(tiny_bert, Head.for_task('classification', LABELS), params), folder)
    trained_on = load_base(str(tiny_bert))
    Manifest(strategy="lora", params=dataclasses.asdict(params), labels=LABELS, max_length=32, base_name=str(other),
             base_fingerprint=trained_on.fingerprint, saves="adapter").write(folder)
    with pytest.raises(BaseModelError, match=f"trained on a base with fingerprint {trained_on.fingerprint[:12]}"):
        load_predictor(folder)


@pytest.mark.parametrize("name", ["lora", "bottleneck_adapter", "full_finetune"])
def test_attach_to_a_shared_base_answers_like_the_standalone_loader(name: str, tiny_bert: Path, tmp_path: Path):
    """The `attach` hook of a PEFT strategy, an `adapters`-library one and a whole model: two
    versions put on one base in memory (the whole model cannot share: each loads its own) give
    the probabilities each gives loaded alone, switching back and forth, and detach cleanly."""
    from conftest import saved_version

    from tasks.artifacts.manifest import Manifest
    from tasks.artifacts.predictor import Predictor, load_predictor, predict
    from tasks.models.base import load_base
    from tasks.models.loading import load_tokenizer
    from tasks.strategies.sharing import SharedBase

    base, strategy = load_base(str(tiny_bert)), registry.get(name)
    head, tokenizer = Head.for_task("classification", LABELS), load_tokenizer(tiny_bert)
    folders = [saved_version(tmp_path, base, name, seed) for seed in (1, 2)]
    alone = [predict(load_predictor(f), TEXTS).probs for f in folders]
    assert not np.allclose(alone[0], alone[1], atol=1e-3)   # the versions do differ
    shared = SharedBase(base=base, head=head, kind=strategy.sharing.kind if strategy.sharing else "")
    params = [strategy.parse_params(Manifest.read(f).params) for f in folders]
    attached = [strategy.attach(base.path, f, head, p, shared=shared, name=f"v{i}")
                for i, (f, p) in enumerate(zip(folders, params))]

    def probs(i: int) -> np.ndarray:
        return predict(Predictor(model=attached[i].model(), tokenizer=tokenizer, manifest=Manifest.read(folders[i])),
                       TEXTS).probs

    for _ in range(2):
        for i in (0, 1):
            np.testing.assert_allclose(probs(i), alone[i], atol=1e-5)
    if strategy.sharing is None:
        assert shared.model is None and not shared.versions and strategy.share_key(folders[0], params[0]) is None
    else:
        assert sorted(shared.versions) == ["v0", "v1"] and all(a.shared is shared for a in attached)
        assert strategy.share_key(folders[0], params[0]) == strategy.share_key(folders[1], params[1])
    assert attached[0].detach() == (strategy.sharing is None)   # a shared base keeps its other version
    np.testing.assert_allclose(probs(1), alone[1], atol=1e-5)
    assert attached[1].detach() and shared.model is None


def test_label_scores_of_prompts_of_unequal_lengths_equal_each_prompt_run_alone(tiny_llama: Path):
    """retrieval_few_shot's path (no shared prefix): left padding, positions and the answers'
    later tokens give what one unpadded prompt + answer gives."""
    from tasks.models.loading import load_tokenizer
    from tasks.strategies._prompted_lm import frozen_causal_lm, label_log_likelihoods

    lm, tok = frozen_causal_lm(tiny_llama), load_tokenizer(tiny_llama)
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]
    prompts = [ids("Review: a long and winding but rewarding film\nSentiment:"), ids("Review: bad\nSentiment:")]
    answers = [ids(" negative, sadly"), ids(" good")]
    expected = torch.zeros(2, 2)
    for i, p in enumerate(prompts):
        for j, a in enumerate(answers):
            logp = torch.log_softmax(lm(torch.tensor([p + a])).logits.float(), -1)[0]
            expected[i, j] = sum(logp[len(p) + t - 1, tok_id] for t, tok_id in enumerate(a))
    torch.testing.assert_close(label_log_likelihoods(lm, prompts, answers), expected, rtol=0, atol=1e-4)


def test_zero_shot_variants_scored_from_one_embedding_pass_equal_each_model_scored_alone(tiny_bert: Path):
    """tasks/training/variants.py embeds a split once for every zero_shot variant; each variant's
    probabilities equal those of its own model run end to end (what serving computes)."""
    from types import SimpleNamespace

    import numpy as np

    from tasks.evaluation.predict import predict_proba
    from tasks.models.encoding import encode
    from tasks.models.loading import load_tokenizer
    from tasks.training.variants import score_variant

    strategy = registry.get("zero_shot")
    params = strategy.parse_params({"label_descriptions": {"negative": "bad", "positive": "good"},
                                    "variants": [{"negative": "awful film", "positive": "great film"}]})
    tokenizer = load_tokenizer(tiny_bert)
    texts = ["a joy", "a chore to sit through, long and dull", "fine", "the best of the year by far"] * 5
    data = encode(tokenizer, texts, np.array([1, 0, 1, 1] * 5), 32)
    inputs = SimpleNamespace(splits={"test": data}, labels=LABELS, pad_id=tokenizer.pad_token_id)
    shared: dict = {}
    for variant in strategy.variants(params):
        model = strategy.build(tiny_bert, Head.for_task("classification", LABELS), variant)
        alone = predict_proba(model, data, tokenizer.pad_token_id)
        assert np.allclose(score_variant(model, inputs, "test", shared).probs, alone, atol=1e-6)
    assert set(shared) == {"test"}   # one embedding pass, reused by the second variant


@pytest.mark.parametrize("part, text, words", [
    ("example", "Review: {text}{text:>2000000000}\nSentiment:", "not {text:>2000000000}"),
    ("example", "Review: {text}{text.__class__}", "not {text.__class__}"),
    ("answer", " {label}{label!r}", "not {label!r}"),
    ("answer", " {label}{text}", "not {text}"),
    ("example", "Review: {text} }", "not a valid template"),
])
def test_a_template_may_hold_only_plain_placeholders(part, text, words):
    """Issue 27, finding 10: templates are stored with a version and were filled with str.format,
    so `{text:>2000000000}` beside the {text} the check counted asked for 2 GB per prompt, and
    retrieval_few_shot checked no placeholder at all. The old code accepted each of these."""
    import re
    from dataclasses import replace

    from tasks.strategies._templates import DEFAULT_TEMPLATES, fill
    from tasks.strategies.few_shot import FewShotParams
    from tasks.strategies.retrieval_few_shot import RetrievalFewShotParams

    template = {**DEFAULT_TEMPLATES["review-sentiment@v1"], part: text}
    for params in (FewShotParams(), RetrievalFewShotParams()):
        with pytest.raises(ValueError, match=re.escape(words)):
            replace(params, templates={"hostile@v1": template}, template="hostile@v1",
                    **({"variants": []} if isinstance(params, FewShotParams) else {}))
    # Filling is plain substitution: braces written {{ }} stay braces, a value is never formatted.
    assert fill("a {{b}} {text}!", text="{x:>9}") == "a {b} {x:>9}!"
