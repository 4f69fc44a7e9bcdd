"""User feedback on served answers: the rules a feedback row must pass (pure: `screen`), and
storing it durably (one transaction: look the answer up, apply the rules to the client's recent
feedback, insert). fold-feedback replays the same `screen` over every stored row in order, so a
rule two replicas raced past at request time still holds on the data.

The rules (settings in `feedback:`, tasks/config/feedback.py; docs/feedback.md):
- over-long: a corrected output over max_text_chars, or feedback on an input over max_input_chars,
  is refused (413);
- duplicate: a client's second feedback on the same input text (another request id, same
  normalised text) is refused (409); the same request id and item again is a repeat: idempotent
  (200, nothing new written) when the feedback is the same, 409 when it differs;
- cap: at most max_per_client accepted rows per client key over window_hours (429);
- flood: once a client has sent flood_min_rows rows in the window, a row that would make one
  label (or rating) more than flood_max_share of them is refused (429); on replay, a client whose
  accepted rows are such a flood loses all of them (the first flood_min_rows got in).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from tasks.config import FeedbackSettings
from tasks.outcomes.store import FEEDBACK, OUTCOMES, REQUEST_TEXTS, OutcomeStore

_WRITE_LOCK = threading.Lock()


class FeedbackRefused(ValueError):
    """Feedback the rules refuse; `status` is the HTTP status, the message names the rule."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FeedbackRow:
    request_id: str
    item: int
    client: str           # client_hash() of the key
    at: float
    model: str
    version: str
    task: str
    input: str
    text_hash: str
    answer: str | None = None
    label: str | None = None
    output: str | None = None
    rating: int | None = None

    @property
    def value(self) -> str:
        """What the flood rule counts: the label, else the rating, else 'corrected'."""
        return self.label if self.label is not None else (f"rating {self.rating}" if self.rating is not None
                                                         else "corrected")

    def same_feedback(self, other: "FeedbackRow") -> bool:
        return (self.label, self.output, self.rating) == (other.label, other.output, other.rating)

    @classmethod
    def from_row(cls, row) -> "FeedbackRow":
        return cls(**{f.name: row._mapping[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Answered:
    """A request this service answered, as the store holds it (its texts only with store_texts)."""
    request_id: str
    model: str
    version: str
    task: str
    inputs: list
    outputs: list
    labels: list


def client_hash(key: str) -> str:
    """The client's key as stored: a hash, so the store never holds a credential-like key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def text_hash(text: str) -> str:
    """Of the text as compared for duplicates and conflicts: lower case, whitespace folded (the
    data stage's normalise)."""
    return hashlib.sha256(" ".join(text.lower().split()).encode("utf-8")).hexdigest()


def screen(row: FeedbackRow, history: list[FeedbackRow], settings: FeedbackSettings) -> FeedbackRefused | None:
    """Why `row` is refused given the client's accepted rows in the window (`history`, same
    client, oldest first), or None. The repeat of a stored (request, item) is the caller's case."""
    if len(row.input) > settings.max_input_chars:
        return FeedbackRefused(413, f"the input of this answer is {len(row.input)} characters, over "
                                    f"feedback.max_input_chars={settings.max_input_chars}: not learned from")
    if row.output is not None and len(row.output) > settings.max_text_chars:
        return FeedbackRefused(413, f"the corrected output is {len(row.output)} characters, over "
                                    f"feedback.max_text_chars={settings.max_text_chars}")
    earlier = next((h for h in history if h.text_hash == row.text_hash and h.model == row.model), None)
    if earlier is not None:
        return FeedbackRefused(409, f"duplicate: this client already gave feedback on the same input text "
                                    f"(request {earlier.request_id}); one feedback per input per client")
    if len(history) >= settings.max_per_client:
        return FeedbackRefused(429, f"this client gave {len(history)} feedback rows in the last "
                                    f"{settings.window_hours:g} h, the limit (feedback.max_per_client)")
    if len(history) + 1 > settings.flood_min_rows:
        same = sum(h.value == row.value for h in history) + 1
        if same / (len(history) + 1) > settings.flood_max_share:
            return FeedbackRefused(429, f"flood: {same} of this client's {len(history) + 1} feedback rows in the last "
                                        f"{settings.window_hours:g} h would say {row.value!r}, over "
                                        f"feedback.flood_max_share={settings.flood_max_share:g}")
    return None


def replay(rows: list[FeedbackRow], settings: FeedbackSettings) -> tuple[list[FeedbackRow], list[tuple[FeedbackRow, str]]]:
    """(accepted, refused with the rule's message): `screen` applied to every row in stored order,
    each against its client's accepted rows in the window before it (fold-feedback's second look);
    then a client whose accepted rows number at least flood_min_rows with one label (or rating)
    above flood_max_share of them loses all of them: the request-time rule stops a flood at
    flood_min_rows, this keeps those first rows out of the data too."""
    accepted, refused, by_client = [], [], {}
    window = settings.window_hours * 3600
    for row in sorted(rows, key=lambda r: r.at):
        history = [h for h in by_client.get(row.client, []) if h.at > row.at - window]
        problem = screen(row, history, settings)
        if problem is None:
            accepted.append(row)
            by_client.setdefault(row.client, []).append(row)
        else:
            refused.append((row, str(problem)))
    flooding = {}
    for client, kept in by_client.items():
        top, count = Counter(r.value for r in kept).most_common(1)[0]
        if len(kept) >= settings.flood_min_rows and count / len(kept) > settings.flood_max_share:
            flooding[client] = (f"flood: {count} of this client's {len(kept)} accepted rows say {top!r}, over "
                                f"feedback.flood_max_share={settings.flood_max_share:g}; none of its rows are used")
    refused += [(r, flooding[r.client]) for r in accepted if r.client in flooding]
    return [r for r in accepted if r.client not in flooding], refused


def answered(store: OutcomeStore, request_id: str) -> Answered | None:
    """The answer `request_id` names with its stored texts; raises FeedbackRefused when the request is
    known but its texts were not stored, or it did not succeed; None when the id is unknown."""
    store.create()
    with store.engine.connect() as conn:
        texts = conn.execute(select(REQUEST_TEXTS).where(REQUEST_TEXTS.c.request_id == request_id)).first()
        if texts is not None:
            m = texts._mapping
            return Answered(request_id, m["model"], m["version"], m["task"], json.loads(m["inputs"]),
                            json.loads(m["outputs"]), json.loads(m["labels"]))
        outcome = conn.execute(select(OUTCOMES.c.status).where(OUTCOMES.c.request_id == request_id)).first()
    if outcome is None:
        return None
    if outcome.status != 200:
        raise FeedbackRefused(409, f"request {request_id} was not answered (status {outcome.status}): nothing to correct")
    raise FeedbackRefused(409, f"request {request_id} was answered, but its texts were not stored: feedback needs "
                               "them, so set outcomes.store_texts: true in params.yaml (texts are stored redacted "
                               "by the output policy's personal-data rules)")


def store_feedback(store: OutcomeStore, row: FeedbackRow, settings: FeedbackSettings) -> str:
    """Write `row` durably after the rules: 'recorded', or 'already recorded' (the same feedback
    on the same request item from the same client); FeedbackRefused otherwise. Committed before it
    returns: the caller answers 200 only after this. Within a replica the look-up-then-insert runs
    one at a time (a lock); across replicas the unique key settles a raced repeat, and a SQLite
    writer that lost the race for the file's lock tries again (up to 5 times)."""
    store.create()
    for attempt in range(5):
        try:
            with _WRITE_LOCK:
                return _store_once(store, row, settings)
        except IntegrityError:   # the same repeat, sent to two replicas at once: the other one won
            continue
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
    return _store_once(store, row, settings)


def _store_once(store: OutcomeStore, row: FeedbackRow, settings: FeedbackSettings) -> str:
    key = (FEEDBACK.c.request_id == row.request_id) & (FEEDBACK.c.item == row.item) & (FEEDBACK.c.client == row.client)
    with store.engine.begin() as conn:
        stored = conn.execute(select(FEEDBACK).where(key)).first()
        if stored is not None:
            return _repeat(FeedbackRow.from_row(stored), row)
        since = row.at - settings.window_hours * 3600
        history = [FeedbackRow.from_row(r) for r in conn.execute(
            select(FEEDBACK).where(FEEDBACK.c.client == row.client, FEEDBACK.c.at > since).order_by(FEEDBACK.c.at))]
        problem = screen(row, history, settings)
        if problem is not None:
            raise problem
        conn.execute(FEEDBACK.insert().values(**asdict(row)))
    return "recorded"


def _repeat(stored: FeedbackRow, row: FeedbackRow) -> str:
    if stored.same_feedback(row):
        return "already recorded"
    raise FeedbackRefused(409, f"feedback on request {row.request_id} item {row.item} is already recorded with "
                               "different content; feedback is not edited")


def feedback_rows(store: OutcomeStore, model: str, since: float = 0.0, until: float | None = None) -> list[FeedbackRow]:
    """Every stored feedback row of `model` in [since, until), oldest first."""
    store.create()
    query = select(FEEDBACK).where(FEEDBACK.c.model == model, FEEDBACK.c.at >= since)
    if until is not None:
        query = query.where(FEEDBACK.c.at < until)
    with store.engine.connect() as conn:
        return [FeedbackRow.from_row(r) for r in conn.execute(query.order_by(FEEDBACK.c.at, FEEDBACK.c.id))]
