"""The streaming core: byte-exact pumping on both paths, pacing, failures from the writer thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from openspec_cli import engine
from openspec_cli.chunking import KIB, MAX_CHUNK, MIB, MIN_CHUNK, STREAMING_TRIGGER, ChunkSizer
from openspec_cli.engine import (
    HASH_ONLY_CHUNK,
    BufferPool,
    Pump,
    RateLimiter,
    StreamStats,
)
from openspec_cli.fileio import file_sink


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


def test_a_stall_is_not_made_up_for_by_a_burst() -> None:
    """After 10 s without sending (backpressure held the stream), the next 5 s of data take
    5 s, less one chunk's worth of catching up (rate-sized chunks are 1/20 s): not 0 s."""
    fake = FakeTime()
    limiter = RateLimiter(1000.0, clock=fake.clock, sleep=fake.sleep)
    limiter.throttle(1000)
    fake.now += 10.0
    start = fake.now
    for _ in range(10):
        limiter.throttle(500)
    assert fake.now - start == pytest.approx(5.0 - 0.5)


def test_rate_limiter_does_not_sleep_when_source_is_slower() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1000.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):
        fake.now += 1.0
        limiter.throttle(100)
    assert fake.slept == 0.0


@pytest.mark.parametrize(
    ("rate", "ceiling", "chunk"),
    [
        (8 * MIB, MAX_CHUNK, 256 * KIB),  # 1/20 s is 410 KiB: the power of two below
        (20 * MIB, MAX_CHUNK, MAX_CHUNK),
        (1024 * MIB, MAX_CHUNK, MAX_CHUNK),
        (1024 * MIB, HASH_ONLY_CHUNK, HASH_ONLY_CHUNK),
        (1 * MIB, MAX_CHUNK, 32 * KIB),
        (100 * KIB, MAX_CHUNK, 4 * KIB),
        (4 * KIB, MAX_CHUNK, 256),  # smooth as pv -L: 256 bytes every 1/16 s
        (1.0, MAX_CHUNK, 256),
    ],
)
def test_rate_limited_chunks_hold_about_a_twentieth_of_a_second(
    rate: float, ceiling: int, chunk: int
) -> None:
    assert RateLimiter(rate).chunk(ceiling) == chunk


def test_streams_under_one_limiter_move_equal_fixed_chunks(tmp_path: Path) -> None:
    """Equal chunks are what makes the limiter's turns equal shares (see RateLimiter.chunk)."""
    limiter = RateLimiter(64 * MIB)
    sizes = []
    for total in (3 * MIB, 40 * MIB, 300 * MIB, None):
        pump = Pump(0, StreamStats(name="s", total=total), sink=lambda v: None, limiter=limiter)
        for _ in range(50):
            pump.sizer.record(pump.sizer.size)  # what throughput says cannot move it
        sizes.append(pump.sizer.size)
    assert sizes == [limiter.chunk(MAX_CHUNK)] * 4


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


# ---------------------------------------------------------------------------- read-ahead


@pytest.fixture
def read_ahead_from_1_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read ahead from 1 MiB rather than 16, so that small files take that path."""
    monkeypatch.setattr(engine, "READ_AHEAD_TRIGGER", MIB)
    monkeypatch.setattr(engine, "_usable_cpus", lambda: 2)


def hash_reading_ahead(path: Path, total: int) -> tuple[str, StreamStats, int]:
    """Digest, stats and the fd's final offset of a hash-only Pump that must read ahead."""
    hasher = xxhash.xxh3_128()
    stats = StreamStats(name="f", total=total)
    with open(path, "rb") as fh:
        pump = Pump(fh.fileno(), stats, hasher=hasher)
        assert pump._can_read_ahead()
        pump.run()
        position = os.lseek(fh.fileno(), 0, os.SEEK_CUR)
    assert not [t for t in threading.enumerate() if t.name.startswith("openspec-")]
    return hasher.hexdigest(), stats, position


