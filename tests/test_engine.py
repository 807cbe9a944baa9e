"""The streaming core: byte-exact pumping on both paths, pacing, failures from the writer thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from openspec_cli.chunking import KIB, MAX_CHUNK, MIB, STREAMING_TRIGGER, ChunkSizer
from openspec_cli.engine import (
    HASH_ONLY_CHUNK,
    BufferPool,
    Pump,
    RateLimiter,
    StreamStats,
    file_sink,
)


def pump_file(src: Path, dst: Path) -> tuple[int, str, StreamStats]:
    stats = StreamStats(name=src.name, total=src.stat().st_size)
    hasher = xxhash.xxh3_128()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        n = Pump(fin.fileno(), stats, hasher=hasher, sink=file_sink(fout.fileno())).run()
    return n, hasher.hexdigest(), stats


@pytest.mark.parametrize(
    "size",
    [0, 1, 32 * KIB, STREAMING_TRIGGER - 1, STREAMING_TRIGGER, STREAMING_TRIGGER + 1, 3 * MIB + 7],
)
def test_pump_copies_every_byte_and_hashes_it(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(data)
    n, digest, stats = pump_file(src, dst)
    assert n == size == stats.done
    assert dst.read_bytes() == data
    assert digest == xxhash.xxh3_128(data).hexdigest()
    assert stats.finished is not None
    assert stats.chunk_sizes


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=2 * MIB), pool=st.integers(min_value=1, max_value=6))
def test_pump_hash_only_matches_one_shot_digest(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, pool: int
) -> None:
    path = tmp_path_factory.mktemp("h") / "f"
    path.write_bytes(data)
    hasher = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        stats = StreamStats(name="f", total=None)  # unknown size forces the threaded path
        Pump(fh.fileno(), stats, hasher=hasher, pool_size=pool).run()
    assert hasher.hexdigest() == xxhash.xxh3_128(data).hexdigest()
    assert stats.done == len(data)


def test_writer_failure_surfaces_in_caller_and_stops_reading(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(4 * MIB))
    seen: list[int] = []

    def failing_sink(view: memoryview) -> None:
        seen.append(len(view))
        if sum(seen) > MIB:
            raise OSError(28, "No space left on device")

    with open(src, "rb") as fh, pytest.raises(OSError, match="No space"):
        Pump(fh.fileno(), StreamStats(name="s", total=4 * MIB), sink=failing_sink).run()
    assert sum(seen) < 4 * MIB
    assert not [t for t in threading.enumerate() if t.name.startswith("openspec-")]


def test_buffer_pool_reuses_fixed_buffers() -> None:
    pool = BufferPool([memoryview(bytearray(1024)) for _ in range(2)])
    a, b = pool.take(), pool.take()
    pool.give(a)
    assert pool.take() is a
    assert len(b) == 1024


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_rate_limiter_holds_the_average_rate() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1000.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(10):
        limiter.throttle(500)
    assert fake.now == pytest.approx(5.0)


def test_rate_limiter_does_not_sleep_when_source_is_slower() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1000.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):
        fake.now += 1.0
        limiter.throttle(100)
    assert fake.slept == 0.0


def test_rate_limiter_rejects_zero() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)


class RecordingHasher:
    """xxh3-128 that remembers how many bytes each update hashed."""

    def __init__(self) -> None:
        self.inner = xxhash.xxh3_128()
        self.updates: list[int] = []

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self.updates.append(len(data))
        self.inner.update(data)

    def copy(self) -> RecordingHasher:
        raise AssertionError("no checkpoints were asked for")

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


class WideOpenPacer:
    """A scheduler that never holds a stream back and allows chunks of ``ceiling`` bytes."""

    def __init__(self, ceiling: int) -> None:
        self.chunk_ceiling = ceiling

    def before_chunk(self, stats: StreamStats) -> None:
        pass

    def chunk_done(self, stats: StreamStats, seconds: float, nbytes: int) -> None:
        pass

    def lend(self, count: int, size: int) -> list[memoryview]:
        return [memoryview(bytearray(size)) for _ in range(count)]

    def give_back(self, buffers: list[memoryview]) -> None:
        pass


def test_hash_only_streams_keep_chunks_cache_sized(tmp_path: Path) -> None:
    """Without a sink the hash reads each chunk right after it was copied in; kept at 256 KiB
    it is still in the CPU cache. Streams that write keep the full ceiling."""
    src = tmp_path / "src"
    data = os.urandom(4 * MIB)
    src.write_bytes(data)
    with open(src, "rb") as fh:
        stats = StreamStats(name="s", total=len(data))
        assert Pump(fh.fileno(), stats, hasher=xxhash.xxh3_128()).sizer.ceiling == HASH_ONLY_CHUNK
        writing = Pump(fh.fileno(), stats, hasher=xxhash.xxh3_128(), sink=lambda v: None)
        assert writing.sizer.ceiling == MAX_CHUNK

    for sink, largest in ((None, HASH_ONLY_CHUNK), (lambda view: None, 2 * MIB)):
        hasher = RecordingHasher()
        with open(src, "rb") as fh:
            Pump(
                fh.fileno(),
                StreamStats(name="s", total=len(data)),
                hasher=hasher,
                sink=sink,
                sizer=ChunkSizer(start=2 * MIB, ceiling=2 * MIB),
                pacer=WideOpenPacer(2 * MIB),
            ).run()
        assert max(hasher.updates) == largest
        assert hasher.hexdigest() == xxhash.xxh3_128(data).hexdigest()
