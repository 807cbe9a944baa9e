#!/usr/bin/env python3
"""Side-by-side benchmark of openspec against cp, xxh128sum, pv and a bare Python start-up.

Why ratios: on a shared, noisy machine an absolute time says little. Running openspec (A) and
the standard tool (B) in one run, on the same page-cached file, with A and B interleaved so that
drift hits both, gives a ratio A/B that can be compared with a target.

Pairs (the median and the min of N timed runs each, after an untimed warm-up round):

  copy_fsync    openspec copy SRC DST            cp SRC DST, then fsync DST and its directory
                (openspec fsyncs both before/after its rename, so durability is equal)
  copy_nofsync  openspec copy --no-fsync SRC DST cp SRC DST
  verify        openspec verify SRC              xxh128sum SRC   (the lines must be identical)
  cat           openspec cat SRC | cat >/dev/null    pv -q SRC | cat >/dev/null
  startup       openspec --version               PYTHON -c "import typer" (openspec's python)
  verify_empty  openspec verify EMPTY            xxh128sum EMPTY  (fixed cost; no target)

Peak RSS is that of openspec's own process, recorded by GNU time wrapped around the measured
command on both sides (wait4 on a child of this script would report this script's own
high-water mark: a vfork'd child inherits it). Without /usr/bin/time it is reported as null.

Exit status: 0 when every command ran, whatever the ratios (targets are reported, never
enforced); 1 when a command failed, a copy came out wrong or the digests differ; 2 when a tool
is missing or an argument is wrong; 130 on SIGINT, 128+N on SIGTERM/SIGHUP. The temporary
directory is removed in every case.

JSON (--json FILE), schema 1:
  {"schema", "size_bytes", "runs", "warmup", "openspec", "python", "rss_tool",
   "rss_target_mib", "load_before", "load_after",
   "pairs": [{"name", "a", "b", "a_seconds": [...], "b_seconds": [...],
              "a_median", "b_median", "a_min", "b_min", "a_max", "b_max",
              "ratio_median", "ratio_min", "target", "meets_target",
              "openspec_peak_rss_mib", "b_peak_rss_mib"}]}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from openspec_cli import units

SCHEMA = 1
MIB = 1 << 20
CHUNK = 1 * MIB
RSS_TARGET_MIB = 50.0
GNU_TIME = "/usr/bin/time"
REQUIRED_TOOLS = ("cp", "xxh128sum", "pv", "cat")
TARGETS: dict[str, float | None] = {
    "copy_fsync": 1.05,
    "copy_nofsync": 1.05,
    "verify": 1.25,
    "cat": 1.10,
    "startup": 1.5,
    "verify_empty": None,
}
PROG = "compare.py"


class Failure(Exception):
    """A command failed or disagreed with its reference: its timings would mean nothing."""

    exit_code = 1


class MissingTool(Failure):
    """A tool the comparison needs is absent; nothing was measured."""

    exit_code = 2


class Stopped(BaseException):
    """SIGTERM/SIGHUP, raised like KeyboardInterrupt so the same clean-up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# ---------------------------------------------------------------------------- arguments


def parse_size(text: str) -> int:
    """``4M`` -> 4194304; binary units, like the tools being compared (openspec's own parser)."""
    try:
        return units.parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def run_parser(
    prog: str, description: str, size_note: str = "", unit: str = "pair"
) -> argparse.ArgumentParser:
    """The options every benchmark script here takes (also scripts/bench_resume.py): the test
    file's size and place, runs and warm-up rounds, which openspec, and a JSON copy."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--size",
        type=parse_size,
        default=parse_size("1G"),
        help=f"size of the random test file (default 1G; binary units{size_note})",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to make the temporary directory (default: system temp)",
    )
    parser.add_argument("--runs", type=_positive, default=5, help="timed runs per side (default 5)")
    parser.add_argument(
        "--warmup",
        type=_non_negative,
        default=1,
        help=f"untimed rounds per {unit} before the timed ones (default 1)",
    )
    parser.add_argument(
        "--openspec",
        default=None,
        help="openspec to test (default: next to this python, else on PATH)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="also save the results as JSON to FILE",
    )
    return parser


def check_dir(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a --dir that is not a directory, as argparse refuses a bad value."""
    if args.dir is not None and not args.dir.is_dir():
        parser.error(f"--dir: '{args.dir}' is not a directory")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = run_parser(
        PROG, "Time openspec against cp, xxh128sum, pv and python start-up; print ratios."
    )
    args = parser.parse_args(argv)
    check_dir(parser, args)
    return args


