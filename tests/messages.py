"""Match a whole error or warning message, not a part of it."""

from __future__ import annotations

import re


def exactly(message: str) -> str:
    """The pattern for ``pytest.raises(..., match=...)`` that matches ``message`` and nothing more."""
    return "^" + re.escape(message) + "$"
