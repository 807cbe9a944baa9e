"""``openspec bench``: what the engine does on this machine, next to plain references.

Why references: on a shared, noisy machine an absolute MiB/s says little, so each scenario also
runs a bare read/write loop (and ``cp``) on the same page-cached files, interleaved with openspec
so that drift hits both, and reports the ratio ("efficiency"). Each scenario runs in a fresh
interpreter (as a real ``openspec copy`` is one process) on generated data in one temporary
directory, removed on every way out (Ctrl-C included); checkpoints go to a state directory
inside it, never the user's. Results are returned, never printed: ``bench_report`` scores and
renders them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from openspec_cli import api, checkpoint, engine, hashing
from openspec_cli.chunking import ChunkSizer
from openspec_cli.errors import ExitCode, Interrupted, OpenspecError, UsageError
from openspec_cli.scheduler import Percentiles  # the engine's own, so both agree

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
ALGO = hashing.DEFAULT_ALGO
#: The reference loop's buffer: openspec's largest chunk, so the loop is a strong reference.
LOOP_BUFFER = 1 * MIB
#: The fixed chunk size the adaptive sizer is measured against (the design record's old default).
FIXED_CHUNK = 64 * KIB
#: RSS sampling period, and the least span over which a slope tells growth from a one-off step.
SAMPLE_EVERY = 0.02
GROWTH_MIN_SPAN = 1.5
Tick = Callable[[], None]


@dataclass(frozen=True)
class Hooks:
    """What a scenario tells its runner: data is ready (measuring starts), one step is done."""

    begin: Tick
    step: Tick


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Config:
    """What to run. ``budget`` (bytes per side and size) sets the repeats within the bounds."""

    sizes: tuple[int, ...] = (MIB, 10 * MIB, 100 * MIB, GIB)
    concurrency: tuple[int, ...] = (1, 4, 16)
    directory: str | None = None
    quick: bool = False
    budget: int = GIB
    min_runs: int = 3
    max_runs: int = 16
    stream_file: int = 16 * MIB
    stream_runs: int = 2
    recovery_runs: int = 25
    recovery_file: int = 16 * MIB

    def runs_for(self, size: int) -> int:
        """Repeats for one size: enough bytes to smooth noise, not so many that it drags."""
        return max(self.min_runs, min(self.max_runs, self.budget // max(size, 1)))


QUICK = Config(
    sizes=(MIB, 10 * MIB, 100 * MIB),
    quick=True,
    budget=64 * MIB,
    min_runs=1,
    max_runs=8,
    stream_file=2 * MIB,
    stream_runs=1,
    recovery_runs=5,
    recovery_file=4 * MIB,
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``10M`` -> 10485760: binary units, as everywhere in openspec."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"--sizes: '{text}' is not a size (examples: 1M, 100M, 1G)")
    value = int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " "))
    if value <= 0:
        raise UsageError(f"--sizes: '{text}' must be more than zero bytes")
    return value


def parse_streams(text: str) -> int:
    """A stream count for ``--concurrency``, 1 to 256."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 256:
        raise UsageError(f"--concurrency: '{text}' is not a stream count from 1 to 256")
    return int(text)


def _parse_list(text: str, parse: Callable[[str], int]) -> tuple[int, ...]:
    items = [parse(part) for part in text.split(",") if part.strip()]
    if not items:
        raise UsageError(f"'{text}' is an empty list")
    return tuple(dict.fromkeys(items))


def make_config(
    quick: bool, sizes: str | None, concurrency: str | None, directory: str | None
) -> Config:
    """The run the options ask for; UsageError (exit 2) for a bad list or directory."""
    base = QUICK if quick else Config()
    if directory is not None and not os.path.isdir(directory):
        raise UsageError(f"--dir: '{directory}' is not a directory")
    return dataclasses.replace(
        base,
        sizes=_parse_list(sizes, parse_size) if sizes else base.sizes,
        concurrency=_parse_list(concurrency, parse_streams) if concurrency else base.concurrency,
        directory=directory,
    )