# ---------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Tools:
    """Absolute paths, resolved once so PATH changes can't swap a tool mid-run."""

    openspec: str
    python: str
    cp: str
    xxh128sum: str
    pv: str
    cat: str
    rss: str | None


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_openspec(given: str | None) -> str:
    """The one asked for; else the one installed beside this python (its venv); else PATH."""
    if given is not None:
        found = shutil.which(given)
        if found is None:
            raise MissingTool(f"openspec not found or not executable: {given}")
        return os.path.abspath(found)
    beside = Path(sys.executable).parent / "openspec"
    if _executable(beside):
        return str(beside)
    found = shutil.which("openspec")
    if found is None:
        raise MissingTool("openspec not found next to this python nor on PATH (use --openspec)")
    return found


def interpreter_of(script: str) -> str:
    """The python a console script runs under (its shebang), so start-up is like for like."""
    with contextlib.suppress(OSError), open(script, "rb") as handle:
        first = handle.readline(512)
        if first.startswith(b"#!"):
            words = first[2:].decode(errors="replace").split()
            if words and os.path.basename(words[0]) == "env":
                words = [w for w in words[1:] if not w.startswith("-")]
                found = shutil.which(words[0]) if words else None
                if found:
                    return found
            elif words and _executable(Path(words[0])):
                return words[0]
    return sys.executable


def find_tools(openspec: str | None) -> Tools:
    missing = [name for name in REQUIRED_TOOLS if shutil.which(name) is None]
    if missing:
        raise MissingTool(f"required tool(s) not found on PATH: {', '.join(missing)}")
    exe = find_openspec(openspec)

    def which(name: str) -> str:
        found = shutil.which(name)
        assert found is not None  # checked above
        return found

    return Tools(
        openspec=exe,
        python=interpreter_of(exe),
        cp=which("cp"),
        xxh128sum=which("xxh128sum"),
        pv=which("pv"),
        cat=which("cat"),
        rss=GNU_TIME if _executable(Path(GNU_TIME)) else None,
    )


# ---------------------------------------------------------------------------- running


@dataclass
class Sample:
    """One timed run of one side."""

    seconds: float
    rss_kib: int | None
    stdout: bytes


