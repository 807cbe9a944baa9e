"""Chunk sizing: the design record's classes and the throughput hill-climb, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openspec_cli.chunking import (
    KIB,
    MAX_CHUNK,
    MIB,
    MIN_CHUNK,
    ChunkSizer,
    initial_chunk_size,
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("size", "chunk"),
    [
        (0, 32 * KIB),
        (MIB - 1, 32 * KIB),
        (MIB, 64 * KIB),
        (10 * MIB - 1, 64 * KIB),
        (10 * MIB, 128 * KIB),
        (100 * MIB - 1, 128 * KIB),
        (100 * MIB, 256 * KIB),
        (1 << 40, 256 * KIB),
        (None, 256 * KIB),
    ],
)
def test_size_classes_match_the_design_record(size: int | None, chunk: int) -> None:
    assert initial_chunk_size(size) == chunk


@given(st.integers(min_value=0, max_value=1 << 50))
def test_class_size_never_decreases_with_file_size(size: int) -> None:
    assert initial_chunk_size(size) <= initial_chunk_size(size + MIB)


def feed(sizer: ChunkSizer, clock: FakeClock, rate: float, seconds: float, step: float) -> None:
    """Move data at ``rate`` bytes/s for ``seconds`` in records ``step`` seconds apart."""
    t = 0.0
    while t < seconds:
        clock.now += step
        t += step
        sizer.record(int(rate * step))


def test_climbs_to_the_ceiling_while_throughput_holds() -> None:
    clock = FakeClock()
    sizer = ChunkSizer(start=256 * KIB, clock=clock)
    feed(sizer, clock, rate=1e9, seconds=1.0, step=0.01)
    assert sizer.size == MAX_CHUNK
    assert sizer.sizes_used == [256 * KIB, 512 * KIB, MAX_CHUNK]


def test_steps_back_to_the_best_size_when_larger_chunks_are_slower() -> None:
    clock = FakeClock()
    sizer = ChunkSizer(start=64 * KIB, clock=clock)
    rates = {64 * KIB: 5e8, 128 * KIB: 9e8, 256 * KIB: 4e8}
    for _ in range(200):
        clock.now += 0.01
        sizer.record(int(rates.get(sizer.size, 4e8) * 0.01))
    assert sizer.size == 128 * KIB
    assert 256 * KIB in sizer.sizes_used


def test_lower_ceiling_applies_at_once() -> None:
    clock = FakeClock()
    sizer = ChunkSizer(start=MAX_CHUNK, clock=clock)
    sizer.set_ceiling(64 * KIB)
    assert sizer.size == 64 * KIB
    feed(sizer, clock, rate=1e9, seconds=1.0, step=0.01)
    assert sizer.size == 64 * KIB


def test_ceiling_never_below_floor() -> None:
    sizer = ChunkSizer(start=MIB, clock=FakeClock())
    sizer.set_ceiling(1)
    assert sizer.size == MIN_CHUNK


def test_rejects_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="bad chunk bounds"):
        ChunkSizer(start=MIB, floor=MIB, ceiling=KIB, clock=FakeClock())


@given(
    start=st.integers(min_value=1, max_value=16 * MIB),
    ceiling=st.integers(min_value=MIN_CHUNK, max_value=8 * MIB),
    samples=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=0.2), st.integers(0, 64 * MIB)),
        max_size=200,
    ),
    new_ceiling=st.one_of(st.none(), st.integers(min_value=0, max_value=8 * MIB)),
)
def test_size_always_within_bounds(
    start: int, ceiling: int, samples: list[tuple[float, int]], new_ceiling: int | None
) -> None:
    clock = FakeClock()
    sizer = ChunkSizer(start=start, ceiling=ceiling, clock=clock)
    for i, (dt, nbytes) in enumerate(samples):
        clock.now += dt
        size = sizer.record(nbytes)
        assert MIN_CHUNK <= size <= sizer.ceiling
        if new_ceiling is not None and i == len(samples) // 2:
            sizer.set_ceiling(new_ceiling)
            assert sizer.size <= max(MIN_CHUNK, new_ceiling)
    top = max(ceiling, MIN_CHUNK, new_ceiling or 0)
    assert all(MIN_CHUNK <= s <= top for s in sizer.sizes_used)