@dataclass(frozen=True)
class Spec:
    """One scenario: its kind, file size, streams per run, repeats, and sides per repeat."""

    id: str
    kind: str  # copy | chunking | concurrency | resume | transient
    description: str
    size: int
    files: int
    runs: int
    sides: int


def size_name(size: int) -> str:
    """``1MiB``, ``1GiB``, ``1536KiB``: short and exact, usable in scenario ids."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def plan(config: Config, has_cp: bool = True) -> list[Spec]:
    """The scenarios in running order; ids are stable so that baselines match them."""
    specs: list[Spec] = []
    for size in config.sizes:
        runs, name = config.runs_for(size), size_name(size)
        sides = 3 if has_cp else 2
        specs.append(Spec(f"copy-{name}", "copy", f"copy {name}", size, 1, runs, sides))
        if size >= 10 * MIB:
            text = f"adaptive vs 64 KiB chunks, {name}"
            specs.append(Spec(f"chunking-{name}", "chunking", text, size, 1, runs, 2))
    each = config.stream_file
    for n in config.concurrency:
        text = f"{n} x {size_name(each)} at once"
        specs.append(Spec(f"concurrency-{n}", "concurrency", text, each, n, config.stream_runs, 2))
    size, runs = config.recovery_file, config.recovery_runs
    specs.append(Spec("recovery-resume", "resume", "interrupted, resumed", size, 1, runs, 1))
    specs.append(Spec("recovery-transient", "transient", "transient errors", size, 1, runs, 1))
    return specs


def space_needed(specs: Sequence[Spec]) -> int:
    """Bytes the largest scenario holds at once: its sources and one set of copies, plus slack."""
    return max((2 * s.size * s.files for s in specs), default=0) + 16 * MIB


# ---------------------------------------------------------------------------- results


@dataclass
class Throughput:
    """Bytes/s. min: the slowest operation (one copy call or pump); avg: all bytes, all time."""

    min_bps: float | None = None
    avg_bps: float | None = None
    reference_bps: float | None = None  # the read/write loop; chunking: fixed 64 KiB chunks
    cp_bps: float | None = None
    efficiency: float | None = None  # avg_bps / reference_bps
    efficiency_cp: float | None = None  # avg_bps / cp_bps


@dataclass
class Memory:
    """This process's resident memory while the scenario ran."""

    start_rss_bytes: int = 0
    peak_rss_bytes: int = 0
    growth_bps: float | None = None  # None: too brief to tell growth from a step


@dataclass
class Reliability:
    """Streams that ended with a correct file; recoveries (resume or retry) that did."""

    streams: int = 0
    streams_ok: int = 0
    retries: int = 0
    recoveries: int = 0
    recoveries_ok: int = 0
    resumed_fraction: float | None = None  # mean share of a file a resume did not copy again


@dataclass
class ScenarioResult:
    """Everything measured for one scenario."""

    id: str
    kind: str
    description: str
    file_size: int
    files: int
    runs: int
    bytes: int = 0
    seconds: float = 0.0
    throughput: Throughput = field(default_factory=Throughput)
    latency: dict[str, float] | None = None  # p50/p95/p99/max seconds per chunk
    memory: Memory = field(default_factory=Memory)
    pressure: dict[str, Any] | None = None  # {"highest": LEVEL, "seconds_in_levels": {...}}
    peak_concurrency: int | None = None
    reliability: Reliability = field(default_factory=Reliability)
    chunk_sizes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # what the engine cannot report yet


@dataclass
class BenchResult:
    """A whole run: when, with what settings, the load around it, and every scenario."""

    started_at: float
    seconds: float
    config: Config
    scenarios: list[ScenarioResult]
    load_before: list[float] | None = None
    load_after: list[float] | None = None


class BenchObserver(Protocol):
    """How a renderer follows the run; the bench calls it and never draws."""

    def scenario_started(self, spec: Spec, index: int, count: int) -> None: ...

    def step_done(self, spec: Spec, done: int, total: int) -> None: ...

    def scenario_finished(self, result: ScenarioResult) -> None: ...


