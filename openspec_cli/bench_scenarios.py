"""What each ``openspec bench`` scenario's child process runs: the scenarios themselves, and the
child's side of the pipe to the parent (``python -m openspec_cli.bench_scenarios``).

A scenario generates its data, tells its runner when measuring starts and when each step is done
(:class:`Hooks`), and returns a :class:`ScenarioResult`; ``bench`` starts the processes and
gathers the results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openspec_cli import api, checkpoint
from openspec_cli.bench_instruments import (
    CopyRun,
    RssSampler,
    copy_run,
    cp_copy,
    injected_faults,
    loop_copy,
    make_file,
    pump_file,
    ratio,
    timed,
)
from openspec_cli.bench_model import KIB, Reliability, ScenarioResult, Spec, Throughput
from openspec_cli.chunking import ChunkSizer
from openspec_cli.errors import OpenspecError
from openspec_cli.governor import Percentiles

#: The fixed chunk size the adaptive sizer is measured against (the design record's old default).
FIXED_CHUNK = 64 * KIB
Tick = Callable[[], None]


@dataclass(frozen=True)
class Hooks:
    """What a scenario tells its runner: data is ready (measuring starts), one step is done."""

    begin: Tick
    step: Tick


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
    # A level-less report of the engine is a run too short to sample (not measured, "-"):
    # pending is for facts the engine does not report at all.
    reported = any(r.time_in_levels is not None for r in runs)
    out.pending += [
        n for n, v in (("pressure", levels or reported), ("peak_concurrency", peaks)) if not v
    ]


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


# ---------------------------------------------------------------------------- the child process


def _child(argv: Sequence[str]) -> int:
    """The child side of :func:`bench._run_one`: run one scenario here and report on the pipe."""
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


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
