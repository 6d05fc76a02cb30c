"""The value checks every config's ``validate`` shares (model, recipe, detector): one definition of
"a real number" and "an integer", so that ``True`` is never a count and ``nan`` never a rate."""

from __future__ import annotations

import math
from typing import Any


def is_real(x: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_int(x: Any) -> bool:
    """An int, not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


__all__ = ["is_int", "is_real"]
