"""Review votes and reviewer seats, in the outcome store's database (outcomes.store: SQLite under
the project by default, PostgreSQL in production), beside its tables and through its engine.

One vote per reviewer per item is the database's rule (a unique key), not the page's: a second
vote is refused even from two tabs at once. A vote is committed before the page gets its 200."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, UniqueConstraint, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from tasks.outcomes.store import OutcomeStore

METADATA = MetaData()
VOTES = Table(
    "adaptflow_review_votes", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session", String(64), nullable=False),      # the session's MLflow run id
    Column("item", String(32), nullable=False),         # the item's opaque id
    Column("reviewer", String(256), nullable=False),
    Column("choice", String(8), nullable=False),        # as shown: A (left), B (right), tie, bad
    Column("tags", Text, nullable=False),               # JSON list of reason tags
    Column("at", Float, nullable=False),
    UniqueConstraint("session", "item", "reviewer", name="uq_adaptflow_review_vote"),
)
SEATS = Table(
    "adaptflow_review_seats", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session", String(64), nullable=False),
    Column("seat", String(8), nullable=False),
    Column("reviewer", String(256), nullable=False),
    UniqueConstraint("session", "seat", name="uq_adaptflow_review_seat"),
    UniqueConstraint("session", "reviewer", name="uq_adaptflow_review_reviewer"),
)
SHOWN_CHOICES = ("A", "B", "tie", "bad")
TAGS = ("wrong fact", "off-policy", "wrong format", "style")   # keys 1-4 on the page


class DuplicateVote(ValueError):
    pass


@dataclass(frozen=True)
class Vote:
    session: str
    item: str
    reviewer: str
    choice: str
    tags: list[str]
    at: float


# A vote that finds SQLite busy past its 5 s timeout (a new database switching to WAL while the
# page's threads write: seen once on a loaded 2-core machine) is tried again this many times.
BUSY_RETRIES = 3


class VoteStore:
    def __init__(self, url: str):
        self.store = OutcomeStore(url)   # its engine: SQLite in WAL with FULL sync, or PostgreSQL
        self.engine = self.store.engine
        self._created = False
        self._lock = threading.Lock()    # the page's worker threads create the tables once

    def create(self) -> None:
        with self._lock:
            if not self._created:
                try:
                    METADATA.create_all(self.engine)
                except Exception:   # another process created them between check and create
                    METADATA.create_all(self.engine)
                self._created = True

    def vote(self, session: str, item: str, reviewer: str, choice: str, tags: list[str]) -> Vote:
        """Store one vote (committed when this returns); DuplicateVote when this reviewer already
        voted on this item; ValueError for a choice or tag that does not exist."""
        if choice not in SHOWN_CHOICES:
            raise ValueError(f"choice must be one of {SHOWN_CHOICES}, not {choice!r}")
        unknown = sorted(set(tags) - set(TAGS))
        if unknown:
            raise ValueError(f"unknown reason tag(s) {unknown}; known: {list(TAGS)}")
        self.create()
        vote = Vote(session, item, reviewer, choice, sorted(set(tags)), time.time())
        for attempt in range(BUSY_RETRIES + 1):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(VOTES), [{**vote.__dict__, "tags": json.dumps(vote.tags)}])
                return vote
            except IntegrityError as exc:
                raise DuplicateVote(f"{reviewer} already voted on item {item}") from exc
            except OperationalError:
                if attempt == BUSY_RETRIES:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return vote

    def votes(self, session: str, reviewer: str | None = None) -> list[Vote]:
        self.create()
        query = select(VOTES).where(VOTES.c.session == session)
        if reviewer is not None:
            query = query.where(VOTES.c.reviewer == reviewer)
        with self.engine.connect() as conn:
            return [Vote(r.session, r.item, r.reviewer, r.choice, json.loads(r.tags), r.at)
                    for r in conn.execute(query.order_by(VOTES.c.id))]

    def seat(self, session: str, reviewer: str, seats: int) -> str | None:
        """The reviewer's seat in the session: the one they hold, else the first free one (None:
        all `seats` are taken by others). Two reviewers signing in at once never share one."""
        self.create()
        for _ in range(seats + 1):
            with self.engine.connect() as conn:
                rows = {r.seat: r.reviewer for r in conn.execute(select(SEATS).where(SEATS.c.session == session))}
            mine = [s for s, who in rows.items() if who == reviewer]
            if mine:
                return mine[0]
            free = [str(s) for s in range(1, seats + 1) if str(s) not in rows]
            if not free:
                return None
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(SEATS), [{"session": session, "seat": free[0], "reviewer": reviewer}])
                return free[0]
            except IntegrityError:
                continue   # taken meanwhile: look again
        return None

    def seats(self, session: str) -> dict[str, str]:
        self.create()
        with self.engine.connect() as conn:
            return {r.reviewer: r.seat for r in conn.execute(select(SEATS).where(SEATS.c.session == session))}

    def dispose(self) -> None:
        self.engine.dispose()
