"""The review page (`adaptflow review serve SESSION`): a reviewer signs in, judges the items of
their seat one at a time (A / B / tie / both bad, reason tags, keys a b t x and 1-4), and each
vote is committed to the vote store before the page gets its 200.

Blinding: nothing the page or its JSON carries names a version number, alias, strategy, the
model, or another reviewer's vote; items are addressed by their opaque ids, answers are shown
in the recorded random order (`Item.shown`), and every text is set with textContent.

Sign-in follows the identity rules promote uses (tasks/registry/identity.py): on a local store
the name given is recorded (not authenticated); on an MLflow server the reviewer gives their
MLflow account and password and the server says who they are; the pipeline's account is refused.
"""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

# At module level: FastAPI resolves the handlers' annotations (strings here) in this module's
# namespace. Only `adaptflow review serve` and the tests import this module.
from fastapi import Request
from pydantic import BaseModel

from tasks.review.session import Session
from tasks.review.votes import TAGS, DuplicateVote, VoteStore

COOKIE = "adaptflow_review"


class SignIn(BaseModel):
    name: str
    password: str = ""


class Ballot(BaseModel):
    item: str
    choice: str
    tags: list[str] = []


class SignInError(ValueError):
    pass


def sign_in(tracking_uri: str, name: str, password: str, pipeline_account: str | None) -> str:
    """The reviewer's identity, as promote establishes one."""
    from tasks.registry.errors import GovernanceError
    from tasks.registry.identity import is_server, server_user

    name = (name or "").strip()
    if not name:
        raise SignInError("give your name (on an MLflow server: your MLflow account)")
    if is_server(tracking_uri):
        from mlflow.utils.rest_utils import MlflowHostCreds

        try:
            name = server_user(tracking_uri, MlflowHostCreds(tracking_uri, username=name, password=password))
        except GovernanceError as exc:
            raise SignInError(str(exc)) from exc
    if pipeline_account and name == pipeline_account:
        raise SignInError(f"the pipeline's account ({pipeline_account}) may not review; sign in with your own")
    return name


@dataclass
class Reviewer:
    name: str
    seat: str


def next_item(session: Session, votes: VoteStore, seat_items: list[str], reviewer: str) -> dict:
    """What the page shows a reviewer next: progress, and the first of their seat's items they have
    not judged (blinded: its id, input and the two answers in their recorded order)."""
    done = {v.item for v in votes.votes(session.id, reviewer)}
    todo = [i for i in seat_items if i not in done]
    out = {"done": len(seat_items) - len(todo), "total": len(seat_items)}
    if not todo:
        return {**out, "finished": True}
    item = session.item(todo[0])
    return {**out, "finished": False, "item": {"id": item.id, "input": item.input, "answers": item.shown()}}


def create_app(session: Session, votes: VoteStore, tracking_uri: str, pipeline_account: str | None = None):
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    signed: dict[str, Reviewer] = {}
    lock = threading.Lock()
    seats = {seat: list(ids) for seat, ids in session.seats.items()}

    def who(request: Request) -> Reviewer | None:
        return signed.get(request.cookies.get(COOKIE, ""))

    progress = lambda reviewer: next_item(session, votes, seats[reviewer.seat], reviewer.name)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE

    @app.post("/api/sign-in")
    def api_sign_in(body: SignIn):
        try:
            name = sign_in(tracking_uri, body.name, body.password, pipeline_account)
        except SignInError as exc:
            return JSONResponse({"error": str(exc)}, status_code=403)
        with lock:
            seat = votes.seat(session.id, name, len(seats))
        if seat is None:
            return JSONResponse({"error": f"all {len(seats)} reviewer seats of this session are taken"},
                                status_code=403)
        token = secrets.token_urlsafe(24)
        signed[token] = Reviewer(name, seat)
        response = JSONResponse({"reviewer": name, "tags": list(TAGS)})
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/api/next")
    def api_next(request: Request):
        reviewer = who(request)
        if reviewer is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        return progress(reviewer)

    @app.post("/api/vote")
    def api_vote(body: Ballot, request: Request):
        reviewer = who(request)
        if reviewer is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        if body.item not in seats[reviewer.seat]:
            return JSONResponse({"error": "that item is not yours to judge"}, status_code=403)
        try:
            votes.vote(session.id, body.item, reviewer.name, body.choice, body.tags)
        except DuplicateVote:
            return JSONResponse({"error": "you already judged this item; one vote per item"}, status_code=409)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return progress(reviewer)

    return app


