"""Valid label values from any text: every label value the operator writes goes through here.

Kubernetes accepts a label value of at most 63 characters of ``[A-Za-z0-9-_.]`` that begins
and ends with an alphanumeric character (or the empty string). A WorkPool name may be 253
characters long, an operator instance name anything: a value that does not fit is made to
fit by a readable prefix plus a hash of the whole text, so two long names never collide and
the same name always maps to the same value (watch selectors rely on that).
"""

from __future__ import annotations

import hashlib
import re

MAX_LABEL_VALUE = 63
_VALID = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_INVALID_CHARS = re.compile(r"[^-A-Za-z0-9_.]+")
_HASH_LEN = 10


def is_valid_label_value(value: str) -> bool:
    return len(value) <= MAX_LABEL_VALUE and bool(_VALID.match(value))


def label_value(text: str) -> str:
    """``text`` itself when it is a valid label value, else ``<prefix>-<10 hex of sha256>``:
    at most 63 characters, alphanumeric at both ends."""
    if is_valid_label_value(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]
    cleaned = _INVALID_CHARS.sub("-", text)
    prefix = cleaned[: MAX_LABEL_VALUE - _HASH_LEN - 1].strip("-_.")
    prefix = re.sub(r"^[^A-Za-z0-9]+", "", prefix)
    return f"{prefix}-{digest}" if prefix else digest
