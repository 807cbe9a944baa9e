"""Shared helpers for the behaviour tests of the commands (copy, cat, verify, signals).

The one autouse fixture gives every test its own empty state directory (checkpoints), so no test
reads or writes the user's real one and no test sees another's transfers.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import random
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import xxhash
from typer.testing import CliRunner, Result

from openspec_cli.cli import app

KIB = 1024
MIB = 1024 * KIB

#: The command as a user runs it, in a real process.
OPENSPEC: list[str] = [sys.executable, "-m", "openspec_cli"]

#: Sizes around the engine's boundaries: empty, tiny, the smallest chunk class (32 KiB), the
#: 1 MiB streaming trigger (threaded path from there on) and a few MiB.
BOUNDARY_SIZES: list[int] = [
    0,
    1,
    32 * KIB - 1,
    32 * KIB,
    32 * KIB + 1,
    MIB - 1,
    MIB,
    MIB + 1,
    3 * MIB + 17,
]

PARTIAL_SUFFIX = ".openspec-part"


# ---------------------------------------------------------------------------- data and digests


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible data."""
    return random.Random(seed).randbytes(size)


def write_random(path: Path, size: int, seed: int = 0) -> bytes:
    """Create ``path`` with ``size`` deterministic random bytes and return them."""
    data = random_bytes(size, seed)
    path.write_bytes(data)
    return data


def xxh128_hex(data: bytes) -> str:
    """XXH3-128 as ``xxh128sum`` prints it."""
    return str(xxhash.xxh3_128_hexdigest(data))


def reference_digest(data: bytes, algo: str) -> str:
    """The digest of ``data`` computed with xxhash/hashlib directly, never with openspec."""
    xxh = {
        "xxh128": xxhash.xxh3_128,
        "xxh3": xxhash.xxh3_64,
        "xxh64": xxhash.xxh64,
        "xxh32": xxhash.xxh32,
    }
    if algo in xxh:
        return str(xxh[algo](data).hexdigest())
    if algo == "blake2b-256":
        return hashlib.blake2b(data, digest_size=32).hexdigest()
    return hashlib.new(algo, data).hexdigest()


# ---------------------------------------------------------------------------- running openspec


