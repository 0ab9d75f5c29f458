"""Byte-identical reruns: identifiers that files must carry (the OME-TIFF UUID) derived from their content
instead of the clock or a random draw, so the same inputs give the same bytes (pipeline caches, checksums)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

import numpy as np


def content_uuid(chunks: Iterable[np.ndarray], *params) -> str:
    """A UUID (RFC 4122 form) from the bytes of `chunks` and the repr of `params`."""
    h = hashlib.blake2b(repr(params).encode(), digest_size=16)
    for chunk in chunks:
        h.update(np.ascontiguousarray(chunk).data)
    return str(uuid.UUID(bytes=h.digest(), version=5))
