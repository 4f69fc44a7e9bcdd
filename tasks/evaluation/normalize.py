"""Text folded before the output policy matches it (finding 8 of issue 27): a deny-list or a
personal-data pattern written for plain text must not be stepped round with look-alike
characters. The policy matches the text as written AND its folded form, so folding can only add
matches, never hide one.

What folding undoes, in order:
- compatibility forms (NFKC): full-width letters and digits (`ＡＣＭＥ`), ligatures, NBSP and the
  other no-break / typographic spaces become their plain forms;
- invisible characters: zero-width space / joiners, word joiner, BOM, soft hyphen, bidi marks
  (Unicode category Cf) are removed;
- confusables: the Cyrillic and Greek letters that look like Latin ones (`Асme`, with a Cyrillic
  А and с) become the Latin letter. A fixed table of the common look-alikes, not all of Unicode's
  confusables.txt (~6,000 entries, most of them symbols no deny-list is written in);
- separators: hyphen and dash variants become `-`, and a run of white space or of hyphens between
  words becomes one (`acme  bank`, `self--harm`).
"""
from __future__ import annotations

import re
import unicodedata

# Cyrillic and Greek letters drawn like a Latin letter in common fonts (Unicode confusables.txt,
# the single-letter Latin targets), lower and upper case.
_CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ɡ": "g", "һ": "h",
    "ԛ": "q", "ԝ": "w", "ӏ": "l",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ї": "I", "Ј": "J", "Ԁ": "D", "Һ": "H", "Ԛ": "Q",
    "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}
_FOLD = str.maketrans(_CONFUSABLES)
# Hyphens and dashes (U+2010..U+2015), the minus sign, the small / full-width hyphen-minus after NFKC.
_DASHES = re.compile(r"[\u2010-\u2015\u2212\u2043\ufe58\ufe63\uff0d]")
_SPACES = re.compile(r"\s+")
_HYPHENS = re.compile(r"\s*-[\s-]*")   # "a -- b", "a--b", "a - b" -> "a-b"


def fold(text: str) -> str:
    """`text` with look-alike characters, invisible characters and doubled separators undone
    (see the module's docstring)."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = _DASHES.sub("-", text.translate(_FOLD))
    return _HYPHENS.sub("-", _SPACES.sub(" ", text))


def forms(text: str) -> tuple[str, ...]:
    """The text as written, and its folded form when that differs: what the policy matches."""
    folded = fold(text)
    return (text,) if folded == text else (text, folded)