class NullBenchObserver:
    """Nobody is watching."""

    def scenario_started(self, spec: Spec, index: int, count: int) -> None:
        """Ignore."""

    def step_done(self, spec: Spec, done: int, total: int) -> None:
        """Ignore."""

    def scenario_finished(self, result: ScenarioResult) -> None:
        """Ignore."""


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
        write, last = engine.file_sink(out_fd), [time.perf_counter()]

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
    real_write, real_read = engine.write_all, engine.Pump._read
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

    engine.write_all = write
    setattr(engine.Pump, "_read", read)  # noqa: B010 (mypy refuses to assign to a method)
    try:
        yield fired
    finally:
        engine.write_all = real_write
        setattr(engine.Pump, "_read", real_read)  # noqa: B010


# ---------------------------------------------------------------------------- scenarios


@dataclass
class Tally:
    """What a scenario gathers as it runs; :meth:`result` turns it into a ScenarioResult."""

    spec: Spec
    expected: dict[str, str] = field(default_factory=dict)  # source name -> digest
    moved: int = 0
    wall: float = 0.0
    singles: list[float] = field(default_factory=list)
    refs: dict[str, list[float]] = field(default_factory=dict)  # side -> [bytes, seconds]
    rel: Reliability = field(default_factory=Reliability)
    runs: list[CopyRun] = field(default_factory=list)
    latencies: Percentiles = field(default_factory=Percentiles)
    chunk_sizes: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    resumed: list[float] = field(default_factory=list)

    def sources(self, area: Path, count: int) -> list[Path]:
        """Generate ``count`` files of the scenario's size, remembering their digests."""
        paths = [area / f"s{i}.bin" for i in range(count)]
        for i, path in enumerate(paths):
            self.expected[path.name] = make_file(path, self.spec.size, seed=self.spec.size + i)
        return paths

    def reference(self, side: str, nbytes: int, seconds: float) -> None:
        """Account one timed run of a reference side."""
        acc = self.refs.setdefault(side, [0.0, 0.0])
        acc[0], acc[1] = acc[0] + nbytes, acc[1] + seconds

    def correct(self, result: Any) -> bool:
        """A finished file is right: the source's digest and, at its final name, its size."""
        want = self.expected.get(os.path.basename(result.source))
        try:
            ok = result.digest == want and os.path.getsize(result.dest) == self.spec.size
        except OSError:
            ok = False
        self.rel.retries += len(result.retries)
        self.chunk_sizes.update(result.chunk_sizes)
        return ok

    def add_copy(self, run: CopyRun, streams: int) -> int:
        """Account one ``api.copy`` call of ``streams`` files; returns how many came out right."""
        self.runs.append(run)
        ok = sum(1 for f in run.files if self.correct(f))
        self.rel.streams += streams
        self.rel.streams_ok += ok
        self.errors += run.errors
        self.moved += sum(f.bytes - f.resumed_from for f in run.files)
        self.wall += run.seconds
        if run.files and run.seconds > 0:  # one operation's speed: all its bytes over its time
            self.singles.append(sum(f.bytes - f.resumed_from for f in run.files) / run.seconds)
        return ok

    def result(self) -> ScenarioResult:
        """The scenario's numbers; engine facts the API did not report are listed as pending."""
        s = self.spec
        out = ScenarioResult(s.id, s.kind, s.description, s.size, s.files, s.runs, self.moved)
        out.throughput = self._throughput()
        own = self.latencies.summary() if self.latencies.seen else None
        out.latency = _worst_latency(self.runs) if self.runs else own
        out.reliability, out.errors = self.rel, self.errors[:5]
        if self.resumed:
            self.rel.resumed_fraction = sum(self.resumed) / len(self.resumed)
        out.chunk_sizes = sorted(self.chunk_sizes)
        _engine_facts(out, self.runs)
        return out

    def _throughput(self) -> Throughput:
        if not self.singles:
            return Throughput()
        avg = self.moved / self.wall if self.wall > 0 else None
        loop, cp = (_rate(self.refs.get(k)) for k in ("loop", "cp"))
        return Throughput(min(self.singles), avg, loop, cp, ratio(avg, loop), ratio(avg, cp))


