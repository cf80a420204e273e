"""Fingerprints: short stable hashes of what shapes a result, shared by the training checkpoints
(components/training/checkpoint.py) and the registry's reuse of trained models and evaluations
(components/registry/reuse.py). Here, apart from both, so that neither imports the other."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts.

    >>> fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
    True
    """
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
