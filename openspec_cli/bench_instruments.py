"""What a bench scenario measures with: the RSS sampler, generated data, the reference copies
(a bare read/write loop and ``cp``), timed calls of the engine, and fault injection.

These run in each scenario's child process (see ``bench_scenarios``); none of them prints.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import subprocess
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openspec_cli import api, engine, fileio, hashing
from openspec_cli.bench_model import MIB, Memory
from openspec_cli.chunking import ChunkSizer
from openspec_cli.governor import Percentiles  # the engine's own, so both agree

ALGO = hashing.DEFAULT_ALGO
#: The reference loop's buffer: openspec's largest chunk, so the loop is a strong reference.
LOOP_BUFFER = 1 * MIB
#: RSS sampling period, and the least span over which a slope tells growth from a one-off step.
SAMPLE_EVERY = 0.02
GROWTH_MIN_SPAN = 1.5


# ---------------------------------------------------------------------------- measuring


class RssSampler:
    """Samples this process's RSS on a background thread, for one scenario's peak and growth."""

    def __init__(self, every: float = SAMPLE_EVERY) -> None:
        import psutil

        self._process = psutil.Process()
        self._every = every
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.times: array[float] = array("d")
        self.rss: array[float] = array("d")
        self._thread = threading.Thread(target=self._loop, name="openspec-rss", daemon=True)

    def _sample(self) -> None:
        rss = float(self._process.memory_info().rss)
        with self._lock:
            self.times.append(time.monotonic())
            self.rss.append(rss)

    def restart(self) -> None:
        """Forget what came before (generating the test data): measuring starts now."""
        with self._lock:
            del self.times[:], self.rss[:]
        self._sample()

    @property
    def span(self) -> float:
        """Seconds from the first sample to the last."""
        return self.times[-1] - self.times[0]

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def summary(self) -> Memory:
        """Peak, and the slope after the first quarter, once buffers are set up.

        Working buffers come and go by megabytes, so a slope over less than ``GROWTH_MIN_SPAN``
        could not tell a leak of 1 MiB/s from a buffer pool being set up: it is None then.
        """
        start, span = self.times[0], self.span
        keep = [i for i, t in enumerate(self.times) if t - start >= span / 4]
        growth = slope([self.times[i] for i in keep], [self.rss[i] for i in keep])
        long_enough = span * 0.75 >= GROWTH_MIN_SPAN
        return Memory(int(self.rss[0]), int(max(self.rss)), growth if long_enough else None)


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``ys`` over ``xs``; None without two distinct xs."""
    n = len(xs)
    mx, my = sum(xs) / max(n, 1), sum(ys) / max(n, 1)
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 2 or sxx <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` when both are known and ``b`` is not zero."""
    return a / b if a is not None and b else None


def timed(action: Callable[[], object]) -> float:
    """Wall seconds ``action`` took."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------- files and references


def make_file(path: Path, size: int, seed: int) -> str:
    """Incompressible data, fsynced so its write-back cannot land in a timed run; its digest.

    One random 4 MiB block stamped with its offset each time: no two blocks alike (against
    deduplication and compression), yet a GiB costs little to generate.
    """
    block = bytearray(random.Random(seed).randbytes(min(size, 4 * MIB)))
    hasher = hashing.new_hasher(ALGO)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        done = 0
        while done < size:
            if len(block) >= 8:
                block[:8] = done.to_bytes(8, "little")
            view = memoryview(block)[: size - done]
            hasher.update(view)
            write_all(fd, view)
            done += len(view)
        os.fsync(fd)
    finally:
        os.close(fd)
    return hasher.hexdigest()


def write_all(fd: int, data: memoryview) -> None:
    """Our own loop: references never go through the engine (nor its injected faults)."""
    while data:
        data = data[os.write(fd, data) :]


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def loop_copy(src: Path, dst: Path) -> None:
    """The reference: a bare read/write loop, fsynced (file and directory) as openspec is."""
    buf = memoryview(bytearray(LOOP_BUFFER))
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        while n := fin.readinto(buf):
            write_all(fout.fileno(), buf[:n])
        os.fsync(fout.fileno())
    fsync_path(dst.parent)


def cp_command() -> list[str] | None:
    """``cp`` without reflinks (a clone is not a copy) where it can, or None when absent."""
    found = shutil.which("cp")
    if found is None:
        return None
    probe = subprocess.run([found, "--reflink=never", "--help"], capture_output=True, check=False)
    return [found, "--reflink=never"] if probe.returncode == 0 else [found]


def cp_copy(cp: list[str], src: Path, dst: Path) -> None:
    """``cp SRC DST`` then fsync; killed if we are interrupted, so it writes nothing later."""
    proc = subprocess.Popen(
        [*cp, str(src), str(dst)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise OSError(errno.EIO, f"cp exited with {proc.returncode}: {err.decode().strip()}")
    fsync_path(dst)
    fsync_path(dst.parent)


# ---------------------------------------------------------------------------- the engine


@dataclass
class CopyRun:
    """One ``api.copy`` call as the bench sees it; None marks what the API does not report."""

    files: list[Any]
    seconds: float
    errors: list[str]
    peak_concurrency: int | None = None
    highest_level: str | None = None
    time_in_levels: dict[str, float] | None = None
    chunk_latency: dict[str, float] | None = None


def copy_run(sources: list[str], dest: str, jobs: int) -> CopyRun:
    """The one place that knows what ``api.copy`` returns (a CopyReport).

    PENDING(CopyReport): its engine facts are read as attributes or from its ``engine`` dict,
    whichever the settled API has; a fact it does not report stays None and shows as pending.
    """
    start = time.perf_counter()
    report: Any = api.copy(sources, dest, jobs=jobs)
    wall = time.perf_counter() - start
    facts = dict(getattr(report, "engine", None) or {})

    def fact(name: str) -> Any:
        return getattr(report, name, facts.get(name))

    errors = [getattr(e, "message", str(e)) for e in getattr(report, "errors", [])]
    names = ("peak_concurrency", "highest_level", "time_in_levels", "chunk_latency")
    return CopyRun(list(report.files), wall, errors, *(fact(n) for n in names))


def pump_file(src: Path, dst: Path, sizer: ChunkSizer | None, latencies: Percentiles) -> str:
    """Read, hash and write one file with the bare engine, timing each chunk; its digest.

    A chunk's latency is the time between two chunks leaving the pipeline (read, hash, queue,
    write, and any stall): what a consumer of the stream waits per chunk.
    """
    in_fd = os.open(src, os.O_RDONLY)
    out_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write, last = fileio.file_sink(out_fd), [time.perf_counter()]

        def sink(view: memoryview) -> None:
            write(view)
            now = time.perf_counter()
            latencies.add(now - last[0])
            last[0] = now

        hasher = hashing.new_hasher(ALGO)
        stats = engine.StreamStats(name=src.name, total=os.fstat(in_fd).st_size)
        engine.Pump(in_fd, stats, hasher=hasher, sink=sink, sizer=sizer).run()
        return hasher.hexdigest()
    finally:
        os.close(in_fd)
        os.close(out_fd)


@contextlib.contextmanager
def injected_faults(plan: dict[tuple[str, int], int]) -> Iterator[list[int]]:
    """The engine's reads/writes fail once on reaching each planned offset: (op, offset) -> errno.

    Module state is patched for the duration only and restored on every way out.
    """
    real_write, real_read = fileio.write_all, engine.Pump._read
    fired: list[int] = []

    def fire(op: str, start: int, end: int) -> None:
        due = sorted(k for k in plan if k[0] == op and start <= k[1] < max(end, start + 1))
        if due:
            fired.append(plan.pop(due[0]))
            raise OSError(fired[-1], os.strerror(fired[-1]))

    def write(fd: int, data: memoryview) -> None:
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        fire("write", pos, pos + len(data))
        real_write(fd, data)

    def read(pump: engine.Pump, buf: memoryview) -> int:
        fire("read", 0, pump.stats.done + 1)
        return real_read(pump, buf)

    fileio.write_all = write
    setattr(engine.Pump, "_read", read)  # noqa: B010 (mypy refuses to assign to a method)
    try:
        yield fired
    finally:
        fileio.write_all = real_write
        setattr(engine.Pump, "_read", real_read)  # noqa: B010
