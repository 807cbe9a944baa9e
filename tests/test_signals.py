"""Signals in real processes: Ctrl-C, SIGTERM and kill -9 mid-copy, and SIGINT during ``cat``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    KIB,
    MIB,
    assert_one_error_line,
    partial_bytes,
    partials,
    start_openspec,
    wait_for,
    write_random,
)

INTERRUPTED = 130
TERMINATED = 143


def start_slow_copy(
    tmp_path: Path, size: int, rate: str, background: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """A rate-limited copy ``src`` -> ``dest``, returned once it has written some bytes."""
    write_random(tmp_path / "src", size)
    proc = start_openspec(["copy", "--limit-rate", rate, "src", "dest"], cwd=tmp_path)
    background.append(proc)
    wait_for(
        lambda: partial_bytes(tmp_path) > 0 or proc.poll() is not None,
        what="the partial file to receive data",
    )
    if proc.poll() is not None:
        _, err = proc.communicate()
        pytest.fail(f"the copy ended (exit {proc.returncode}) before any signal: {err!r}")
    return proc


# A small file takes the inline path (the limiter sleeps on the main thread); a large one the
# threaded path (the main thread waits for buffers while a worker writes and sleeps).
SIZES = pytest.mark.parametrize(("size", "rate"), [(512 * KIB, "128K"), (3 * MIB, "1M")])


SIGNALS = pytest.mark.parametrize(
    ("signum", "code", "word"),
    # Both print "interrupted; resume with: ..." (as the issue words it); exit codes differ.
    [(signal.SIGINT, INTERRUPTED, "interrupted"), (signal.SIGTERM, TERMINATED, "interrupted")],
)


@SIZES
@SIGNALS
def test_signal_mid_copy_stops_cleanly(
    tmp_path: Path,
    background: list[subprocess.Popen[bytes]],
    size: int,
    rate: str,
    signum: int,
    code: int,
    word: str,
) -> None:
    proc = start_slow_copy(tmp_path, size, rate, background)

    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == code, err
    assert word in assert_one_error_line(err.decode(), after_start=True)
    assert not (tmp_path / "dest").exists()


@SIGNALS
@pytest.mark.parametrize("gap", [0.001, 0.005, 0.02])
def test_a_second_signal_does_not_change_the_outcome(
    tmp_path: Path,
    background: list[subprocess.Popen[bytes]],
    signum: int,
    code: int,
    word: str,
    gap: float,
) -> None:
    """An impatient second Ctrl-C (or a supervisor's second SIGTERM), arriving while the first
    is handled or while the process exits, used to kill it by the signal (or print a
    traceback); a finished copy was then reported as killed."""
    proc = start_slow_copy(tmp_path, 3 * MIB, "1M", background)

    proc.send_signal(signum)
    time.sleep(gap)
    if proc.poll() is None:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == code, err
    assert b"Traceback" not in err
    # The second may land in the first one's clean-up, which then ends with its own word.
    assert re.match(r"openspec: (interrupted|terminated)", err.decode().splitlines()[-1]), err


@SIGNALS
def test_signal_mid_copy_keeps_a_resumable_partial(
    tmp_path: Path,
    background: list[subprocess.Popen[bytes]],
    signum: int,
    code: int,
    word: str,
) -> None:
    """An interrupted copy keeps its partial file and checkpoint, and says how to resume."""
    proc = start_slow_copy(tmp_path, 3 * MIB, "1M", background)

    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == code
    assert len(partials(tmp_path)) == 1
    listed = subprocess.run(
        [sys.executable, "-m", "openspec_cli", "resume", "--list", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    (row,) = json.loads(listed.stdout)
    assert row["state"] == "resumable"
    assert err.decode().splitlines()[-1] == (
        f"openspec: {word}; resume with: openspec resume {row['id']}"
    )


@SIZES
def test_kill_9_mid_copy_never_leaves_the_final_name(
    tmp_path: Path, background: list[subprocess.Popen[bytes]], size: int, rate: str
) -> None:
    proc = start_slow_copy(tmp_path, size, rate, background)

    proc.kill()
    proc.communicate(timeout=30)

    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "dest").exists()
    remaining = partials(tmp_path)
    assert len(remaining) <= 1
    for part in remaining:
        assert part.stat().st_size < size


def test_sigint_during_cat_with_a_slow_consumer(
    tmp_path: Path, background: list[subprocess.Popen[bytes]]
) -> None:
    size = 8 * MIB
    data = write_random(tmp_path / "big", size)
    proc = start_openspec(["cat", "big"], cwd=tmp_path)
    background.append(proc)
    assert proc.stdout is not None

    got = b""
    while len(got) < 256 * KIB:  # a consumer slower than openspec: the pipe stays full
        got += proc.stdout.read(16 * KIB)
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)  # keep consuming until openspec is gone

    assert proc.returncode == INTERRUPTED, err
    stderr = err.decode()
    assert "Traceback" not in stderr
    assert stderr.splitlines() == ["openspec: interrupted"]
    out = got + rest
    assert len(out) < size
    assert out == data[: len(out)]


@pytest.mark.parametrize("flags", [[], ["--hash"]], ids=["plain", "hash"])
def test_sigint_during_cat_with_a_stalled_consumer_stops_without_draining(
    tmp_path: Path, background: list[subprocess.Popen[bytes]], flags: list[str]
) -> None:
    """Ctrl-C must stop openspec even when the reader of its output has stopped reading.

    ``cat`` (and ``pv``) die at once; openspec must not first wait for the pipe to drain.
    ``--hash`` keeps the data passing through openspec's own buffers (no splice).
    """
    write_random(tmp_path / "big", 8 * MIB)
    proc = start_openspec(["cat", *flags, "big"], cwd=tmp_path)
    background.append(proc)
    assert proc.stdout is not None
    proc.stdout.read(64 * KIB)  # openspec is running; from now on nobody reads

    time.sleep(0.3)  # let it fill the pipe and block
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=3)  # not a speed requirement: a generous bound to detect the hang
    except subprocess.TimeoutExpired:
        pytest.fail("openspec cat ignored Ctrl-C until its output pipe was drained")

    assert proc.returncode == INTERRUPTED


@pytest.mark.parametrize("check", [False, True], ids=["digests", "check"])
def test_sigterm_stops_a_verify_of_several_files(
    tmp_path: Path, background: list[subprocess.Popen[bytes]], check: bool
) -> None:
    """Not just the file being hashed: the rest are not started, and with -c the file that
    was cut short is not reported FAILED (sha256sum -c simply dies)."""
    names = ["a", "b", "c"]
    for i, name in enumerate(names):
        write_random(tmp_path / name, 2 * MIB, seed=i)
    if check:
        done = subprocess.run(
            [sys.executable, "-m", "openspec_cli", "verify", *names],
            cwd=tmp_path, capture_output=True, check=True,
        )  # fmt: skip
        (tmp_path / "SUMS").write_bytes(done.stdout)
    targets = ["-c", "SUMS"] if check else names
    proc = start_openspec(["verify", "-L", "1M", "--progress", "json", *targets], cwd=tmp_path)
    background.append(proc)
    assert proc.stderr is not None
    for line in proc.stderr:  # the first file has started: the SIGTERM handler is in place
        if json.loads(line)["event"] == "start":
            break

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)

    assert proc.returncode == TERMINATED, err
    assert out == b""
    assert b"FAILED" not in err
    last = json.loads(err.decode().splitlines()[-1])  # stderr stays NDJSON to the end
    assert (last["event"], last["message"]) == ("message", "terminated")


def test_verify_check_prints_each_result_when_its_file_is_done(
    tmp_path: Path, background: list[subprocess.Popen[bytes]]
) -> None:
    """As sha256sum -c does: the first OK is out while the other files are still hashed."""
    names = ["a", "b", "c"]
    for i, name in enumerate(names):
        write_random(tmp_path / name, MIB, seed=i)
    done = subprocess.run(
        [sys.executable, "-m", "openspec_cli", "verify", *names],
        cwd=tmp_path, capture_output=True, check=True,
    )  # fmt: skip
    (tmp_path / "SUMS").write_bytes(done.stdout)
    proc = start_openspec(["verify", "-L", "1M", "-c", "SUMS"], cwd=tmp_path)
    background.append(proc)
    assert proc.stdout is not None

    first = proc.stdout.readline()
    with pytest.raises(subprocess.TimeoutExpired):  # b and c take 2 s more at 1 MiB/s
        proc.wait(timeout=0.5)
    rest, _ = proc.communicate(timeout=30)

    assert first == b"a: OK\n"
    assert rest == b"b: OK\nc: OK\n"
    assert proc.returncode == 0
