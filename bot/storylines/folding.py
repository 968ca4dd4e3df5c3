"""Folding text to one spelling: lower case, accents stripped. Shared by every reader of text."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Lower-case and strip accents: "Diendéré" and "Diendere" become one spelling."""
    if text.isascii():
        return text.casefold()  # nothing to strip: the common case, and much faster
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
