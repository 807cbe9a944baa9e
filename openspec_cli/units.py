"""Sizes as people write them (``20M``, ``1.5G``): one parser for every option that takes one."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``20M`` -> 20971520. Binary multipliers, as ``pv -L`` and ``rsync --bwlimit`` use.

    Raises ValueError with a message fit for the user; callers add the option's name.
    """
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a size (examples: 512K, 20M, 1.5G)")
    power = " kmgtp".index(match.group(2).lower() or " ")
    value = int(float(match.group(1)) * 1024**power)
    if value <= 0:
        raise ValueError(f"'{text}' must be more than zero bytes")
    return value
