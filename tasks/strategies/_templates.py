"""Classification prompt templates (few_shot, retrieval_few_shot): the packaged ones, their parts,
what a template may hold, and filling one in without str.format."""
from __future__ import annotations

import string

DEFAULT_TEMPLATES = {
    # name@version: changing a template's text means a new version, never an edit in place.
    "review-sentiment@v1": {
        "instruction": "Classify the sentiment of each movie review as positive or negative.\n\n",
        "example": "Review: {text}\nSentiment:",
        "answer": " {label}",
        "separator": "\n\n",
    },
    "critic-verdict@v1": {
        "instruction": "Here are film critics' snippets, each followed by whether the critic liked the film.\n\n",
        "example": "Snippet: {text}\nThe critic's verdict:",
        "answer": " {label}",
        "separator": "\n\n",
    },
}


TEMPLATE_PARTS = {"instruction": (), "example": ("{text}",), "answer": ("{label}",), "separator": ()}
# The parts filled in with `fill` (instruction and separator are used as written).
FILLED = {"example": "text", "answer": "label"}


def template_problem(name: str, template: dict[str, str]) -> str | None:
    """Why a template cannot be used (None: it can). A filled part may hold only its own plain
    placeholder: a template stored with a version is data, and str.format would honour a format
    spec (`{text:>2000000000}` asks for 2 GB), a conversion or an attribute (`{text.__class__}`)."""
    for part, allowed in FILLED.items():
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template[part]) if f is not None]
        except ValueError as exc:   # a lone { or }
            return f"template {name!r}: {part} is not a valid template ({exc}); write a brace as {{{{ or }}}}"
        bad = [f"{{{f}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}" for f, spec, conv in fields
               if f != allowed or spec or conv]
        if bad:
            return (f"template {name!r}: {part} may hold only the plain placeholder {{{allowed}}}, not "
                    f"{', '.join(bad[:3])} (no format specs, conversions, indexes or other fields)")
    return None


def fill(template: str, **values: str) -> str:
    """`template` with each plain `{field}` replaced (`{{` and `}}` are braces), never through
    str.format (see template_problem)."""
    return "".join(literal + (values[f] if f is not None else "") for literal, f, _, _ in string.Formatter().parse(template))