def _rate(acc: list[float] | None) -> float | None:
    return acc[0] / acc[1] if acc and acc[1] > 0 else None


def _worst_latency(runs: Sequence[CopyRun]) -> dict[str, float] | None:
    """Per key, the worst over the calls: percentiles of separate calls cannot be merged."""
    known = [r.chunk_latency for r in runs if r.chunk_latency]
    return {k: max(d[k] for d in known) for k in known[0]} if known else None


def _engine_facts(out: ScenarioResult, runs: Sequence[CopyRun]) -> None:
    """Concurrency and pressure from the engine's reports, or 'pending' when it gave none."""
    if not runs:
        return
    if out.latency is None:
        out.pending.append("chunk_latency")
    peaks = [r.peak_concurrency for r in runs if r.peak_concurrency is not None]
    out.peak_concurrency = max(peaks) if peaks else None
    levels = [r.highest_level for r in runs if r.highest_level is not None]
    seconds: dict[str, float] = {}
    for r in runs:
        for level, secs in (r.time_in_levels or {}).items():
            seconds[level] = seconds.get(level, 0.0) + float(secs)
    if levels:
        order = ("NONE", "LIGHT", "MODERATE", "HEAVY", "CRITICAL")
        highest = max(levels, key=lambda lv: order.index(lv) if lv in order else -1)
        out.pressure = {"highest": highest, "seconds_in_levels": seconds}
    out.pending += [n for n, v in (("pressure", levels), ("peak_concurrency", peaks)) if not v]


def interleaved(sides: Sequence[Callable[[], None]], runs: int, step: Tick) -> None:
    """Each repeat runs every side, starting one later each time, so drift hits all alike."""
    for i in range(runs):
        for k in range(len(sides)):
            sides[(i + k) % len(sides)]()
            step()


def run_transfers(area: Path, spec: Spec, hooks: Hooks, cp: list[str] | None) -> ScenarioResult:
    """copy / concurrency: openspec (``jobs`` = files) against the loop, and ``cp`` for one."""
    tally = Tally(spec)
    srcs = tally.sources(area, spec.files)
    hooks.begin()
    out, ref = area / "out", area / "ref"

    def fresh(path: Path) -> Path:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        return path

    def openspec() -> None:
        tally.add_copy(copy_run([str(s) for s in srcs], str(fresh(out)), spec.files), spec.files)

    def reference(side: str, copy: Callable[[Path, Path], None]) -> Callable[[], None]:
        def go() -> None:
            dest = fresh(ref)
            start = time.perf_counter()
            for src in srcs:
                copy(src, dest / src.name)
            tally.reference(side, spec.size * spec.files, time.perf_counter() - start)

        return go

    sides = [openspec, reference("loop", loop_copy)]
    if cp is not None and spec.kind == "copy":
        sides.append(reference("cp", lambda s, d: cp_copy(cp, s, d)))
    interleaved(sides, spec.runs, hooks.step)
    return tally.result()


def run_chunking(area: Path, spec: Spec, hooks: Hooks, cp: list[str] | None) -> ScenarioResult:
    """The engine alone (read, hash, write; no fsync): adaptive chunk sizes against fixed 64 KiB."""
    tally = Tally(spec)
    (src,) = tally.sources(area, 1)
    hooks.begin()

    def adaptive() -> None:
        seconds = timed(lambda: check(pump_file(src, area / "a.bin", None, tally.latencies)))
        tally.moved, tally.wall = tally.moved + spec.size, tally.wall + seconds
        tally.singles.append(spec.size / seconds)

    def fixed() -> None:
        sizer = ChunkSizer(start=FIXED_CHUNK, floor=FIXED_CHUNK, ceiling=FIXED_CHUNK)
        seconds = timed(lambda: check(pump_file(src, area / "f.bin", sizer, Percentiles())))
        tally.reference("loop", spec.size, seconds)

    def check(digest: str) -> bool:
        ok = digest == tally.expected[src.name]
        tally.rel.streams += 1
        tally.rel.streams_ok += ok
        return ok

    interleaved([adaptive, fixed], spec.runs, hooks.step)
    return tally.result()