@pytest.fixture(autouse=True)
def _isolated_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A fresh ``OPENSPEC_STATE_DIR`` (outside ``tmp_path``, whose contents tests compare)."""
    state = tmp_path_factory.mktemp("openspec-state")
    monkeypatch.setenv("OPENSPEC_STATE_DIR", str(state))
    return state


@pytest.fixture
def runner() -> CliRunner:
    """In-process runner; stdout and stderr are kept apart (``result.stdout``/``.stderr``)."""
    return CliRunner()


def invoke(runner: CliRunner, args: Sequence[str], stdin: bytes | None = None) -> Result:
    """Run openspec in-process; an unexpected exception (a traceback) fails the test."""
    result = runner.invoke(app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"openspec {list(args)} raised {result.exception!r}") from (
            result.exception
        )
    return result


def default_sigint() -> None:
    """Child-side: undo an inherited SIG_IGN so SIGINT acts as Ctrl-C in a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_openspec(
    args: Sequence[str],
    cwd: Path,
    stdin: bytes | None = None,
    timeout: float = 20,
    preexec_fn: Callable[[], object] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run openspec in a real process with stdout and stderr on pipes (not terminals)."""
    return subprocess.run(
        [*OPENSPEC, *args],
        cwd=cwd,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        check=False,
        preexec_fn=preexec_fn,
    )


def peak_rss_kib(args: Sequence[str], cwd: Path) -> tuple[int, int]:
    """Run openspec with ``args``; its exit status and peak resident memory in KiB, measured
    by a parent of its own (our RUSAGE_CHILDREN counts every child the tests ever ran)."""
    probe = (
        "import resource, subprocess, sys;"
        "p = subprocess.run(sys.argv[1:], capture_output=True);"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *OPENSPEC, *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    code, peak = map(int, result.stdout.split())
    return code, peak


def start_openspec(
    args: Sequence[str], cwd: Path, stdout: int = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """Start openspec in the background with SIGINT at its default; stderr on a pipe."""
    return subprocess.Popen(
        [*OPENSPEC, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    """Poll until ``condition()`` holds; fail (instead of hanging) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    """Make sure a background process is gone (after a failed assertion, for instance)."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes appended here are killed at teardown if a test left them running."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        kill_quietly(proc)


# ---------------------------------------------------------------------------- what changed on disk


def partials(root: Path) -> list[Path]:
    """Partial files (``.NAME.ID.openspec-part``) anywhere under ``root``."""
    return sorted(p for p in root.rglob(f"*{PARTIAL_SUFFIX}"))


def partial_bytes(root: Path) -> int:
    """Bytes written so far into partial files under ``root`` (they may vanish meanwhile)."""
    total = 0
    for part in partials(root):
        try:
            total += part.stat().st_size
        except FileNotFoundError:
            continue
    return total


Entry = tuple[str, int, int, bytes | str | None]


def snapshot(root: Path) -> dict[str, Entry]:
    """Every entry under ``root`` with its type, mode, mtime and content (or link target)."""
    found: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            content: bytes | str | None = None
            if stat.S_ISLNK(st.st_mode):
                kind, content = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind = "dir"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
                if st.st_mode & stat.S_IRUSR:
                    content = path.read_bytes()
            else:
                kind = "special"
            found[str(path.relative_to(root))] = (kind, st.st_mode, st.st_mtime_ns, content)
    return found


#: The line a copy prints when a transfer starts (when stderr is not a terminal), so that its id
#: is on record for ``openspec resume``. It is not part of a failure report.
TRANSFER_STARTED = re.compile(r"^openspec: transfer [0-9a-f]+: ")


def assert_one_error_line(stderr: str, *names: str, after_start: bool = False) -> str:
    """stderr is exactly one ``openspec: ...`` line naming every path in ``names``.

    ``after_start``: the failure happened mid-copy, so the transfer-started lines that precede
    it are allowed; the failure itself must still be one line, and the last one.
    """
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    if after_start:
        lines = [line for line in lines if not TRANSFER_STARTED.match(line)]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    line = lines[0]
    assert stderr.splitlines()[-1] == line, "the failure must be the last line"
    assert line.startswith("openspec: "), line
    for name in names:
        assert name in line, f"{name!r} not named in {line!r}"
    return line


def assert_refused(
    result: Result | subprocess.CompletedProcess[bytes],
    code: int,
    root: Path,
    before: dict[str, Entry],
    *names: str,
) -> str:
    """A refusal: its exit code, one line naming the paths, and nothing changed under ``root``."""
    if isinstance(result, Result):
        exit_code, stderr = result.exit_code, result.stderr
    else:
        exit_code, stderr = result.returncode, result.stderr.decode(errors="replace")
    assert exit_code == code, f"exit {exit_code}, expected {code}; stderr: {stderr!r}"
    line = assert_one_error_line(stderr, *names)
    assert partials(root) == []
    assert snapshot(root) == before
    return line


# ---------------------------------------------------------------------------- permissions

_PR_CAPBSET_DROP = 24
_DAC_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _drop_dac_capabilities() -> None:
    """Child-side, as root: lose the capabilities that bypass file permissions, before exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _DAC_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.fixture(scope="session")
def permission_checked(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], object] | None:
    """A ``preexec_fn`` under which file permissions apply, even when the tests run as root.

    Root keeps its uid (so the interpreter stays reachable) but drops CAP_DAC_OVERRIDE and
    friends from the bounding set, so exec'd openspec is refused like any other user.
    """
    if os.geteuid() != 0:
        return None
    locked = tmp_path_factory.mktemp("perm-probe") / "locked"
    locked.write_bytes(b"x")
    locked.chmod(0)
    probe = [sys.executable, "-c", f"open({str(locked)!r}, 'rb')"]
    try:
        denied = subprocess.run(
            probe, capture_output=True, preexec_fn=_drop_dac_capabilities, timeout=30
        )
    except (subprocess.SubprocessError, OSError):
        pytest.skip("root bypasses file permissions")
    if b"PermissionError" not in denied.stderr:
        pytest.skip("root bypasses file permissions")
    return _drop_dac_capabilities


@contextlib.contextmanager
def mounted(at: Path, *how: str) -> Iterator[Path]:
    """A real mount (``mount HOW... AT``) for the test's length, unmounted afterwards; the test
    is skipped where this machine or user cannot mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    at.mkdir(exist_ok=True)
    try:
        done = subprocess.run(["mount", *how, str(at)], capture_output=True, check=False)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if done.returncode:
        pytest.skip(f"cannot mount here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield at
    finally:
        subprocess.run(["umount", str(at)], check=True)
