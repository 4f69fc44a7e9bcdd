"""A review session: which inputs, what each version answered, which side each answer is shown
on, and which reviewer seat judges which item, stored as an MLflow run of its own (experiment
`review.experiment`) with the items as a JSON table artifact (`review/items.json`).

The pure parts (`stratified_sample`, `sides`, `assign`) decide; `build_session` fetches, loads
and asks the two versions through the one version -> predictor loader (tasks/artifacts).
"""
from __future__ import annotations

import hashlib
import json
import random
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tasks.errors import UserError

ITEMS_ARTIFACT = "review/items.json"
SESSION_TAG = "adaptflow.review"     # marks a run as a review session


class ReviewError(ValueError, UserError):
    """A session cannot be built or read as asked; the message says what to change."""


@dataclass(frozen=True)
class Item:
    id: str                      # opaque: what the page addresses the item by
    input: str
    reference: str               # the test split's label or target text
    stratum: str
    answers: dict                # role ("a"/"b") -> {"text": ...} or {"label": ..., "confidence": ...}
    swapped: bool                # True: version b is shown on the left (as "A")
    scores: dict                 # role -> the automatic per-item score (chrF, or 1/0 correct)

    def shown(self) -> list[dict]:
        """The two answers in the order the page shows them (left = "A")."""
        return [self.answers["b"], self.answers["a"]] if self.swapped else [self.answers["a"], self.answers["b"]]

    def role(self, choice: str) -> str:
        """A choice on the page ("A", "B", "tie", "bad") as the session's role ("a", "b", "tie", "bad")."""
        if choice in ("tie", "bad"):
            return choice
        left = "b" if self.swapped else "a"
        return left if choice == "A" else ("a" if left == "b" else "b")


@dataclass(frozen=True)
class Session:
    id: str                      # the MLflow run id
    model: str
    a: str                       # version numbers
    b: str
    a_ref: str                   # as asked (an alias or a number)
    b_ref: str
    source: str
    reviewers: int
    overlap: int
    seed: int
    items: list[Item]
    seats: dict[str, list[str]] = field(default_factory=dict)   # "1".. -> item ids, in the order shown

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(item_id)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Session":
        raw = json.loads(text)
        raw["items"] = [Item(**i) for i in raw["items"]]
        return cls(**raw)


# ---- pure decisions ---------------------------------------------------------------------
def stratified_sample(strata: list[str], n: int, seed: int) -> list[int]:
    """`n` row positions, each stratum represented in proportion to its size (largest remainder),
    rows drawn at random within it; all rows when there are no more than `n`."""
    if n >= len(strata):
        return list(range(len(strata)))
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    exact = {s: n * len(rows) / len(strata) for s, rows in groups.items()}
    take = {s: int(x) for s, x in exact.items()}
    for s in sorted(exact, key=lambda s: (-(exact[s] - take[s]), s))[:n - sum(take.values())]:
        take[s] += 1
    rng = random.Random(seed)
    return sorted(i for s in sorted(groups) for i in rng.sample(groups[s], take[s]))


