"""The one size parser behind --limit-rate, --max-memory, bench --sizes and the scripts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openspec_cli.units import parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("512K", 512 << 10),
        ("20M", 20 << 20),
        ("20MiB", 20 << 20),
        ("1.5G", 3 << 29),
        (" 2g ", 2 << 30),
        ("1T", 1 << 40),
        ("1kb", 1024),
    ],
)
def test_binary_units(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-1M", "0", "0.0001", "1X", "M"])
def test_rejects_what_is_not_a_positive_size(text: str) -> None:
    with pytest.raises(ValueError, match="size|more than zero"):
        parse_size(text)


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["", "K", "M", "G"]))
def test_unit_scales_by_1024(number: int, unit: str) -> None:
    assert parse_size(f"{number}{unit}") == number * 1024 ** ["", "K", "M", "G"].index(unit)
