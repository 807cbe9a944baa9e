#!/usr/bin/env python3
"""What checkpointing costs a copy, and what resuming a copy interrupted at 50% saves.

Why: every copy is a resumable transfer (a hash snapshot every few chunks, a sidecar saved at
most every 0.2 s), and that bookkeeping must stay near free; in exchange a resume should cost
well under a full copy even though it re-hashes the verified prefix first. Like compare.py, it
measures A and B in one run, on one page-cached file, interleaved, and reports ratios A/B.

Scenarios (the median and the min of N timed runs each, after untimed warm-up rounds):

  checkpoint_fsync           openspec copy --json SRC DST
                             openspec copy --json --checkpoint-every 1000000000 SRC DST
  checkpoint_fsync_inproc    the same runs, timed in-process: bytes / totals.throughput_bps
                             of their --json (no Python start-up; A/B = B rate / A rate)
  checkpoint_nofsync(_inproc)  both again with --no-fsync
  resume_50                  openspec resume --json ID, for a copy stopped at 50% of SRC
                             openspec copy --json SRC DST2 (a full copy of the same file)

The interrupted copy is made, untimed, in a child process of openspec's own python that uses
the library with an injected permanent error, as tests/test_faults.py does in-process: the
``fileio.write_all`` that crosses byte size/2 writes up to it and raises ENOSPC, like a disk
filling up there, so the partial file holds exactly half the source. The same child then
times ``copying.verified_prefix`` on the partial (what a resume re-hashes first). The id comes
from ``openspec resume --list --json``. Every resumed file is compared with its source (``cmp``)
and its digest with the full copies'; any difference is fatal. All checkpoints live in the
temporary directory (OPENSPEC_STATE_DIR): the user's own state is never touched.

Exit status: 0 when every command ran and every file was right, whatever the ratios (targets
are reported, never enforced); 1 when a command failed or a file or digest came out wrong; 2
when a tool is missing or an argument is wrong; 130 on SIGINT, 128+N on SIGTERM/SIGHUP. The
temporary directory is removed in every case.

JSON (--json FILE), schema 1:
  {"schema", "size_bytes", "runs", "warmup", "openspec", "python", "load_before", "load_after",
   "scenarios": [{"name", "a", "b", "a_seconds": [...], "b_seconds": [...],
                  "a_median", "b_median", "a_min", "b_min", "a_max", "b_max",
                  "ratio_median", "ratio_min", "target", "meets_target"}],
   "throughput": {"fsync"|"nofsync": {"a_bps": [...], "b_bps": [...], "a_median_bps",
                  "b_median_bps", "ratio_median"}},        (ratio: A rate / B rate)
   "resume": {"interrupt_at", "bytes_done": [...], "resumed_from": [...],
              "bytes_done_fraction", "resumed_from_fraction",          (medians, of size)
              "breakdown": {"resume_wall", "startup", "rehash", "copy_rest", "resume_other",
                            "full_wall", "full_copy", "full_other"}}}  (medians, seconds)
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this directory is on sys.path; the child process adds it itself.
import compare
from compare import (
    MIB,
    Failure,
    MissingTool,
    Runner,
    Sample,
    find_openspec,
    interpreter_of,
    make_source,
    ratio,
    warm,
)

SCHEMA = 1
PROG = "bench_resume.py"
HERE = Path(__file__).resolve().parent
#: A --checkpoint-every that a copy never reaches: no hash snapshots, no sidecar updates.
CHECKPOINT_OFF = "1000000000"
#: transfer._commit promises checkpointing "under a percent of a fast copy".
CHECKPOINT_TARGET = 1.01
RESUME_TARGET = 0.6
MIN_SIZE = 2 * MIB  # below this the first checkpoint may come after the halfway point
#: Runs in openspec's python: ``bench_resume.child_main(SRC, DST, AT)``.
CHILD_CODE = (
    "import sys; sys.path.insert(0, sys.argv[1]); import bench_resume; "
    "bench_resume.child_main(sys.argv[2:])"
)


# ---------------------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = compare.run_parser(
        PROG,
        "Time checkpointing on/off and a resume at 50% against a full copy.",
        size_note="; at least 2M",
        unit="scenario",
    )
    args = parser.parse_args(argv)
    if args.size < MIN_SIZE:
        parser.error("--size: at least 2M, so that a checkpoint falls before the halfway point")
    compare.check_dir(parser, args)
    return args


# ---------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Tools:
    """Absolute paths, resolved once so PATH changes can't swap a tool mid-run."""

    openspec: str
    python: str  # openspec's own interpreter: the child must run the same library
    cmp: str


