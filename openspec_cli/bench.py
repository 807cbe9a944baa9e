"""``openspec bench``: what the engine does on this machine, next to plain references.

Why references: on a shared, noisy machine an absolute MiB/s says little, so each scenario also
runs a bare read/write loop (and ``cp``) on the same page-cached files, interleaved with openspec
so that drift hits both, and reports the ratio ("efficiency"). Each scenario runs in a fresh
interpreter (as a real ``openspec copy`` is one process) on generated data in one temporary
directory, removed on every way out (Ctrl-C included); checkpoints go to a state directory
inside it, never the user's. Results are returned, never printed: ``bench_report`` scores and
renders them.

This module plans and runs; what runs in each scenario's child process is in
``bench_scenarios`` (with its instruments in ``bench_instruments``), and the data passed
between the two in ``bench_model``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from openspec_cli import units
from openspec_cli.bench_instruments import CopyRun as CopyRun
from openspec_cli.bench_instruments import RssSampler as RssSampler
from openspec_cli.bench_instruments import cp_command
from openspec_cli.bench_instruments import injected_faults as injected_faults
from openspec_cli.bench_instruments import make_file as make_file
from openspec_cli.bench_instruments import slope as slope
from openspec_cli.bench_model import GIB, KIB
from openspec_cli.bench_model import MIB as MIB
from openspec_cli.bench_model import Memory as Memory
from openspec_cli.bench_model import Reliability as Reliability
from openspec_cli.bench_model import ScenarioResult as ScenarioResult
from openspec_cli.bench_model import Spec as Spec
from openspec_cli.bench_model import Throughput as Throughput
from openspec_cli.bench_model import result_from_dict as result_from_dict
from openspec_cli.bench_scenarios import Tally as Tally
from openspec_cli.errors import (
    ExitCode,
    Interrupted,
    OpenspecError,
    UsageError,
    describe_os_error,
)

# The names imported ``as`` themselves above are re-exported: callers and tests use them as
# ``bench.NAME``, as they did before those moved to bench_model, _instruments and _scenarios.

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


def parse_size(text: str) -> int:
    """``10M`` -> 10485760: binary units, as everywhere in openspec (:mod:`units`)."""
    try:
        return units.parse_size(text)
    except ValueError as err:
        raise UsageError(f"--sizes: {err}") from None


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
        sizes=base.sizes if sizes is None else _parse_list(sizes, parse_size),
        concurrency=(
            base.concurrency if concurrency is None else _parse_list(concurrency, parse_streams)
        ),
        directory=directory,
    )


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
    """Bytes the largest scenario holds at once, plus slack: its sources and two sets of copies
    (openspec's stays while a reference tool writes its own)."""
    return max((3 * s.size * s.files for s in specs), default=0) + 16 * MIB


# ---------------------------------------------------------------------------- results


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


# ---------------------------------------------------------------------------- running


@contextlib.contextmanager
def workspace(directory: str | None) -> Iterator[Path]:
    """A private temporary directory, removed on every way out."""
    try:
        root = Path(tempfile.mkdtemp(prefix="openspec-bench-", dir=directory))
    except OSError as err:  # before anything ran: a read-only --dir or TMPDIR is a usage error
        where = directory or tempfile.gettempdir()
        raise UsageError(f"--dir: cannot work in '{where}': {describe_os_error(err)}") from err
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
            [sys.executable, "-m", "openspec_cli.bench_scenarios", *args],
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
        raise OpenspecError(f"scenario {spec.id} failed: {_why(child, area)}", ExitCode.IO_ERROR)
    return found


def _why(child: subprocess.Popen[bytes], area: Path) -> str:
    """The child's last line on stderr; when it left none (its log is on the same filesystem,
    so a full disk swallows the message too), its exit status and the free space."""
    with contextlib.suppress(OSError):
        lines = (area / "stderr").read_bytes()[-4096:].decode(errors="replace").splitlines()
        said = [line.strip() for line in lines if line.strip()]
        if said:
            return said[-1]
    reason = f"exit status {child.returncode}, no message"
    with contextlib.suppress(OSError):
        vfs = os.statvfs(area)
        if vfs.f_bavail * vfs.f_frsize < MIB:
            reason += f"; No space left on device in '{area.parent}'"
    return reason


def _check_space(root: Path, specs: Sequence[Spec]) -> None:
    needed, vfs = space_needed(specs), os.statvfs(root)
    free = vfs.f_bavail * vfs.f_frsize
    if free < needed:
        from openspec_cli.ui import human_bytes

        raise OpenspecError(
            f"'{root.parent}': the benchmark needs {human_bytes(needed)} free, there are "
            f"{human_bytes(free)} (use --dir or smaller --sizes)",
            ExitCode.USAGE,
        )


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, which say how noisy the machine was."""
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None