@pytest.mark.usefixtures("read_ahead_from_1_mib")
@pytest.mark.parametrize(
    "size", [MIB, MIB + 1, 4 * MIB, 4 * MIB - 1, 3 * HASH_ONLY_CHUNK * 7 + 12345]
)
def test_read_ahead_hashes_every_byte_in_order(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    digest, stats, position = hash_reading_ahead(tmp_path / "f", size)
    assert digest == xxhash.xxh3_128(data).hexdigest()
    assert stats.done == size == position
    assert stats.finished is not None


@pytest.mark.usefixtures("read_ahead_from_1_mib")
def test_read_ahead_keeps_reading_what_was_appended_after_the_stat(tmp_path: Path) -> None:
    """As a read loop would: to the end of the file as it is, not as it was."""
    data = os.urandom(3 * MIB + 5)
    (tmp_path / "f").write_bytes(data[: 2 * MIB])
    with open(tmp_path / "f", "ab") as fh:
        fh.write(data[2 * MIB :])
    digest, stats, _ = hash_reading_ahead(tmp_path / "f", total=2 * MIB)
    assert digest == xxhash.xxh3_128(data).hexdigest()
    assert stats.done == len(data)


@pytest.mark.usefixtures("read_ahead_from_1_mib")
def test_read_ahead_stops_where_a_shrunk_file_ends(tmp_path: Path) -> None:
    data = os.urandom(2 * MIB + 77)
    (tmp_path / "f").write_bytes(data)
    digest, stats, position = hash_reading_ahead(tmp_path / "f", total=5 * MIB)
    assert digest == xxhash.xxh3_128(data).hexdigest()
    assert stats.done == len(data) == position


@pytest.mark.usefixtures("read_ahead_from_1_mib")
def test_read_ahead_completes_short_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pread may return less than asked (a signal, a network file system); none is lost."""
    data = os.urandom(3 * MIB + 1)
    (tmp_path / "f").write_bytes(data)
    real = os.preadv
    shortened: list[int] = []

    def short_preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        if len(buffers[0]) > 1000 and len(shortened) % 2 == 0:
            shortened.append(offset)
            return real(fd, [buffers[0][: len(buffers[0]) // 3]], offset)
        shortened.append(-1)
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", short_preadv)
    digest, stats, _ = hash_reading_ahead(tmp_path / "f", len(data))
    assert digest == xxhash.xxh3_128(data).hexdigest()
    assert len([o for o in shortened if o >= 0]) > 10


@pytest.mark.usefixtures("read_ahead_from_1_mib")
def test_read_ahead_error_on_the_helper_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f").write_bytes(os.urandom(4 * MIB))
    real = os.preadv
    failed_on: list[str] = []

    def failing_preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        if offset >= 2 * MIB and threading.current_thread().name.startswith("openspec-"):
            failed_on.append(threading.current_thread().name)
            raise OSError(5, "Input/output error")
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", failing_preadv)
    with pytest.raises(OSError, match="Input/output error"):
        hash_reading_ahead(tmp_path / "f", 4 * MIB)
    assert failed_on
    assert not [t for t in threading.enumerate() if t.name.startswith("openspec-")]


def test_read_ahead_only_for_large_regular_files_hashed_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "_usable_cpus", lambda: 2)
    big = engine.READ_AHEAD_TRIGGER
    path = tmp_path / "f"
    path.write_bytes(b"x")

    def reads_ahead(total: int | None = big, fd: int | None = None, **kwargs: object) -> bool:
        with open(path, "rb") as fh:
            src = fh.fileno() if fd is None else fd
            pump = Pump(src, StreamStats(name="f", total=total), **kwargs)  # type: ignore[arg-type]
            return pump._can_read_ahead()

    assert reads_ahead(hasher=xxhash.xxh3_128())
    assert not reads_ahead(big - 1, hasher=xxhash.xxh3_128())
    assert not reads_ahead(None, hasher=xxhash.xxh3_128())
    assert not reads_ahead()  # nothing to hash
    assert not reads_ahead(hasher=xxhash.xxh3_128(), limiter=RateLimiter(1e9))
    assert not reads_ahead(hasher=xxhash.xxh3_128(), drop_source_cache=True)
    assert not reads_ahead(hasher=xxhash.xxh3_128(), commit_every=4)
    read_end, write_end = os.pipe()
    try:
        assert not reads_ahead(hasher=xxhash.xxh3_128(), fd=read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    monkeypatch.setattr(engine, "_usable_cpus", lambda: 1)
    assert not reads_ahead(hasher=xxhash.xxh3_128())


@given(st.integers(min_value=0, max_value=4 * MAX_CHUNK))
def test_a_buffer_holds_the_whole_small_stream_and_at_most_twice_it(total: int) -> None:
    size = engine.buffer_size_for(total)
    assert size >= min(total, MAX_CHUNK)
    assert size <= max(2 * total, MIN_CHUNK)
    assert size == MAX_CHUNK or size & (size - 1) == 0


def test_files_of_many_sizes_share_a_few_buffer_sizes() -> None:
    """A tree of small files reuses the scheduler's buffers instead of one allocation each."""
    sizes = {engine.buffer_size_for(total) for total in range(1, STREAMING_TRIGGER, 997)}
    assert len(sizes) <= 20