class Runner:
    """Spawns the measured commands, remembers them, and can kill them all on the way out."""

    def __init__(self, work: Path, tools: Tools) -> None:
        self.work = work
        self.tools = tools
        self.live: list[subprocess.Popen[bytes]] = []
        self._rss = work / "rss.txt"
        self._out = work / "stdout.txt"
        self._err = work / "stderr.txt"

    def _wrap(self, argv: Sequence[str]) -> list[str]:
        """Put GNU time around the measured process so its own peak RSS is recorded."""
        if self.tools.rss is None:
            return list(argv)
        return [self.tools.rss, "-f", "%M", "-o", str(self._rss), *argv]

    def _spawn(
        self,
        argv: Sequence[str],
        stdin: int | IO[bytes],
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
    ) -> subprocess.Popen[bytes]:
        # Own session: a terminal's Ctrl-C reaches only this script, which then kills the
        # whole group (GNU time and its child) itself before removing the files.
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=self.work,
            start_new_session=True,
        )
        self.live.append(proc)
        return proc

    def _reap(self, proc: subprocess.Popen[bytes]) -> int:
        code = proc.wait()
        self.live.remove(proc)
        return code

    def _read_rss(self) -> int | None:
        try:
            lines = self._rss.read_text().split()
        except FileNotFoundError:
            return None
        return int(lines[-1]) if lines and lines[-1].isdigit() else None

    def _check(self, argv: Sequence[str], code: int) -> None:
        if code != 0:
            tail = self._err.read_bytes()[-500:].decode(errors="replace").strip()
            raise Failure(f"`{shlex.join(argv)}` exited with status {code}: {tail}")

    def run(
        self, argv: Sequence[str], *, capture: bool = False, then: Callable[[], None] | None = None
    ) -> Sample:
        """Time one command (and ``then``, if given, as part of the same timed region)."""
        self._rss.unlink(missing_ok=True)
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            start = time.perf_counter()
            proc = self._spawn(
                self._wrap(argv), subprocess.DEVNULL, out if capture else subprocess.DEVNULL, err
            )
            code = self._reap(proc)
            if code == 0 and then is not None:
                then()
            seconds = time.perf_counter() - start
        self._check(argv, code)
        return Sample(seconds, self._read_rss(), self._out.read_bytes() if capture else b"")

    def pipeline(self, producer: Sequence[str]) -> Sample:
        """Time ``producer | cat > /dev/null`` as a whole; RSS is the producer's own."""
        self._rss.unlink(missing_ok=True)
        with open(self._err, "wb") as err:
            read_end, write_end = os.pipe()
            try:
                start = time.perf_counter()
                head = self._spawn(self._wrap(producer), subprocess.DEVNULL, write_end, err)
                tail = self._spawn([self.tools.cat], read_end, subprocess.DEVNULL, err)
            finally:
                os.close(read_end)
                os.close(write_end)
            head_code = self._reap(head)
            tail_code = self._reap(tail)
            seconds = time.perf_counter() - start
        self._check(producer, head_code)
        self._check([self.tools.cat], tail_code)
        return Sample(seconds, self._read_rss(), b"")

    def stop_all(self) -> None:
        """Kill every process group still running, so nothing writes into a removed dir."""
        for proc in list(self.live):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            deadline = time.monotonic() + 1.0  # the grandchild, reparented, may lag a moment
            while time.monotonic() < deadline:
                try:
                    os.killpg(proc.pid, 0)
                except (ProcessLookupError, PermissionError):
                    break
                time.sleep(0.01)
        self.live.clear()


# ---------------------------------------------------------------------------- files