def find_tools(openspec: str | None) -> Tools:
    cmp = shutil.which("cmp")
    if cmp is None:
        raise MissingTool("required tool not found on PATH: cmp")
    exe = find_openspec(openspec)
    return Tools(openspec=exe, python=interpreter_of(exe), cmp=cmp)


def make_runner(work: Path, tools: Tools) -> Runner:
    """compare.py's Runner: own process groups, all killed on the way out. Its run() uses
    only ``rss`` of its tools (None: no GNU time wrapper), so the other paths stay empty."""
    return Runner(work, compare.Tools(tools.openspec, tools.python, "", "", "", "", None))


def preflight(runner: Runner, tools: Tools) -> None:
    """Fail fast, with exit 2, if openspec or its library can't even start."""
    for argv, what in (
        ([tools.openspec, "--version"], f"openspec at {tools.openspec} does not run"),
        (
            [tools.python, "-c", "import openspec_cli.copying"],
            f"{tools.python} (openspec's python) cannot import openspec_cli",
        ),
    ):
        try:
            runner.run(argv)
        except Failure as err:
            raise MissingTool(f"{what}: {err}") from None


# ---------------------------------------------------------------------------- the child


def interrupt_copy(src: str, dst: str, at: int) -> dict[str, Any]:
    """Copy ``src`` to ``dst`` with the library until the write that crosses byte ``at``, which
    writes up to ``at`` and fails with ENOSPC (permanent: no retry), keeping a checkpoint.

    Runs in a child process: the monkeypatch must not outlive it. Also times the re-hash of
    the verified prefix, the first thing a resume does, on the very same partial file.
    """
    from openspec_cli import checkpoint, copying, fileio
    from openspec_cli.copy_records import CopyOptions
    from openspec_cli.errors import TransferIOError

    real_write = fileio.write_all
    fired: list[int] = []

    def write_or_fail(fd: int, data: memoryview) -> None:
        room = at - os.lseek(fd, 0, os.SEEK_CUR)
        if room < len(data):  # like a disk that fills up at ``at``: a short write, then ENOSPC
            if room > 0:
                real_write(fd, data[:room])
            fired.append(at)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(fd, data)

    fileio.write_all = write_or_fail
    try:
        copying.copy_file(src, dst, CopyOptions(restart=True))
    except TransferIOError as err:
        if not fired:
            raise
        message = err.message
    else:
        raise SystemExit(f"{PROG}: the copy was not interrupted at byte {at}")
    finally:
        fileio.write_all = real_write
    cp = checkpoint.find_for(src, dst)
    if cp is None:
        raise SystemExit(f"{PROG}: the interrupted copy left no checkpoint")
    fd = os.open(cp.partial, os.O_RDONLY)
    try:
        start = time.perf_counter()
        verified, _ = copying.verified_prefix(fd, cp.points, cp.algo)
        rehash = time.perf_counter() - start
    finally:
        os.close(fd)
    return {
        "id": cp.id,
        "bytes_done": cp.bytes_done,
        "partial_bytes": os.path.getsize(cp.partial),
        "failed_at": fired[0],
        "verified": verified,
        "rehash_seconds": rehash,
        "message": message,
    }


def child_main(argv: Sequence[str]) -> None:
    """Entry point of the child: SRC DST AT; prints interrupt_copy's facts as JSON."""
    src, dst, at = argv
    print(json.dumps(interrupt_copy(src, dst, int(at))))


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Report:
    """The fields of a ``--json`` summary this benchmark uses."""

    bytes: int
    seconds: float
    throughput_bps: float
    resumed_from: int
    digest: str


