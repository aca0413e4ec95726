"""Text checks and caption normalisation shared by every text side (torch towers and the ONNX runtime)."""

from __future__ import annotations

import string
from collections.abc import Sequence

from audiosearch.core.errors import InvalidInputError

MAX_TEXT_CHARS = 2000
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def check_texts(texts: Sequence[str]) -> list[str]:
    """A non-empty list of non-empty strings of bounded length, or a clear InvalidInputError."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise InvalidInputError("texts must be a non-empty list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInputError(f"text {i} is {type(t).__name__}, not a string")
        if not t.strip():
            raise InvalidInputError(f"text {i} is empty")
        if len(t) > MAX_TEXT_CHARS:
            raise InvalidInputError(f"text {i} has {len(t)} characters; the limit is {MAX_TEXT_CHARS}")
    return list(texts)


def normalize_caption(text: str, rule: str = "space") -> str:
    """Lower-case and drop punctuation, as the paper's recipe does for RoBERTa captions.

    rule "space": punctuation becomes a space, whitespace is collapsed ("dog's" -> "dog s");
    rule "delete": punctuation is deleted, as the reference code does (str.translate with
    string.punctuation: "dog's" -> "dogs"), whitespace kept as it is.
    """
    if rule == "delete":
        return text.lower().translate(_PUNCTUATION)
    kept = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text.lower())
    return " ".join(kept.split())