def make_source(path: Path, size: int) -> None:
    """Random (incompressible) data, fsynced so its write-back can't land in a timed run."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        left = size
        while left:
            block = os.urandom(min(left, 8 * MIB))
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]
            left -= len(block)
        os.fsync(fd)
    finally:
        os.close(fd)


def _blocks(path: Path) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as handle:
        while block := handle.read(CHUNK):
            yield block


def warm(path: Path) -> None:
    """Read the file once so every timed run starts from the page cache."""
    for _ in _blocks(path):
        pass


def same_content(left: Path, right: Path) -> bool:
    if left.stat().st_size != right.stat().st_size:
        return False
    return all(a == b for a, b in zip(_blocks(left), _blocks(right), strict=True))


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- pairs


@dataclass
class Pair:
    """Two commands doing the same job; A is openspec, B the reference."""

    name: str
    a_label: str
    b_label: str
    run_a: Callable[[], Sample]
    run_b: Callable[[], Sample]
    after_each: Callable[[bool], None] = lambda first: None  # outside the timed region
    check: Callable[[Sample, Sample], None] | None = None

    @property
    def target(self) -> float | None:
        return TARGETS[self.name]


class ABTimings:
    """Median, min, max and the A/B ratios over two sides' timings (shared with
    bench_resume.py); subclasses say where the seconds and the target come from."""

    def seconds(self, side: str) -> list[float]:
        raise NotImplementedError

    def ratio_target(self) -> float | None:
        raise NotImplementedError

    def median(self, side: str) -> float:
        return statistics.median(self.seconds(side))

    def minimum(self, side: str) -> float:
        return min(self.seconds(side))

    def maximum(self, side: str) -> float:
        return max(self.seconds(side))

    @property
    def ratio_median(self) -> float:
        return ratio(self.median("a"), self.median("b"))

    @property
    def ratio_min(self) -> float:
        return ratio(self.minimum("a"), self.minimum("b"))

    @property
    def meets_target(self) -> bool | None:
        target = self.ratio_target()
        return None if target is None else self.ratio_median <= target


@dataclass
class Result(ABTimings):
    pair: Pair
    a: list[Sample] = field(default_factory=list)
    b: list[Sample] = field(default_factory=list)

    def seconds(self, side: str) -> list[float]:
        return [s.seconds for s in (self.a if side == "a" else self.b)]

    def ratio_target(self) -> float | None:
        return self.pair.target

    def peak_rss_mib(self, side: str) -> float | None:
        values = [s.rss_kib for s in (self.a if side == "a" else self.b)]
        known = [v for v in values if v is not None]
        return max(known) / 1024 if known else None


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def build_pairs(runner: Runner, src: Path, empty: Path, dst: Path) -> list[Pair]:
    t = runner.tools
    size = src.stat().st_size

    def settle_copy(first: bool) -> None:
        """Check the copy, then delete it and sync, so no run inherits another's write-back."""
        if not dst.is_file() or dst.stat().st_size != size:
            raise Failure(f"copy produced no {size}-byte file at {dst}")
        if first and not same_content(src, dst):
            raise Failure(f"copy at {dst} differs from its source")
        dst.unlink()
        os.sync()

    def fsync_copy() -> None:
        fsync_path(dst)
        fsync_path(dst.parent)

    def same_digest(a: Sample, b: Sample) -> None:
        if a.stdout != b.stdout:
            raise Failure(
                "digest mismatch: openspec printed "
                f"{a.stdout.decode(errors='replace').strip()!r}, xxh128sum printed "
                f"{b.stdout.decode(errors='replace').strip()!r}"
            )

    return [
        Pair(
            "copy_fsync",
            "openspec copy SRC DST",
            "cp SRC DST; fsync DST and dir",
            lambda: runner.run([t.openspec, "copy", str(src), str(dst)]),
            lambda: runner.run([t.cp, str(src), str(dst)], then=fsync_copy),
            after_each=settle_copy,
        ),
        Pair(
            "copy_nofsync",
            "openspec copy --no-fsync SRC DST",
            "cp SRC DST",
            lambda: runner.run([t.openspec, "copy", "--no-fsync", str(src), str(dst)]),
            lambda: runner.run([t.cp, str(src), str(dst)]),
            after_each=settle_copy,
        ),
        Pair(
            "verify",
            "openspec verify SRC",
            "xxh128sum SRC",
            lambda: runner.run([t.openspec, "verify", str(src)], capture=True),
            lambda: runner.run([t.xxh128sum, str(src)], capture=True),
            check=same_digest,
        ),
        Pair(
            "cat",
            "openspec cat SRC | cat >/dev/null",
            "pv -q SRC | cat >/dev/null",
            lambda: runner.pipeline([t.openspec, "cat", str(src)]),
            lambda: runner.pipeline([t.pv, "-q", str(src)]),
        ),
        Pair(
            "startup",
            "openspec --version",
            f"{os.path.basename(t.python)} -c 'import typer'",
            lambda: runner.run([t.openspec, "--version"]),
            lambda: runner.run([t.python, "-c", "import typer"]),
        ),
        Pair(
            "verify_empty",
            "openspec verify EMPTY",
            "xxh128sum EMPTY",
            lambda: runner.run([t.openspec, "verify", str(empty)], capture=True),
            lambda: runner.run([t.xxh128sum, str(empty)], capture=True),
            check=same_digest,
        ),
    ]