def run_resume(area: Path, spec: Spec, hooks: Hooks, cp: list[str] | None) -> ScenarioResult:
    """Copies stopped by a permanent error (ENOSPC) part-way, then ``resume``d: right file?"""
    tally = Tally(spec)
    (src,) = tally.sources(area, 1)
    hooks.begin()
    rng = random.Random(spec.size)
    for i in range(spec.runs):
        dest = area / f"resumed-{i}.bin"
        cut = rng.randrange(spec.size // 10, spec.size * 9 // 10)
        plan = {("write", cut): errno.ENOSPC}
        with injected_faults(plan) as fired, contextlib.suppress(OpenspecError):
            copy_run([str(src)], str(dest), 1)
        tally.rel.recoveries += 1
        tally.rel.recoveries_ok += _resumed(tally, src, dest) if fired else 0
        hooks.step()
    tally.rel.streams = 0  # the interrupted copies failed on purpose: they are recoveries
    return tally.result()


def _resumed(tally: Tally, src: Path, dest: Path) -> bool:
    found = checkpoint.find_for(str(src), str(dest))
    if found is None:
        tally.errors.append(f"no checkpoint left to resume {dest.name}")
        return False
    try:
        result = api.resume(found.id)
    except OpenspecError as err:
        tally.errors.append(err.message)
        return False
    tally.resumed.append(result.resumed_from / max(tally.spec.size, 1))
    return tally.correct(result) and api.hash_file(str(dest)) == tally.expected[src.name]


def run_transient(area: Path, spec: Spec, hooks: Hooks, cp: list[str] | None) -> ScenarioResult:
    """Copies hit by transient EIO/EAGAIN on read and write, retried in place: right file?"""
    tally = Tally(spec)
    (src,) = tally.sources(area, 1)
    hooks.begin()
    rng = random.Random(spec.size + 1)
    for i in range(spec.runs):
        faults = {
            ("read", rng.randrange(spec.size // 10, spec.size // 2)): errno.EIO,
            ("write", rng.randrange(spec.size // 2, spec.size * 9 // 10)): errno.EAGAIN,
        }
        with injected_faults(faults) as fired:
            try:
                ok = tally.add_copy(copy_run([str(src)], str(area / f"t{i}.bin"), 1), 1)
            except OpenspecError as err:
                tally.rel.streams += 1
                tally.errors.append(err.message)
                ok = 0
        tally.rel.recoveries += 1 if fired else 0
        tally.rel.recoveries_ok += ok if fired else 0
        hooks.step()
    out = tally.result()
    out.throughput = Throughput()  # backoff sleeps are part of it: not a speed to score
    return out


RUNNERS: dict[str, Callable[[Path, Spec, Hooks, list[str] | None], ScenarioResult]] = {
    "copy": run_transfers,
    "concurrency": run_transfers,
    "chunking": run_chunking,
    "resume": run_resume,
    "transient": run_transient,
}


# ---------------------------------------------------------------------------- running


@contextlib.contextmanager
def workspace(directory: str | None) -> Iterator[Path]:
    """A private temporary directory, removed on every way out."""
    root = Path(tempfile.mkdtemp(prefix="openspec-bench-", dir=directory))
    try:
        yield root
    finally:
        remove_tree(root)


def remove_tree(root: Path) -> None:
    """Remove ``root``; a second Ctrl-C meanwhile must not leave half of it behind."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        shutil.rmtree(root, ignore_errors=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def run(config: Config, observer: BenchObserver | None = None) -> BenchResult:
    """Run every scenario; Interrupted (exit 130, or 143 for SIGTERM) once cleaned up."""
    observer = observer or NullBenchObserver()
    cp = cp_command()
    specs = plan(config, has_cp=cp is not None)
    started, clock, load = time.time(), time.perf_counter(), load_average()
    try:
        with workspace(config.directory) as root:
            _check_space(root, specs)
            results = [
                _run_one(root, spec, cp, (i, len(specs)), observer) for i, spec in enumerate(specs)
            ]
    except KeyboardInterrupt:
        raise Interrupted("interrupted; benchmark files removed") from None
    except Interrupted as exc:
        raise Interrupted("interrupted; benchmark files removed", exc.exit_code) from None
    seconds = time.perf_counter() - clock
    return BenchResult(started, seconds, config, results, load, load_average())


def _run_one(
    root: Path, spec: Spec, cp: list[str] | None, place: tuple[int, int], observer: BenchObserver
) -> ScenarioResult:
    """One scenario in a fresh interpreter, as a real ``openspec copy`` is one process.

    Memory freed by one scenario stays with its process's allocator (thread arenas), so in a
    shared process every scenario's peak would include its predecessors'. The child reports a
    line per step and its result as JSON on a pipe of its own.
    """
    observer.scenario_started(spec, *place)
    area = root / spec.id
    area.mkdir()
    read_fd, write_fd = os.pipe()
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(area / "state")}
    args = [str(write_fd), json.dumps(dataclasses.asdict(spec)), str(area), json.dumps(cp)]
    with open(area / "stderr", "wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "openspec_cli.bench", *args],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=env,
            pass_fds=(write_fd,),
        )
    os.close(write_fd)
    try:
        result = _follow(child, read_fd, spec, observer, area)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        shutil.rmtree(area, ignore_errors=True)
    observer.scenario_finished(result)
    return result


def _follow(
    child: subprocess.Popen[bytes], read_fd: int, spec: Spec, observer: BenchObserver, area: Path
) -> ScenarioResult:
    """Forward the child's steps to the observer until its result (or its failure) arrives."""
    done, found = 0, None
    with open(read_fd, encoding="utf-8") as channel:
        for line in channel:
            if line == "step\n":
                done += 1
                observer.step_done(spec, done, spec.runs * spec.sides)
            elif line.startswith("result "):
                found = result_from_dict(json.loads(line[7:]))
    if child.wait() != 0 or found is None:
        tail = (area / "stderr").read_bytes()[-400:].decode(errors="replace")
        raise OpenspecError(f"scenario {spec.id} failed: {tail.strip()}", ExitCode.IO_ERROR)
    return found


def result_from_dict(data: dict[str, Any]) -> ScenarioResult:
    """The inverse of ``dataclasses.asdict`` for a ScenarioResult (child to parent, baselines)."""
    parts = {"throughput": Throughput, "memory": Memory, "reliability": Reliability}
    return ScenarioResult(**{**data, **{k: cls(**data[k]) for k, cls in parts.items()}})


def _child(argv: Sequence[str]) -> int:
    """The child side of :func:`_run_one`: run one scenario here and report on the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us
    fd, spec_json, area, cp_json = argv
    spec = Spec(**json.loads(spec_json))
    with open(int(fd), "w", encoding="utf-8", buffering=1) as channel:

        def step() -> None:
            channel.write("step\n")

        with RssSampler() as sampler:
            hooks = Hooks(begin=sampler.restart, step=step)
            result = RUNNERS[spec.kind](Path(area), spec, hooks, json.loads(cp_json))
        result.seconds, result.memory = sampler.span, sampler.summary()
        channel.write("result " + json.dumps(dataclasses.asdict(result)) + "\n")
    return 0


def _check_space(root: Path, specs: Sequence[Spec]) -> None:
    needed, vfs = space_needed(specs), os.statvfs(root)
    free = vfs.f_bavail * vfs.f_frsize
    if free < needed:
        raise OpenspecError(
            f"'{root.parent}': the benchmark needs {needed} bytes free, there are {free} "
            "(use --dir or smaller --sizes)",
            ExitCode.USAGE,
        )


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, which say how noisy the machine was."""
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
