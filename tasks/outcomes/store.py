"""The outcome store's tables and the few queries on them (SQLAlchemy Core: one code path for
SQLite and PostgreSQL). Outcome rows hold figures only; a request's texts are stored (redacted)
only with outcomes.store_texts on, in their own table, and feedback has its own table
(tasks/outcomes/feedback.py reads and writes both)."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields

from sqlalchemy import (BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, create_engine, delete, event, insert, select)

log = logging.getLogger("adaptflow.outcomes")
METADATA = MetaData()
_ID = BigInteger().with_variant(Integer, "sqlite")   # SQLite's autoincrement needs INTEGER

OUTCOMES = Table(
    "adaptflow_outcomes", METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("request_id", String(32), nullable=False),
    Column("at", Float, nullable=False),                 # UNIX time the request arrived
    Column("replica", String(128), nullable=False),
    Column("model", String(256), nullable=False),
    Column("version", String(20), nullable=False),
    Column("arm", String(32), nullable=False),            # champion / canary (split), an alias, or pinned
    Column("routed", Boolean, nullable=False),            # True: the canary split chose the version
    Column("route", String(32), nullable=False),          # predict / generate
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("texts", Integer, nullable=False),
    Column("blocked", Integer, nullable=False),           # outputs the output policy blocked
    Column("abstained", Integer, nullable=False),         # classifications under policy.min_confidence
    Column("answers", Text, nullable=False),              # JSON: labels, or output lengths in characters
    Index("ix_adaptflow_outcomes_model_at", "model", "at"),
    Index("ix_adaptflow_outcomes_request_id", "request_id"),   # POST /feedback looks an answer up by id
)
# One row per answered request with outcomes.store_texts on: its inputs and outputs after the
# output policy's personal-data redaction. A table of its own: stores made before the setting
# existed need no migration, and retention deletes these rows with the outcomes.
REQUEST_TEXTS = Table(
    "adaptflow_request_texts", METADATA,
    Column("request_id", String(32), primary_key=True),
    Column("at", Float, nullable=False),
    Column("model", String(256), nullable=False),
    Column("version", String(20), nullable=False),
    Column("task", String(40), nullable=False),
    Column("inputs", Text, nullable=False),              # JSON list of redacted input texts
    Column("outputs", Text, nullable=False),             # JSON list: labels, or redacted generated texts
    Column("labels", Text, nullable=False),              # JSON list: the version's label set ([] for generation)
    Index("ix_adaptflow_request_texts_at", "at"),
)
# User feedback on a served answer (POST /feedback): kept past outcomes.retention_days, since
# fold-feedback turns it into data. One row per (request, item, client): a repeat is idempotent.
FEEDBACK = Table(
    "adaptflow_feedback", METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("request_id", String(32), nullable=False),
    Column("item", Integer, nullable=False),              # which text of the request
    Column("client", String(64), nullable=False),          # a hash of the client's key, never the key
    Column("at", Float, nullable=False),
    Column("model", String(256), nullable=False),
    Column("version", String(20), nullable=False),
    Column("task", String(40), nullable=False),
    Column("input", Text, nullable=False),                 # the redacted input text
    Column("text_hash", String(64), nullable=False),       # of the normalised input: duplicates, conflicts
    Column("answer", Text, nullable=True),                 # what the model answered (label or text)
    Column("label", String(256), nullable=True),           # classification: the right label
    Column("output", Text, nullable=True),                 # generation: the corrected output
    Column("rating", Integer, nullable=True),              # generation: 1..5
    UniqueConstraint("request_id", "item", "client", name="uq_adaptflow_feedback_request_item_client"),
    Index("ix_adaptflow_feedback_model_at", "model", "at"),
    Index("ix_adaptflow_feedback_client_at", "client", "at"),
)
EVENTS = Table(
    "adaptflow_serving_events", METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("replica", String(128), nullable=False),
    Column("model", String(256), nullable=False),
    Column("version", String(20), nullable=False),
    Column("kind", String(32), nullable=False),            # refused: the version failed to load
    Column("detail", Text, nullable=False),
    Index("ix_adaptflow_serving_events_model_at", "model", "at"),
)


@dataclass(frozen=True)
class Outcome:
    request_id: str
    at: float
    replica: str
    model: str
    version: str
    arm: str
    routed: bool
    route: str
    status: int
    latency_ms: float
    texts: int
    blocked: int = 0
    abstained: int = 0
    answers: list = field(default_factory=list)

    def row(self) -> dict:
        return {**asdict(self), "answers": json.dumps(self.answers)}

    @classmethod
    def from_row(cls, row) -> "Outcome":
        values = {f.name: row._mapping[f.name] for f in fields(cls)}
        return cls(**{**values, "answers": json.loads(values["answers"])})


@dataclass(frozen=True)
class RequestText:
    request_id: str
    at: float
    model: str
    version: str
    task: str
    inputs: list
    outputs: list
    labels: list

    def row(self) -> dict:
        return {**asdict(self), **{k: json.dumps(getattr(self, k)) for k in ("inputs", "outputs", "labels")}}


@dataclass(frozen=True)
class ServingEvent:
    at: float
    replica: str
    model: str
    version: str
    kind: str
    detail: str


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL: replicas on one machine write while the check reads; synchronous stays FULL (SQLite's
    # default), so a committed row survives a power cut, as "durable before the 200" promises.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


class OutcomeStore:
    def __init__(self, url: str):
        self.url = url
        sqlite = url.startswith("sqlite")
        # A store that does not answer must not hold requests: connect within 3 s, then give up
        # (the recorder buffers the rows and tries again).
        connect_args = {"timeout": 5} if sqlite else {"connect_timeout": 3}
        self.engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True, future=True)
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._created = False

    def create(self) -> None:
        """The tables, if missing (two replicas starting at once: the loser's CREATE fails and
        the tables are there)."""
        if self._created:
            return
        try:
            METADATA.create_all(self.engine)
        except Exception:
            METADATA.create_all(self.engine)   # the other replica created them between check and create
        self._created = True

    def write(self, outcomes: list[Outcome], events: list[ServingEvent] = (), texts: list[RequestText] = ()) -> None:
        """One transaction for the batch: every row or none (a retry never writes a row twice)."""
        if not outcomes and not events and not texts:
            return
        self.create()
        with self.engine.begin() as conn:
            if outcomes:
                conn.execute(insert(OUTCOMES), [o.row() for o in outcomes])
            if texts:
                conn.execute(insert(REQUEST_TEXTS), [t.row() for t in texts])
            if events:
                conn.execute(insert(EVENTS), [asdict(e) for e in events])

    def outcomes(self, model: str, since: float, until: float | None = None) -> list[Outcome]:
        self.create()
        query = select(OUTCOMES).where(OUTCOMES.c.model == model, OUTCOMES.c.at >= since)
        if until is not None:
            query = query.where(OUTCOMES.c.at < until)
        with self.engine.connect() as conn:
            return [Outcome.from_row(r) for r in conn.execute(query.order_by(OUTCOMES.c.at, OUTCOMES.c.id))]

    def events(self, model: str, since: float, kind: str | None = None) -> list[ServingEvent]:
        self.create()
        query = select(EVENTS).where(EVENTS.c.model == model, EVENTS.c.at >= since)
        if kind is not None:
            query = query.where(EVENTS.c.kind == kind)
        with self.engine.connect() as conn:
            return [ServingEvent(**{f.name: r._mapping[f.name] for f in fields(ServingEvent)})
                    for r in conn.execute(query.order_by(EVENTS.c.at))]

    def prune(self, before: float) -> int:
        """Delete rows older than `before` (UNIX time); returns how many outcome rows went."""
        self.create()
        with self.engine.begin() as conn:
            gone = conn.execute(delete(OUTCOMES).where(OUTCOMES.c.at < before)).rowcount
            conn.execute(delete(EVENTS).where(EVENTS.c.at < before))
            conn.execute(delete(REQUEST_TEXTS).where(REQUEST_TEXTS.c.at < before))
        return gone or 0

    def dispose(self) -> None:
        self.engine.dispose()