def measure(pair: Pair, runs: int, warmup: int, src: Path) -> Result:
    """Warm-up rounds, then timed rounds; the order flips each round so neither side always
    runs second (after the other's cache and write-back effects)."""
    warm(src)
    result = Result(pair)
    sys.stderr.write(f"{PROG}: {pair.name} ")
    for index in range(-warmup, runs):
        first = index == -warmup
        a_first = index % 2 == 0
        order = (pair.run_a, pair.run_b) if a_first else (pair.run_b, pair.run_a)
        samples = []
        for run in order:
            samples.append(run())
            pair.after_each(first)
        a, b = samples if a_first else samples[::-1]
        if pair.check is not None:
            pair.check(a, b)
        if index >= 0:
            result.a.append(a)
            result.b.append(b)
        sys.stderr.write("." if index >= 0 else "w")
        sys.stderr.flush()
    sys.stderr.write("\n")
    return result


# ---------------------------------------------------------------------------- report


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        pairs = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in pairs]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "n/a" if value is None else format(value, fmt)


def render(results: list[Result], tools: Tools, size: int, runs: int, warmup: int) -> str:
    header = [
        "pair",
        "A median s",
        "B median s",
        "A/B median",
        "A/B min",
        "target",
        "meets",
        "openspec RSS MiB",
        f"RSS<{RSS_TARGET_MIB:g}",
    ]
    rows = []
    for r in results:
        target = r.pair.target
        rss = r.peak_rss_mib("a")
        rows.append(
            [
                r.pair.name,
                _num(r.median("a"), ".4f"),
                _num(r.median("b"), ".4f"),
                _num(r.ratio_median, ".2f"),
                _num(r.ratio_min, ".2f"),
                "-" if target is None else f"{target:.2f}",
                {None: "info", True: "yes", False: "NO"}[r.meets_target],
                _num(rss, ".1f"),
                "n/a" if rss is None else ("yes" if rss < RSS_TARGET_MIB else "NO"),
            ]
        )
    noise_header = [
        "pair",
        "A min",
        "A median",
        "A max",
        "A med/min",
        "B min",
        "B median",
        "B max",
        "B med/min",
    ]
    noise = [
        [r.pair.name]
        + [
            cell
            for side in ("a", "b")
            for cell in (
                _num(r.minimum(side), ".4f"),
                _num(r.median(side), ".4f"),
                _num(r.maximum(side), ".4f"),
                f"+{(ratio(r.median(side), r.minimum(side)) - 1) * 100:.1f}%",
            )
        ]
        for r in results
    ]
    legend = [f"  {r.pair.name:<13} A: {r.pair.a_label:<34} B: {r.pair.b_label}" for r in results]
    graded = [r for r in results if r.meets_target is not None]
    met = sum(1 for r in graded if r.meets_target)
    lines = [
        f"openspec compare: {size / MIB:g} MiB random file (page-cached), "
        f"{runs} timed run(s) per side after {warmup} warm-up round(s), A/B interleaved",
        f"openspec: {tools.openspec}  python: {tools.python}",
        f"peak RSS: {'GNU time %M of the measured process' if tools.rss else 'unavailable'}",
        "",
        _table(header, rows),
        "",
        "commands:",
        *legend,
        "",
        "spread of the runs (median over min; large = noisy):",
        _table(noise_header, noise),
        "",
        f"{met} of {len(graded)} ratios meet their target (median A/B <= target); "
        "targets are reported, not enforced.",
    ]
    empty = next((r for r in results if r.pair.name == "verify_empty"), None)
    full = next((r for r in results if r.pair.name == "verify"), None)
    if empty is not None and full is not None:
        fixed = empty.median("a") - empty.median("b")
        lines.append(
            f"openspec fixed cost over xxh128sum (verify on an empty file): {fixed:.3f} s, "
            f"{ratio(fixed, full.median('a')) * 100:.0f}% of openspec verify on this file."
        )
    return "\n".join(lines)