def sides(n: int, seed: int) -> list[bool]:
    """Which items show version b on the left: exactly half (n // 2), in a random order, so the
    sides are balanced and the order says nothing."""
    flags = [True] * (n // 2) + [False] * (n - n // 2)
    random.Random(f"sides-{seed}").shuffle(flags)
    return flags


def assign(ids: list[str], reviewers: int, overlap: int, seed: int) -> dict[str, list[str]]:
    """Seats "1".."reviewers": the first `overlap` items go to every seat (agreement is measured
    on them), the rest are dealt round-robin; each seat's items come in its own random order."""
    if reviewers < 1:
        raise ReviewError("--reviewers must be at least 1")
    if not 0 <= overlap <= len(ids):
        raise ReviewError(f"--overlap {overlap} must be between 0 and the {len(ids)} items of the session")
    if reviewers > 1 and overlap < 2:
        raise ReviewError(f"with {reviewers} reviewers, --overlap must be at least 2: agreement is measured on "
                          "the items every reviewer judges")
    seats = {str(s + 1): list(ids[:overlap]) for s in range(reviewers)}
    for k, item in enumerate(ids[overlap:]):
        seats[str(k % reviewers + 1)].append(item)
    rng = random.Random(f"seats-{seed}")
    for seat in seats.values():
        rng.shuffle(seat)
    return seats


def strata_of(frame) -> list[str]:
    """The stratum of each test row: its label; without labels (generation), the input's length
    tercile (short / medium / long), so long and short inputs are both judged."""
    if "label" in frame.columns:
        return [str(x) for x in frame["label"]]
    lengths = frame["text"].str.len()
    cuts = lengths.quantile([1 / 3, 2 / 3]).tolist()
    return ["short" if x <= cuts[0] else "medium" if x <= cuts[1] else "long" for x in lengths]


# ---- the test rows the versions were registered with ----------------------------------
def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_split(root: Path, processed_dir: str, md5: str) -> Path:
    """The test split whose DVC md5 the version recorded (`data.test_md5`): the project's file when
    it is that version, else DVC's cache copy of it; a clear error when neither is."""
    if not md5:
        raise ReviewError("the versions record no test split (version tag data.test_md5): they were not "
                          "registered by `adaptflow run`; review sessions sample the test split they were tested on")
    here = root / processed_dir / "test.parquet"
    if here.is_file() and md5_of(here) == md5:
        return here
    cached = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    if cached.is_file():
        return cached
    raise ReviewError(f"the test split the versions were tested on (md5 {md5}) is neither {here} nor in DVC's cache "
                      f"({cached}); fetch that data version (`dvc pull`, or `git checkout` the commit of that "
                      "run and `dvc checkout`)")


# ---- building one -----------------------------------------------------------------------
def resolve_version(client, model: str, ref: str) -> str:
    """A version number from "3" or an alias ("champion", "@challenger")."""
    from mlflow.exceptions import MlflowException

    ref = ref.lstrip("@")
    try:
        mv = client.get_model_version(model, ref) if ref.isdigit() else client.get_model_version_by_alias(model, ref)
    except MlflowException as exc:
        raise ReviewError(f"{model} has no {'version' if ref.isdigit() else 'alias @'}{ref}") from exc
    return str(mv.version)


def answer(prediction, i: int) -> dict:
    """One text's answer as the page shows it: the text, or the label with its confidence."""
    if prediction.outputs is not None:
        return {"text": prediction.outputs[i]}
    row = prediction.probs[i]
    best = int(row.argmax())
    return {"label": prediction.labels[best], "confidence": round(float(row[best]), 4)}


def item_score(ans: dict, reference: str) -> float:
    """The automatic metric per item: sentence chrF (0-1) against the reference text, or 1/0 for
    a correct/wrong label."""
    if "text" in ans:
        from sacrebleu.metrics import CHRF

        return round(CHRF().sentence_score(ans["text"], [reference]).score / 100, 4)
    return 1.0 if str(ans["label"]) == reference else 0.0


def _predict(client, model: str, version: str, texts: list[str], work: Path):
    from tasks.artifacts.fetch import fetch_version, registered_base
    from tasks.artifacts.predictor import load_saved, predict, read_version

    folder = fetch_version(model, version, work / f"v{version}")
    predictor = load_saved(read_version(folder, registered_base(model, version, client)))
    return predict(predictor, texts)


def build_session(client, *, root: Path, processed_dir: str, experiment: str, model: str, a_ref: str, b_ref: str,
                  n: int, source: str = "test", reviewers: int = 1, overlap: int = 0, seed: int = 0) -> Session:
    """Sample, have both versions answer, randomize sides, deal seats, log the session run."""
    import pandas as pd

    import mlflow

    if source != "test":
        raise ReviewError(f"--from {source}: only `test` is possible; the outcome store keeps figures per request, "
                          "never the request's text, so stored traffic cannot be shown to reviewers")
    if n < 2:
        raise ReviewError("--n must be at least 2")
    a, b = resolve_version(client, model, a_ref), resolve_version(client, model, b_ref)
    if a == b:
        raise ReviewError(f"--a {a_ref} and --b {b_ref} are both {model} v{a}: a review compares two versions")
    md5s = {v: client.get_model_version(model, v).tags.get("data.test_md5", "") for v in (a, b)}
    if md5s[a] != md5s[b]:
        raise ReviewError(f"{model} v{a} and v{b} were tested on different test splits ({md5s[a][:8] or 'none'} vs "
                          f"{md5s[b][:8] or 'none'}): a row of one may be a training row of the other; review "
                          "versions of the same data version")
    frame = pd.read_parquet(test_split(root, processed_dir, md5s[b]))
    reference = "label" if "label" in frame.columns else "target"
    strata = strata_of(frame)
    picked = stratified_sample(strata, n, seed)
    rows = frame.iloc[picked].reset_index(drop=True)
    texts = [str(t) for t in rows["text"]]
    with tempfile.TemporaryDirectory() as tmp:
        predictions = {role: _predict(client, model, v, texts, Path(tmp)) for role, v in (("a", a), ("b", b))}
    flips, rng = sides(len(rows), seed), random.Random(f"ids-{seed}")
    order = list(range(len(rows)))
    rng.shuffle(order)   # item ids and the overlap are drawn in a random order, not the file's
    items = []
    for k in order:
        answers = {role: answer(p, k) for role, p in predictions.items()}
        ref = str(rows[reference].iloc[k])
        items.append(Item(id=secrets.token_hex(8), input=texts[k], reference=ref, stratum=strata[picked[k]],
                          answers=answers, swapped=flips[k],
                          scores={role: item_score(ans, ref) for role, ans in answers.items()}))
    seats = assign([it.id for it in items], reviewers, min(overlap, len(items)) if reviewers > 1 else 0, seed)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"review {model} v{a} vs v{b}") as run:
        mlflow.set_tags({SESSION_TAG: "session", "review.model": model, "review.a": a, "review.b": b,
                         "review.state": "open"})
        mlflow.log_params({"model": model, "a": a, "b": b, "a_ref": a_ref, "b_ref": b_ref, "n": len(items),
                           "source": source, "reviewers": reviewers, "overlap": overlap, "seed": seed})
        session = Session(id=run.info.run_id, model=model, a=a, b=b, a_ref=a_ref, b_ref=b_ref, source=source,
                          reviewers=reviewers, overlap=overlap, seed=seed, items=items, seats=seats)
        mlflow.log_text(session.to_json(), ITEMS_ARTIFACT)
    return session


def load_session(client, session_id: str) -> Session:
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(session_id)
        if run.data.tags.get(SESSION_TAG) != "session":
            raise ReviewError(f"run {session_id} is not a review session (`adaptflow review create` makes one)")
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(session_id, ITEMS_ARTIFACT, tmp)
            return Session.from_json(Path(path).read_text())
    except MlflowException as exc:
        raise ReviewError(f"no review session {session_id} in this store ({exc.message.splitlines()[0]})") from exc