def parse_report(sample: Sample, what: str) -> Report:
    try:
        data = json.loads(sample.stdout)
        (entry,) = data["files"]
        totals = data["totals"]
        report = Report(
            bytes=int(totals["bytes"]),
            seconds=float(entry["seconds"]),
            throughput_bps=float(totals["throughput_bps"]),
            resumed_from=int(totals["resumed_from"]),
            digest=str(entry["digest"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise Failure(f"{what} printed no usable --json summary ({err!r})") from None
    if report.throughput_bps <= 0 or report.seconds <= 0:
        raise Failure(f"{what} reported no throughput: {sample.stdout[:300]!r}")
    return report


@dataclass
class Scenario(compare.ABTimings):
    """Two ways of doing one job; the ratio A/B is what is compared with the target."""

    name: str
    a_label: str
    b_label: str
    target: float | None
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)

    def seconds(self, side: str) -> list[float]:
        return self.a if side == "a" else self.b

    def ratio_target(self) -> float | None:
        return self.target


@dataclass
class Throughput:
    """In-process rates (``totals.throughput_bps``) of the two sides of a checkpoint pair."""

    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)


@dataclass
class ResumeFacts:
    """Per timed round: where the interrupted copy stopped and where each phase's time went."""

    interrupt_at: int
    bytes_done: list[int] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)
    startup: list[float] = field(default_factory=list)  # `resume --list --json`, wall
    rehash: list[float] = field(default_factory=list)  # verified_prefix in the child
    copy_rest: list[float] = field(default_factory=list)  # the resume's --json seconds
    full_copy: list[float] = field(default_factory=list)  # the full copy's --json seconds


@dataclass
class Results:
    size: int
    scenarios: list[Scenario] = field(default_factory=list)
    throughput: dict[str, Throughput] = field(default_factory=dict)
    resume: ResumeFacts | None = None


# ---------------------------------------------------------------------------- measuring