def to_json(
    results: list[Result],
    tools: Tools,
    size: int,
    runs: int,
    warmup: int,
    loads: tuple[float, float],
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "size_bytes": size,
        "runs": runs,
        "warmup": warmup,
        "openspec": tools.openspec,
        "python": tools.python,
        "rss_tool": tools.rss,
        "rss_target_mib": RSS_TARGET_MIB,
        "load_before": loads[0],
        "load_after": loads[1],
        "pairs": [
            {
                "name": r.pair.name,
                "a": r.pair.a_label,
                "b": r.pair.b_label,
                "a_seconds": r.seconds("a"),
                "b_seconds": r.seconds("b"),
                "a_median": r.median("a"),
                "b_median": r.median("b"),
                "a_min": r.minimum("a"),
                "b_min": r.minimum("b"),
                "a_max": r.maximum("a"),
                "b_max": r.maximum("b"),
                "ratio_median": r.ratio_median,
                "ratio_min": r.ratio_min,
                "target": r.pair.target,
                "meets_target": r.meets_target,
                "openspec_peak_rss_mib": r.peak_rss_mib("a"),
                "b_peak_rss_mib": r.peak_rss_mib("b"),
            }
            for r in results
        ],
    }


# ---------------------------------------------------------------------------- main


def preflight(runner: Runner) -> None:
    """Fail fast, with exit 2, if openspec or its python can't even start."""
    t = runner.tools
    for argv, what in (
        ([t.openspec, "--version"], f"openspec at {t.openspec} does not run"),
        ([t.python, "-c", "import typer"], f"{t.python} cannot import typer"),
    ):
        try:
            runner.run(argv)
        except Failure as err:
            raise MissingTool(f"{what}: {err}") from None


def benchmark(runner: Runner, args: argparse.Namespace) -> list[Result]:
    work = runner.work
    src, empty, dst = work / "src.bin", work / "empty.bin", work / "dst.bin"
    sys.stderr.write(f"{PROG}: writing {args.size / MIB:g} MiB of random data in {work}\n")
    make_source(src, args.size)
    empty.touch()
    preflight(runner)
    os.sync()
    return [measure(p, args.runs, args.warmup, src) for p in build_pairs(runner, src, empty, dst)]


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def _remove_tree(path: Path) -> None:
    for _ in range(5):  # a process killed mid-syscall may still add an entry once
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    shutil.rmtree(path, ignore_errors=True)


def run_guarded(
    prog: str,
    work: Path,
    runner: Runner,
    body: Callable[[], None],
) -> int:
    """The frame both benchmark scripts run in (also scripts/bench_resume.py): SIGTERM and
    SIGHUP end the run like Ctrl-C, every failure is one line and an exit code, and the
    processes and the work directory are gone afterwards, whatever happened."""
    # Python leaves SIGINT ignored if it started ignored (background jobs): Ctrl-C must work.
    handlers = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_stopped),
        signal.SIGHUP: signal.signal(signal.SIGHUP, _raise_stopped),
    }
    try:
        body()
        return 0
    except Failure as err:
        sys.stderr.write(f"\n{prog}: error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{prog}: interrupted; cleaning up\n")
        return 128 + signal.SIGINT
    except Stopped as stop:
        sys.stderr.write(f"\n{prog}: stopped by signal {stop.signum}; cleaning up\n")
        return 128 + stop.signum
    finally:
        for signum in handlers:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        runner.stop_all()
        _remove_tree(work)
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tools = find_tools(args.openspec)
    except MissingTool as err:
        sys.stderr.write(f"{PROG}: {err}\n")
        return err.exit_code
    work = Path(tempfile.mkdtemp(prefix="openspec-compare-", dir=args.dir))
    runner = Runner(work, tools)

    def body() -> None:
        load_before = os.getloadavg()[0]
        results = benchmark(runner, args)
        loads = (load_before, os.getloadavg()[0])
        print(render(results, tools, args.size, args.runs, args.warmup), flush=True)
        if args.json is not None:
            payload = to_json(results, tools, args.size, args.runs, args.warmup, loads)
            args.json.write_text(json.dumps(payload, indent=2) + "\n")

    return run_guarded(PROG, work, runner, body)


if __name__ == "__main__":
    sys.exit(main())
