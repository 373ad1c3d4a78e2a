"""Canonical JSON and short content hashes: the one definition of every id spurisweep derives.

A leaf module (it imports nothing from spurisweep), so the job side (evaluation, labels) and the plan
side (grid) can both name things the same way without importing each other. Cell ids are 12 hex
characters of sha256 over the canonical JSON of the resolved config; evaluation ids and label keys are
16. Changing either function changes every id ever written, so both are frozen.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

CELL_ID_LENGTH = 12
KEY_LENGTH = 16


def canonical(obj: Any) -> str:
    """Key-sorted, compact, ASCII-only JSON: the same object always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def short_hash(obj: Any, length: int = KEY_LENGTH) -> str:
    """The first `length` hex characters of sha256 over canonical(obj)."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:length]
