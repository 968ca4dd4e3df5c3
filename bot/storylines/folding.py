"""Folding text to one spelling: lower case, accents stripped. Shared by every reader of text."""

from __future__ import annotations

import functools
import sys
import unicodedata


@functools.cache
def _marks() -> frozenset[str]:
    """Every combining mark (built once, ~0.1 s)."""
    return frozenset(
        ch for ch in map(chr, range(sys.maxunicode + 1)) if unicodedata.combining(ch)
    )


def fold(text: str) -> str:
    """Lower-case and strip accents: "Diendéré" and "Diendere" become one spelling."""
    if text.isascii():
        return text.casefold()  # nothing to strip: the common case, and much faster
    decomposed = unicodedata.normalize("NFKD", text)
    # Most non-ASCII text has no mark to strip (a "…" in English, Cyrillic): a set
    # test in C finds that, where going a Python call per character was a fifth of
    # the cost of reading an item for the matcher (issue 18).
    marks = _marks()
    if marks.isdisjoint(decomposed):
        return decomposed.casefold()
    return "".join(ch for ch in decomposed if ch not in marks).casefold()


def composed(text: str) -> str:
    """``text`` in NFC, for reading, never for storing or showing: an accent written as
    a letter and a combining mark ("e" and U+0301) becomes one letter, so that a word
    split on non-letters stays whole, as it does once folded. (NFKC would also turn a
    "½" into "1⁄2" as folding does, but it rewrites every "…" too, and cost a tenth of
    reading an item; those characters are left as written.)"""
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text
    return unicodedata.normalize("NFC", text)