def serve(app, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Blinded review</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em;margin:1em 0}
.answer{border:1px solid #bbb;border-radius:6px;padding:.8em;white-space:pre-wrap;min-height:3em}
.answer h3{margin:0 0 .5em 0}.input{background:#f5f5f5;border-radius:6px;padding:.8em;white-space:pre-wrap}
button{font-size:1em;padding:.5em 1em;margin:.2em}button.on{background:#345;color:#fff}
progress{width:100%;height:1.2em}.hint{color:#666;font-size:.9em}#error{color:#b00}
</style></head><body>
<h1>Blinded review</h1>
<p class="hint">Two answers to the same input, in a random order. Pick the better one; nothing on this page says
which version wrote which.</p>
<div id="signin"><label>Name <input id="name" autocomplete="username"></label>
<label>Password (MLflow server only) <input id="password" type="password" autocomplete="current-password"></label>
<button id="go">Sign in</button></div>
<div id="work" hidden>
<progress id="progress" value="0" max="1"></progress> <span id="count"></span>
<h2>Input</h2><div class="input" id="input"></div>
<div class="pair"><div class="answer"><h3>A</h3><div id="answer-a"></div></div>
<div class="answer"><h3>B</h3><div id="answer-b"></div></div></div>
<div id="tags"></div>
<div><button id="vote-A">A is better (a)</button><button id="vote-B">B is better (b)</button>
<button id="vote-tie">Tie (t)</button><button id="vote-bad">Both bad (x)</button></div>
<p class="hint">Keys: a, b, t, x to vote; 1-4 to toggle a reason tag.</p>
</div>
<div id="finished" hidden><h2>Finished: thank you.</h2><p>Your votes are stored. The verdict is computed when
the session is closed.</p></div>
<p id="error" role="alert"></p>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let current = null, tags = [], chosen = new Set(), busy = false;
function show(ans, box) {
  box.textContent = "";
  if ("text" in ans) { box.textContent = ans.text; return; }
  const b = document.createElement("strong"); b.textContent = ans.label; box.appendChild(b);
  const c = document.createElement("div"); c.textContent = "confidence " + (100 * ans.confidence).toFixed(1) + " %";
  box.appendChild(c);
}
function render(state) {
  $("progress").max = state.total; $("progress").value = state.done;
  $("count").textContent = state.done + " / " + state.total;
  if (state.finished) { $("work").hidden = true; $("finished").hidden = false; current = null; return; }
  current = state.item; chosen = new Set();
  $("input").textContent = current.input;
  show(current.answers[0], $("answer-a")); show(current.answers[1], $("answer-b"));
  drawTags();
}
function drawTags() {
  const box = $("tags"); box.textContent = "";
  tags.forEach((t, i) => {
    const b = document.createElement("button"); b.textContent = (i + 1) + " " + t;
    b.className = chosen.has(t) ? "on" : ""; b.dataset.tag = t; b.onclick = () => toggle(t); box.appendChild(b);
  });
}
function toggle(t) { chosen.has(t) ? chosen.delete(t) : chosen.add(t); drawTags(); }
async function call(path, body) {
  const r = await fetch(path, body === undefined ? {} :
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) { $("error").textContent = data.error || ("HTTP " + r.status); return null; }
  $("error").textContent = ""; return data;
}
async function vote(choice) {
  if (!current || busy) return;
  busy = true;
  const state = await call("/api/vote", {item: current.id, choice: choice, tags: [...chosen]});
  busy = false;
  if (state) render(state);
}
$("go").onclick = async () => {
  const r = await call("/api/sign-in", {name: $("name").value, password: $("password").value});
  if (!r) return;
  tags = r.tags; $("signin").hidden = true; $("work").hidden = false;
  const state = await call("/api/next"); if (state) render(state);
};
["A", "B", "tie", "bad"].forEach((c) => { $("vote-" + c).onclick = () => vote(c); });
document.addEventListener("keydown", (e) => {
  if (!current || e.target.tagName === "INPUT") return;
  const keys = {a: "A", b: "B", t: "tie", x: "bad"};
  if (keys[e.key]) { vote(keys[e.key]); return; }
  const n = parseInt(e.key, 10);
  if (n >= 1 && n <= tags.length) toggle(tags[n - 1]);
});
</script></body></html>"""