class Bench:
    """The scenarios, sharing one source file, one runner and one reference digest."""

    def __init__(self, runner: Runner, tools: Tools, src: Path, runs: int, warmup: int) -> None:
        self.runner = runner
        self.tools = tools
        self.src = src
        self.size = src.stat().st_size
        self.runs = runs
        self.warmup = warmup
        self.work = runner.work
        self.digest: str | None = None  # what every complete copy must report

    def _progress(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    def _check_digest(self, report: Report, what: str) -> None:
        if self.digest is None:
            self.digest = report.digest
        elif report.digest != self.digest:
            raise Failure(f"digest mismatch: {what} reported {report.digest}, not {self.digest}")

    def _check_file(self, path: Path, what: str, compare_bytes: bool) -> None:
        """A complete file of the right size, and (if asked) the same bytes as the source."""
        if not path.is_file() or path.stat().st_size != self.size:
            raise Failure(f"{what} produced no {self.size}-byte file at {path}")
        if compare_bytes:
            try:
                self.runner.run([self.tools.cmp, "-s", str(self.src), str(path)])
            except Failure as err:
                raise Failure(f"{what}: {path} differs from its source ({err})") from None

    def _settle(self, path: Path) -> None:
        """Delete an output and sync, so no timed run inherits another's write-back."""
        path.unlink()
        os.sync()

    def _copy(self, argv: Sequence[str], dst: Path, what: str, check: bool) -> tuple[float, Report]:
        sample = self.runner.run(argv, capture=True)
        report = parse_report(sample, what)
        if report.bytes != self.size or report.resumed_from != 0:
            raise Failure(f"{what} copied {report.bytes} bytes from {report.resumed_from}")
        self._check_digest(report, what)
        self._check_file(dst, what, compare_bytes=check)
        self._settle(dst)
        return sample.seconds, report

    def checkpointing(self, fsync: bool) -> tuple[Scenario, Scenario, Throughput]:
        """Default checkpointing (A) against effectively none (B), wall and in-process."""
        suffix = "fsync" if fsync else "nofsync"
        flags = [] if fsync else ["--no-fsync"]
        dst = self.work / "dst.bin"
        os_ = self.tools.openspec
        a_argv = [os_, "copy", "--json", *flags, str(self.src), str(dst)]
        b_argv = [os_, "copy", "--json", *flags, "--checkpoint-every", CHECKPOINT_OFF]
        b_argv += [str(self.src), str(dst)]
        shown = " ".join(["openspec copy --json", *flags])
        a_label = f"{shown} SRC DST"
        b_label = f"{shown} --checkpoint-every {CHECKPOINT_OFF} SRC DST"
        wall = Scenario(f"checkpoint_{suffix}", a_label, b_label, CHECKPOINT_TARGET)
        inproc = Scenario(
            f"checkpoint_{suffix}_inproc",
            "A above, bytes / totals.throughput_bps",
            "B above, bytes / totals.throughput_bps",
            CHECKPOINT_TARGET,
        )
        rates = Throughput()
        warm(self.src)
        self._progress(f"{PROG}: {wall.name} ")
        for index in range(-self.warmup, self.runs):
            first = index == -self.warmup
            sides = [("a", a_argv), ("b", b_argv)]
            for side, argv in sides if index % 2 == 0 else sides[::-1]:
                seconds, report = self._copy(argv, dst, f"copy ({side.upper()})", first)
                if index >= 0:
                    wall.seconds(side).append(seconds)
                    inproc.seconds(side).append(self.size / report.throughput_bps)
                    (rates.a if side == "a" else rates.b).append(report.throughput_bps)
            self._progress("." if index >= 0 else "w")
        self._progress("\n")
        return wall, inproc, rates

    def _interrupt(self, dst: Path, at: int) -> dict[str, Any]:
        """Untimed: a transfer of SRC to ``dst`` stopped at ``at``, listed by openspec."""
        argv = [self.tools.python, "-c", CHILD_CODE, str(HERE), str(self.src), str(dst), str(at)]
        out = self.runner.run(argv, capture=True).stdout
        try:
            child: dict[str, Any] = json.loads(out)
        except ValueError:
            raise Failure(f"the interrupting process printed {out[-300:]!r}") from None
        listed = self.runner.run([self.tools.openspec, "resume", "--list", "--json"], capture=True)
        rows = [r for r in json.loads(listed.stdout) if r.get("dest") == str(dst)]
        if len(rows) != 1 or rows[0]["state"] != "resumable":
            raise Failure(f"expected one resumable transfer to {dst}, `resume --list` shows {rows}")
        row = rows[0]
        if row["id"] != child["id"] or row["bytes_done"] != child["bytes_done"]:
            raise Failure(f"`resume --list` shows {row}, the interrupting process saw {child}")
        if child["partial_bytes"] != at or not 0 < row["bytes_done"] <= at:
            raise Failure(
                f"transfer {row['id']} stopped with {child['partial_bytes']} bytes written and "
                f"{row['bytes_done']} checkpointed, expected {at} and at most that"
            )
        os.sync()  # the first half reaches the disk before the resume, as after a real stop
        return {**child, "startup": listed.seconds}

    def resume(self) -> tuple[Scenario, ResumeFacts]:
        """Resume of a copy stopped at 50% (A) against a full copy of the same file (B)."""
        dst, full = self.work / "resumed.bin", self.work / "full.bin"
        at = self.size // 2
        scenario = Scenario(
            "resume_50",
            "openspec resume --json ID (copy stopped at 50%)",
            "openspec copy --json SRC DST2 (full copy)",
            RESUME_TARGET,
        )
        facts = ResumeFacts(interrupt_at=at)
        warm(self.src)
        self._progress(f"{PROG}: {scenario.name} ")
        for index in range(-self.warmup, self.runs):
            first = index == -self.warmup
            stopped = self._interrupt(dst, at)
            resume_argv = [self.tools.openspec, "resume", "--json", stopped["id"]]
            copy_argv = [self.tools.openspec, "copy", "--json", str(self.src), str(full)]
            timed: dict[str, tuple[float, Report]] = {}
            for side in ("a", "b") if index % 2 == 0 else ("b", "a"):
                if side == "a":
                    sample = self.runner.run(resume_argv, capture=True)
                    report = parse_report(sample, "resume")
                    self._check_digest(report, "resume")
                    self._check_file(dst, "resume", compare_bytes=True)  # every round
                    self._settle(dst)
                    timed["a"] = (sample.seconds, report)
                else:
                    timed["b"] = self._copy(copy_argv, full, "full copy", first)
            if index >= 0:
                (a_wall, resumed), (b_wall, whole) = timed["a"], timed["b"]
                scenario.a.append(a_wall)
                scenario.b.append(b_wall)
                facts.bytes_done.append(stopped["bytes_done"])
                facts.resumed_from.append(resumed.resumed_from)
                facts.startup.append(stopped["startup"])
                facts.rehash.append(stopped["rehash_seconds"])
                facts.copy_rest.append(resumed.seconds)
                facts.full_copy.append(whole.seconds)
            self._progress("." if index >= 0 else "w")
        self._progress("\n")
        return scenario, facts


def benchmark(runner: Runner, tools: Tools, args: argparse.Namespace) -> Results:
    work = runner.work
    src = work / "src.bin"
    sys.stderr.write(f"{PROG}: writing {args.size / MIB:g} MiB of random data in {work}\n")
    make_source(src, args.size)
    preflight(runner, tools)
    os.sync()
    bench = Bench(runner, tools, src, args.runs, args.warmup)
    results = Results(args.size)
    for fsync in (True, False):
        wall, inproc, rates = bench.checkpointing(fsync)
        results.scenarios += [wall, inproc]
        results.throughput["fsync" if fsync else "nofsync"] = rates
    scenario, facts = bench.resume()
    results.scenarios.append(scenario)
    results.resume = facts
    return results


# ---------------------------------------------------------------------------- report


def breakdown(results: Results) -> dict[str, float]:
    """Medians of where resume and full-copy wall time went; the rest is by difference."""
    facts = results.resume
    resume = next(s for s in results.scenarios if s.name == "resume_50")
    assert facts is not None
    med = statistics.median
    startup, rehash, rest = med(facts.startup), med(facts.rehash), med(facts.copy_rest)
    full = med(facts.full_copy)
    return {
        "resume_wall": resume.median("a"),
        "startup": startup,
        "rehash": rehash,
        "copy_rest": rest,
        "resume_other": resume.median("a") - startup - rehash - rest,
        "full_wall": resume.median("b"),
        "full_copy": full,
        "full_other": resume.median("b") - startup - full,
    }


def _resume_lines(results: Results) -> list[str]:
    facts = results.resume
    assert facts is not None
    size = results.size
    done = statistics.median(facts.bytes_done)
    resumed = statistics.median(facts.resumed_from)
    same = sum(1 for d, r in zip(facts.bytes_done, facts.resumed_from, strict=True) if d == r)
    parts = breakdown(results)
    resume_wall, full_wall = parts["resume_wall"], parts["full_wall"]

    def share(key: str, whole: float) -> str:
        return f"{parts[key]:7.3f} s  {ratio(parts[key], whole) * 100:5.1f}%"

    lines = [
        f"resume_50: write failed at byte {facts.interrupt_at} (50.0%); checkpoint bytes_done "
        f"{done:.0f} ({done / size * 100:.1f}%), resumed_from {resumed:.0f} "
        f"({resumed / size * 100:.1f}%) (medians); resumed_from == bytes_done in "
        f"{same} of {len(facts.resumed_from)} round(s)",
        "",
        "where the time goes (medians, seconds and share of that side's wall time):",
        f"  resume wall                                  {resume_wall:7.3f} s",
        f"    start-up + imports (resume --list --json)  {share('startup', resume_wall)}",
        f"    re-hash of the verified prefix (child)     {share('rehash', resume_wall)}",
        f"    copy of the rest (resume --json seconds)   {share('copy_rest', resume_wall)}",
        f"    other, by difference: fsync, rename, ...   {share('resume_other', resume_wall)}",
        f"  full copy wall                               {full_wall:7.3f} s",
        f"    start-up + imports (as above)              {share('startup', full_wall)}",
        f"    copy (copy --json seconds)                 {share('full_copy', full_wall)}",
        f"    other, by difference: fsync, rename, ...   {share('full_other', full_wall)}",
    ]
    if same != len(facts.resumed_from):
        lines.append("WARNING: some resumes did not start from the checkpoint's bytes_done")
    return lines


def render(
    results: Results, tools: Tools, runs: int, warmup: int, loads: tuple[float, float]
) -> str:
    header = ["scenario", "A median s", "B median s", "A/B median", "A/B min", "target", "meets"]
    rows = [
        [
            s.name,
            compare._num(s.median("a"), ".4f"),
            compare._num(s.median("b"), ".4f"),
            compare._num(s.ratio_median, ".3f"),
            compare._num(s.ratio_min, ".3f"),
            "-" if s.target is None else f"{s.target:.2f}",
            {None: "info", True: "yes", False: "NO"}[s.meets_target],
        ]
        for s in results.scenarios
    ]
    noise_header = ["scenario", "A min", "A median", "A max", "A med/min"]
    noise_header += ["B min", "B median", "B max", "B med/min"]
    noise = [
        [s.name]
        + [
            cell
            for side in ("a", "b")
            for cell in (
                compare._num(s.minimum(side), ".4f"),
                compare._num(s.median(side), ".4f"),
                compare._num(s.maximum(side), ".4f"),
                f"+{(ratio(s.median(side), s.minimum(side)) - 1) * 100:.1f}%",
            )
        ]
        for s in results.scenarios
    ]
    legend = [
        f"  {s.name:<25} A: {s.a_label}\n  {'':<25} B: {s.b_label}" for s in results.scenarios
    ]
    graded = [s for s in results.scenarios if s.meets_target is not None]
    met = sum(1 for s in graded if s.meets_target)
    lines = [
        f"openspec bench_resume: {results.size / MIB:g} MiB random file (page-cached), "
        f"{runs} timed run(s) per side after {warmup} warm-up round(s), A/B interleaved",
        f"openspec: {tools.openspec}  python: {tools.python}",
        f"load average (1 min): {loads[0]:.2f} before, {loads[1]:.2f} after",
        "",
        compare._table(header, rows),
        "",
        "commands:",
        *legend,
        "  (in-process rows: A/B = B's throughput_bps / A's; Python start-up excluded)",
        "",
        "spread of the runs (median over min; large = noisy):",
        compare._table(noise_header, noise),
        "",
        *_resume_lines(results),
        "",
        f"{met} of {len(graded)} ratios meet their target (median A/B <= target); "
        "targets are reported, not enforced.",
    ]
    return "\n".join(lines)


def _scenario_json(s: Scenario) -> dict[str, Any]:
    return {
        "name": s.name,
        "a": s.a_label,
        "b": s.b_label,
        "a_seconds": s.a,
        "b_seconds": s.b,
        "a_median": s.median("a"),
        "b_median": s.median("b"),
        "a_min": s.minimum("a"),
        "b_min": s.minimum("b"),
        "a_max": s.maximum("a"),
        "b_max": s.maximum("b"),
        "ratio_median": s.ratio_median,
        "ratio_min": s.ratio_min,
        "target": s.target,
        "meets_target": s.meets_target,
    }


def to_json(
    results: Results, tools: Tools, runs: int, warmup: int, loads: tuple[float, float]
) -> dict[str, Any]:
    facts = results.resume
    assert facts is not None
    med = statistics.median
    return {
        "schema": SCHEMA,
        "size_bytes": results.size,
        "runs": runs,
        "warmup": warmup,
        "openspec": tools.openspec,
        "python": tools.python,
        "load_before": loads[0],
        "load_after": loads[1],
        "scenarios": [_scenario_json(s) for s in results.scenarios],
        "throughput": {
            name: {
                "a_bps": rates.a,
                "b_bps": rates.b,
                "a_median_bps": med(rates.a),
                "b_median_bps": med(rates.b),
                "ratio_median": ratio(med(rates.a), med(rates.b)),
            }
            for name, rates in results.throughput.items()
        },
        "resume": {
            "interrupt_at": facts.interrupt_at,
            "bytes_done": facts.bytes_done,
            "resumed_from": facts.resumed_from,
            "bytes_done_fraction": med(facts.bytes_done) / results.size,
            "resumed_from_fraction": med(facts.resumed_from) / results.size,
            "breakdown": breakdown(results),
        },
    }


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tools = find_tools(args.openspec)
    except MissingTool as err:
        sys.stderr.write(f"{PROG}: {err}\n")
        return err.exit_code
    work = Path(tempfile.mkdtemp(prefix="openspec-bench-resume-", dir=args.dir))
    runner = make_runner(work, tools)

    def body() -> None:
        # Every openspec started from here (and the child) keeps its checkpoints in `work`.
        saved_state = os.environ.get("OPENSPEC_STATE_DIR")
        os.environ["OPENSPEC_STATE_DIR"] = str(work / "state")
        try:
            load_before = os.getloadavg()[0]
            results = benchmark(runner, tools, args)
            loads = (load_before, os.getloadavg()[0])
            print(render(results, tools, args.runs, args.warmup, loads), flush=True)
            if args.json is not None:
                payload = to_json(results, tools, args.runs, args.warmup, loads)
                args.json.write_text(json.dumps(payload, indent=2) + "\n")
        finally:
            if saved_state is None:
                os.environ.pop("OPENSPEC_STATE_DIR", None)
            else:
                os.environ["OPENSPEC_STATE_DIR"] = saved_state

    return compare.run_guarded(PROG, work, runner, body)


if __name__ == "__main__":
    sys.exit(main())
