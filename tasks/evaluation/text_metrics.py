"""Quality of generated text against references, computed offline: ROUGE-1/2/L (`rouge-score`),
chrF and BLEU (`sacrebleu`), exact match, and the cosine similarity of MiniLM sentence
embeddings, all from installed packages: the Hugging Face `evaluate` loader and MLflow's
built-in ROUGE download metric scripts at run time and, offline, skip the metric silently.

Per-example scores feed the bootstrap intervals and the paired test against the best strategy;
risk shares (empty, repetitive, cut by the length cap) describe the outputs themselves."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from tasks.evaluation.statistics import bootstrap_ci

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


def normalise(text: str) -> str:
    """Exact match compares case- and whitespace-folded text."""
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class TextScores:
    """Per-example scores, each an array over the test examples in input order."""
    rouge1: np.ndarray
    rouge2: np.ndarray
    rougeL: np.ndarray
    chrf: np.ndarray
    exact: np.ndarray
    similarity: np.ndarray
    bleu: float                  # corpus BLEU (not an average of sentence scores)
    corpus_chrf: float


@functools.lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)


def text_scores(outputs: list[str], references: list[str], embed=None) -> TextScores:
    """`embed(texts) -> unit vectors` for the similarity (None: MiniLM from the packaged encoder)."""
    import sacrebleu

    if len(outputs) != len(references) or not outputs:
        raise ValueError(f"{len(outputs)} outputs for {len(references)} references")
    rouge = [_rouge().score(r, o) for o, r in zip(outputs, references)]
    per = {k: np.array([s[k].fmeasure for s in rouge]) for k in ROUGE_KEYS}
    chrf = np.array([sacrebleu.sentence_chrf(o, [r]).score / 100 for o, r in zip(outputs, references)])
    exact = np.array([float(normalise(o) == normalise(r)) for o, r in zip(outputs, references)])
    embed = embed or minilm_embed
    similarity = np.sum(embed(outputs) * embed(references), axis=1)
    return TextScores(per["rouge1"], per["rouge2"], per["rougeL"], chrf, exact, similarity,
                      sacrebleu.corpus_bleu(outputs, [references]).score / 100,
                      sacrebleu.corpus_chrf(outputs, [references]).score / 100)


def quality_metrics(s: TextScores, seed: int) -> dict[str, float]:
    """Test-set means with bootstrap 95 % intervals for ROUGE-L and chrF."""
    out = {f"test_{k}": float(getattr(s, k).mean()) for k in ROUGE_KEYS}
    out |= {"test_chrf": float(s.chrf.mean()), "test_exact_match": float(s.exact.mean()),
            "test_embedding_similarity": float(s.similarity.mean()), "test_bleu": s.bleu,
            "test_corpus_chrf": s.corpus_chrf}
    for name in ("rougeL", "chrf"):
        low, high = mean_ci(getattr(s, name), seed)
        out |= {f"test_{name}_ci_low": low, f"test_{name}_ci_high": high}
    return out


def mean_ci(values: np.ndarray, seed: int) -> tuple[float, float]:
    return bootstrap_ci(values, values, lambda t, _: float(np.mean(t)), seed=seed)


def paired_permutation_p(a: np.ndarray, b: np.ndarray, n_resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided paired test of mean(a) = mean(b) on the same examples: the sign of each
    example's difference is flipped at random (exact under the null of exchangeable pairs)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    if not diff.any():
        return 1.0
    observed = abs(diff.mean())
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_resamples, len(diff)))
    extreme = int((np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12).sum())
    return (extreme + 1) / (n_resamples + 1)


def repeats_itself(text: str, n: int = 3) -> bool:
    """An n-gram of words occurs twice or more: the degenerate loop greedy decoding falls into."""
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def risk_metrics(outputs: list[str], hit_cap: np.ndarray) -> dict[str, float]:
    """Shares of outputs that are empty, repeat themselves, or were cut by max_new_tokens."""
    n = max(len(outputs), 1)
    return {"empty_output_share": sum(not o.strip() for o in outputs) / n,
            "repetition_share": sum(repeats_itself(o) for o in outputs) / n,
            "length_cap_share": float(np.mean(hit_cap)) if len(hit_cap) else 0.0}


def minilm_embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """MiniLM sentence embeddings (tasks/models/embedding.py) of `texts`, one row each."""
    from tasks.models.embedding import embed_texts

    return embed_texts(texts, batch_size=batch_size)
