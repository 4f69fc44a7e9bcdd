"""The report's human-review section: the blinded verdict (tasks/review) the version this run
registered carries as `review.*` tags once a session on it is closed. Read as strings from the
registry, so evaluation does not import the review package."""
from __future__ import annotations

import html

SHOWN = (("review.judgments", "judgments"), ("review.win_rate", "win rate (ties half)"),
         ("review.win_rate_lower", "95 % interval, lower"), ("review.win_rate_upper", "95 % interval, upper"),
         ("review.agreement", "agreement between reviewers"), ("review.agreement_measure", "measure"),
         ("review.opponent", "compared with version"), ("review.session", "session (MLflow run)"),
         ("review.closed_at", "closed at"))


def version_review(client, decision: dict) -> dict[str, str]:
    """The registered version's review tags ({} before any verdict, or for a run that registered
    nothing or before decision.json named the model)."""
    from mlflow.exceptions import MlflowException

    model, version = decision.get("model"), decision.get("version")
    if not model or version is None:
        return {}
    try:
        tags = client.get_model_version(model, str(version)).tags
    except MlflowException:
        return {}
    return {k: v for k, v in tags.items() if k.startswith("review.")}


def review_section(review: dict[str, str], decision: dict) -> str:
    e = html.escape
    if not decision.get("model"):
        return ""
    name = f"{decision['model']} v{decision.get('version')}"
    if not review:
        return (f'<h2 id="human-review">Human review</h2><p>No blinded review verdict on {e(name)} yet: '
                f"<code>adaptflow review create {e(decision['model'])} --b {e(str(decision.get('version')))}</code> "
                "builds a session (docs/reviewing.md).</p>")
    rows = "".join(f"<tr><th>{e(label)}</th><td>{e(review[key])}</td></tr>" for key, label in SHOWN if key in review)
    return (f'<h2 id="human-review">Human review</h2><p>Reviewers judged {e(name)} blind, side by side with '
            f"another version; its win rate counts a tie or both-bad as half (docs/reviewing.md).</p>"
            f'<table id="review">{rows}</table>')
