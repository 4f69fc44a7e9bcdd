"""What the review commands and the review-create flow do, once: build a session from the
settings, serve its page, close it with a verdict."""
from __future__ import annotations

from pathlib import Path

from tasks.review.session import Session, build_session, load_session
from tasks.review.verdict import Verdict, compute, record
from tasks.review.votes import VoteStore


def vote_store(settings) -> VoteStore:
    """The outcome store's database (outcomes.store), where votes are kept beside serving's rows."""
    from tasks.config.stores import database_url

    return VoteStore(database_url("outcomes.store", settings.outcomes.store, settings.root))


def create(client, settings, *, model: str, a: str, b: str, n: int, source: str, reviewers: int, overlap: int,
           seed: int) -> Session:
    return build_session(client, root=Path(settings.root), processed_dir=settings.data.processed_dir,
                         experiment=settings.review.experiment, model=model, a_ref=a, b_ref=b, n=n, source=source,
                         reviewers=reviewers, overlap=overlap, seed=seed)


def close(client, settings, session_id: str) -> Verdict:
    """The verdict of the votes so far, recorded on the session run and both versions."""
    session = load_session(client, session_id)
    store = vote_store(settings)
    try:
        verdict = compute(session, store.votes(session.id))
    finally:
        store.dispose()
    record(client, session, verdict)
    return verdict


def summary(verdict: Verdict) -> str:
    w = verdict.win
    kappa = "n/a" if verdict.agreement != verdict.agreement else f"{verdict.agreement:.3f}"
    return (f"{verdict.model} v{verdict.b} over v{verdict.a}: win rate {w.rate:.3f} (95 % {w.lower:.3f} .. "
            f"{w.upper:.3f}; {w.b_wins} better, {w.a_wins} worse, {w.ties} ties, {w.both_bad} both bad; "
            f"{w.judgments} judgments); agreement {verdict.agreement_measure} {kappa} on {verdict.agreement_items} "
            f"shared items; tags {verdict.tags or '-'}")
