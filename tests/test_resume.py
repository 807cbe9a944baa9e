"""Interrupted copies resume from a verified prefix and always end byte-identical.

Real processes, real signals and ``kill -9``; corruption is done to the real partial file.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import xxhash

from openspec_cli import api, unfinished
from openspec_cli.engine import NullObserver, StreamStats
from openspec_cli.errors import Interrupted, UsageError

STATE = "OPENSPEC_STATE_DIR"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    state = tmp_path / "state"
    monkeypatch.setenv(STATE, str(state))
    return {**os.environ, STATE: str(state)}


def openspec(
    *args: str, env: dict[str, str], check: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "openspec_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "openspec_cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def make_source(path: Path, size: int) -> bytes:
    data = random.Random(size).randbytes(size)
    path.write_bytes(data)
    return data


def transfers(env: dict[str, str]) -> list[dict[str, object]]:
    proc = openspec("resume", "--list", "--json", env=env, check=True)
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list)
    return rows


def partials(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.openspec-part"))


def wait_for_progress(env: dict[str, str], minimum: int, proc: subprocess.Popen[str]) -> None:
    """Wait until the running transfer has checkpointed at least ``minimum`` bytes."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        rows = transfers(env)
        if rows and int(str(rows[0]["bytes_done"])) >= minimum:
            return
        time.sleep(0.05)
    raise AssertionError("transfer made no progress")


#: Paced copies are stopped after a few MiB; their sources are large enough that the copy is
#: still running seconds later, even when the checks in between are slow on a loaded machine.
PACED_SIZE = 16 << 20


def interrupt(
    tmp_path: Path,
    env: dict[str, str],
    size: int = PACED_SIZE,
    at: int = 1 << 20,
    options: tuple[str, ...] = (),
) -> tuple[Path, Path, bytes, str]:
    """Start a paced copy, stop it with SIGINT after ``at`` bytes; return its id."""
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    data = make_source(src, size)
    proc = start("copy", "--limit-rate", "4M", *options, str(src), str(dst), env=env)
    wait_for_progress(env, at, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    rows = transfers(env)
    assert len(rows) == 1
    tid = str(rows[0]["id"])
    expected = f"openspec: interrupted; resume with: openspec resume {tid}"
    assert err.strip().splitlines()[-1] == expected
    assert "Traceback" not in err
    assert not dst.exists()
    return src, dst, data, tid


def test_sigint_keeps_a_resumable_transfer_and_resume_finishes_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    src, dst, data, tid = interrupt(tmp_path, env)
    row = transfers(env)[0]
    assert row["state"] == "resumable"
    assert row["source"] == str(src)
    assert row["dest"] == str(dst)
    assert int(str(row["size"])) == len(data)
    assert 0 < int(str(row["bytes_done"])) < len(data)
    assert len(partials(tmp_path)) == 1
    proc = openspec("resume", tid, "--json", env=env, check=True)
    summary = json.loads(proc.stdout)
    file = summary["files"][0]
    assert file["resumed_from"] > 0
    assert file["digest"] == xxhash.xxh3_128(data).hexdigest()
    assert dst.read_bytes() == data
    assert partials(tmp_path) == []
    assert transfers(env) == []


def test_sigterm_exits_143_and_keeps_the_checkpoint(tmp_path: Path, env: dict[str, str]) -> None:
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    data = make_source(src, PACED_SIZE)
    proc = start("copy", "--limit-rate", "4M", str(src), str(dst), env=env)
    wait_for_progress(env, 1 << 20, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert "interrupted; resume with: openspec resume" in err
    assert "Traceback" not in err
    again = openspec("copy", "--json", str(src), str(dst), env=env, check=True)
    assert json.loads(again.stdout)["files"][0]["resumed_from"] > 0
    assert dst.read_bytes() == data


def test_resume_keeps_one_sum_line_per_file(tmp_path: Path, env: dict[str, str]) -> None:
    """The line an earlier copy of the same file left would fail ``xxh128sum -c``."""
    sums, dst = tmp_path / "SUMS", tmp_path / "dst.bin"
    sums.write_text(f"{'0' * 32}  {dst}\n")
    _, dst, data, tid = interrupt(tmp_path, env, options=("--sums", str(sums)))

    openspec("resume", tid, env=env, check=True)

    assert sums.read_text() == f"{xxhash.xxh3_128_hexdigest(data)}  {dst}\n"


def test_resume_restart_refuses_what_a_new_copy_would(tmp_path: Path, env: dict[str, str]) -> None:
    """Starting over writes a new copy: an immutable (or someone else's) file is not replaced."""
    _, dst, _, tid = interrupt(tmp_path, env)
    dst.write_bytes(b"old")  # made meanwhile, and nobody may write it
    if subprocess.run(["chattr", "+i", str(dst)], capture_output=True).returncode:
        pytest.skip("chattr +i is not possible here (not root, or the filesystem has no flags)")
    try:
        again = openspec("resume", "--restart", tid, env=env)
    finally:
        subprocess.run(["chattr", "-i", str(dst)], check=True)

    assert again.returncode == 2, again.stderr
    assert "cannot overwrite" in again.stderr
    assert dst.read_bytes() == b"old"


@pytest.mark.parametrize("planted", ["symlink", "hard link"])
def test_resume_never_writes_through_something_planted_at_the_partial(
    tmp_path: Path, env: dict[str, str], planted: str
) -> None:
    """A symlink or hard link put where the partial was would have been truncated and
    overwritten (and the symlink renamed to the destination)."""
    src, dst, _, tid = interrupt(tmp_path, env)
    (part,) = partials(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    part.unlink()
    if planted == "symlink":
        part.symlink_to(victim)
    else:
        os.link(victim, part)

    for again in (["resume", tid], ["copy", str(src), str(dst)]):
        proc = openspec(*again, env=env)
        assert proc.returncode == 2, proc.stderr
        assert f"not the partial file of transfer {tid}" in proc.stderr
        assert f"openspec resume --restart {tid}" in proc.stderr
    assert victim.read_bytes() == b"precious"
    assert not dst.exists()

    openspec("resume", "--restart", tid, env=env, check=True)
    assert victim.read_bytes() == b"precious"
    assert dst.read_bytes() == src.read_bytes()
    assert not dst.is_symlink()


def test_a_partial_swapped_for_a_symlink_mid_copy_is_not_renamed_into_place(
    tmp_path: Path, env: dict[str, str]
) -> None:
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    make_source(src, 4 << 20)
    proc = start("copy", "--limit-rate", "4M", str(src), str(dst), env=env)
    wait_for_progress(env, 1 << 20, proc)
    (part,) = partials(tmp_path)
    (tmp_path / "victim").write_bytes(b"precious")
    (tmp_path / "link").symlink_to(tmp_path / "victim")
    os.replace(tmp_path / "link", part)

    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 3, err
    assert "was replaced by something else" in err
    assert not dst.exists()
    assert (tmp_path / "victim").read_bytes() == b"precious"


@pytest.mark.parametrize("seed", range(6))
def test_kill_9_at_any_moment_then_resume_is_byte_identical(
    tmp_path: Path, env: dict[str, str], seed: int
) -> None:
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    data = make_source(src, 3 << 20)
    proc = start("copy", "--limit-rate", "6M", str(src), str(dst), env=env)
    time.sleep(random.Random(seed).uniform(0.15, 0.75))
    proc.kill()
    proc.wait()
    assert not dst.exists() or dst.read_bytes() == data
    result = openspec("copy", "--json", str(src), str(dst), env=env, check=True)
    file = json.loads(result.stdout)["files"][0]
    assert dst.read_bytes() == data
    assert file["digest"] == xxhash.xxh3_128(data).hexdigest()
    assert partials(tmp_path) == []
    assert transfers(env) == []


def test_corrupted_partial_is_recopied_not_trusted(tmp_path: Path, env: dict[str, str]) -> None:
    src, dst, data, tid = interrupt(tmp_path, env, at=3 << 20)
    (part,) = partials(tmp_path)
    with open(part, "r+b") as fh:
        fh.seek(1 << 20)
        fh.write(b"\xff" * 16)
    result = openspec("resume", tid, "--json", env=env, check=True)
    file = json.loads(result.stdout)["files"][0]
    assert file["resumed_from"] <= 1 << 20
    assert dst.read_bytes() == data


def test_truncated_partial_resumes_from_what_remains(tmp_path: Path, env: dict[str, str]) -> None:
    src, dst, data, tid = interrupt(tmp_path, env, at=3 << 20)
    (part,) = partials(tmp_path)
    os.truncate(part, 1 << 20)
    result = openspec("resume", tid, "--json", env=env, check=True)
    assert json.loads(result.stdout)["files"][0]["resumed_from"] <= 1 << 20
    assert dst.read_bytes() == data


def test_missing_partial_starts_over(tmp_path: Path, env: dict[str, str]) -> None:
    src, dst, data, tid = interrupt(tmp_path, env)
    (part,) = partials(tmp_path)
    part.unlink()
    assert transfers(env)[0]["state"] == "partial missing"
    result = openspec("resume", tid, "--json", env=env, check=True)
    assert json.loads(result.stdout)["files"][0]["resumed_from"] == 0
    assert dst.read_bytes() == data


def test_changed_source_is_refused_then_restart_copies_the_new_one(
    tmp_path: Path, env: dict[str, str]
) -> None:
    src, dst, data, tid = interrupt(tmp_path, env)
    with open(src, "ab") as fh:
        fh.write(b"more")
    assert transfers(env)[0]["state"] == "source changed"
    refused = openspec("resume", tid, env=env)
    assert refused.returncode == 3
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(src) in lines[0]
    assert f"openspec resume --restart {tid}" in lines[0]
    assert not dst.exists()
    openspec("resume", "--restart", tid, env=env, check=True)
    assert dst.read_bytes() == data + b"more"


def test_source_rewritten_in_place_with_its_mtime_set_back_is_not_resumed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Same size, same mtime, other bytes before the resume point: resuming would splice two
    versions together and call it a copy."""
    src, dst, data, tid = interrupt(tmp_path, env)
    st = src.stat()
    with open(src, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"EVIL")
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))

    refused = openspec("resume", tid, env=env)

    assert refused.returncode == 3
    assert "ctime changed" in refused.stderr
    assert not dst.exists()


def test_copy_again_with_partial_gone_and_source_changed_starts_fresh(
    tmp_path: Path, env: dict[str, str]
) -> None:
    src, dst, data, _ = interrupt(tmp_path, env)
    for part in partials(tmp_path):
        part.unlink()
    src.write_bytes(data[::-1])

    openspec("copy", str(src), str(dst), env=env, check=True)

    assert dst.read_bytes() == data[::-1]
    assert transfers(env) == []


def test_an_interrupt_between_files_says_to_run_the_copy_again(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after one file is done and before the next starts is a KeyboardInterrupt outside
    any transfer; it must still get the hint that finishes the whole copy."""
    from openspec_cli import api, scheduler
    from openspec_cli.errors import Interrupted

    for name in ("a", "b"):
        make_source(tmp_path / name, 100)
    (tmp_path / "out").mkdir()

    def interrupted(options: object, result: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(scheduler, "record_sum", interrupted)
    with pytest.raises(Interrupted, match="to finish, run the same copy again"):
        api.copy([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "out"))


def test_an_interrupt_after_the_rename_leaves_no_checkpoint(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final name is in place: there is nothing to resume, so no checkpoint may say so."""
    from openspec_cli import api, transfer
    from openspec_cli.errors import Interrupted

    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    data = make_source(src, 4 << 20)

    def interrupted(path: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(transfer, "fsync_dir", interrupted)  # the step right after the rename
    with pytest.raises(Interrupted):
        api.copy(str(src), str(dst))

    assert dst.read_bytes() == data
    assert transfers(env) == []
    assert partials(tmp_path) == []


def test_a_resume_runs_under_the_governor_as_a_copy_does(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Memory thresholds and backpressure apply to a resumed transfer, and the panel shows
    its pressure line: resume used to run without a governor (no level, memory, streams)."""
    from openspec_cli import api

    _, dst, data, tid = interrupt(tmp_path, env)
    engines: list[Any] = []

    class Watcher(NullObserver):
        def engine_attached(self, engine: Any) -> None:
            engines.append(engine)

    api.resume(tid, observer=Watcher())

    assert dst.read_bytes() == data
    (engine,) = engines
    snapshot = engine.snapshot()
    assert snapshot["level"] in {"NONE", "LIGHT", "MODERATE", "HEAVY", "CRITICAL"}
    assert snapshot["allowed"] == 1
    assert snapshot["ceiling"] > 0


@pytest.mark.parametrize("damage", ["cut short", "garbage"])
def test_discarding_an_unreadable_checkpoint_removes_the_partial_it_still_names(
    tmp_path: Path, env: dict[str, str], damage: str
) -> None:
    """The message for an unreadable checkpoint says to discard it; that left the partial file
    behind. Where the checkpoint still names it, it goes too; where nothing is left to say
    where it is, the user is told what it is called and how to remove it."""
    _, dst, _, tid = interrupt(tmp_path, env)
    (partial,) = partials(tmp_path)
    sidecar = Path(env[STATE]) / "transfers" / f"{tid}.json"
    text = sidecar.read_text()
    sidecar.write_text(text[: len(text) // 2] if damage == "cut short" else "{garbage")
    assert '"partial"' in sidecar.read_text() or damage == "garbage"

    result = openspec("resume", "--discard", tid, env=env)

    assert result.returncode == 0, result.stderr
    assert not sidecar.exists()
    if damage == "cut short":
        assert not partial.exists()
        assert result.stderr == f"openspec: discarded transfer {tid}\n"
    else:
        assert partial.exists()  # nothing says where it is: named for the user, not guessed
        assert f"'.*.{tid}.openspec-part' beside the destination" in result.stderr
        assert "openspec resume --prune --in DIR" in result.stderr


def test_resume_all_says_which_transfers_it_leaves_out(tmp_path: Path, env: dict[str, str]) -> None:
    src, _, _, tid = interrupt(tmp_path, env)
    with open(src, "ab") as fh:
        fh.write(b"more")

    result = openspec("resume", "--all", env=env)

    assert f"openspec: not resuming {tid}: its source changed" in result.stderr
    assert f"openspec resume --restart {tid}" in result.stderr
    assert result.returncode == 3  # as resume ID fails it: it waits for the user


def test_copy_again_after_source_changed_starts_fresh(tmp_path: Path, env: dict[str, str]) -> None:
    src, dst, data, _ = interrupt(tmp_path, env)
    src.write_bytes(data[::-1])
    result = openspec("copy", "--json", str(src), str(dst), env=env, check=True)
    assert json.loads(result.stdout)["files"][0]["resumed_from"] == 0
    assert dst.read_bytes() == data[::-1]
    assert partials(tmp_path) == []


@pytest.mark.parametrize(
    "garbage", [b"", b"{", b"[]", b'{"version": 99}', b"\x00\xff" * 10, b'{"version": 1}']
)
def test_corrupt_checkpoint_is_reported_with_a_way_forward(
    tmp_path: Path, env: dict[str, str], garbage: bytes
) -> None:
    src, dst, data, tid = interrupt(tmp_path, env)
    sidecar = Path(env[STATE]) / "transfers" / f"{tid}.json"
    assert sidecar.exists()
    sidecar.write_bytes(garbage)
    proc = openspec("resume", tid, env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"openspec resume --discard {tid}" in lines[0]
    listed = openspec("resume", "--list", env=env, check=True)
    assert tid in listed.stdout
    assert "unreadable" in listed.stdout
    openspec("resume", "--discard", tid, env=env, check=True)
    assert not sidecar.exists()
    assert not dst.exists()


def test_second_process_cannot_take_a_running_transfer(tmp_path: Path, env: dict[str, str]) -> None:
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    make_source(src, PACED_SIZE)
    proc = start("copy", "--limit-rate", "2M", str(src), str(dst), env=env)
    try:
        wait_for_progress(env, 1, proc)
        row = transfers(env)[0]
        assert str(row["state"]).startswith("running")
        for args in (("resume", str(row["id"])), ("copy", str(src), str(dst))):
            other = openspec(*args, env=env)
            assert other.returncode == 2
            assert f"transfer {row['id']} is in progress (pid {proc.pid})" in other.stderr
    finally:
        proc.kill()
        proc.wait()


def test_a_directory_made_again_by_hand_gets_cp_rule(tmp_path: Path, env: dict[str, str]) -> None:
    """The journal is for the directory the interrupted run made, not for one of that name."""
    make_source_tree(tmp_path / "src")
    src, backup = tmp_path / "src", tmp_path / "backup"
    interrupt_tree(env, src, backup, "1")
    shutil.rmtree(backup)
    backup.mkdir()

    openspec("copy", "-r", str(src), str(backup), env=env, check=True)

    assert sorted(p.name for p in backup.iterdir()) == ["src"]


def test_finishing_run_removes_stale_partials_and_old_sum_lines(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A kill -9 leaves partial files of small files (no checkpoint names them); a file copied
    again leaves an older sum line that xxh128sum -c would fail."""
    data = make_source_tree(tmp_path / "src")
    src, backup, sums = tmp_path / "src", tmp_path / "backup", tmp_path / "SUMS"
    complete = interrupt_tree(env, src, backup, "1", "--sums", str(sums))
    stale = backup / "sub" / ".small.0badcafe.openspec-part"
    stale.write_bytes(b"left by a kill -9")
    os.utime(stale, (time.time() - 5, time.time() - 5))
    st = (src / complete).stat()  # it was complete: change its source, keep size and mtime
    with open(src / complete, "r+b") as fh:
        fh.write(b"EVIL")
    os.utime(src / complete, ns=(st.st_atime_ns, st.st_mtime_ns))
    data[complete] = (src / complete).read_bytes()

    openspec("copy", "-r", "--sums", str(sums), str(src), str(backup), env=env, check=True)

    assert tree_contents(backup) == data
    assert not stale.exists()
    assert (backup / "sub").stat().st_mtime_ns == (src / "sub").stat().st_mtime_ns
    lines = sums.read_text().splitlines()
    assert sorted(line.split("  ", 1)[1] for line in lines) == sorted(
        str(backup / name) for name in data
    )
    for line in lines:
        digest, name = line.split("  ", 1)
        assert digest == xxhash.xxh3_128(Path(name).read_bytes()).hexdigest()


def test_a_file_copied_again_by_an_interrupted_run_keeps_one_sum_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Run 1 copies a file and stops; its source changes; run 2 copies it again and stops too;
    run 3 reuses run 2's copy. The sum file must end with one line per file, the newest."""
    data = make_source_tree(tmp_path / "src")
    src, backup, sums = tmp_path / "src", tmp_path / "backup", tmp_path / "SUMS"
    complete = interrupt_tree(env, src, backup, "1", "--sums", str(sums))
    data[complete] = os.urandom(8 << 20)  # another content, rewritten
    (src / complete).write_bytes(data[complete])
    again = start("copy", "-r", "-L", "8M", "--sums", str(sums), str(src), str(backup), env=env)
    deadline = time.monotonic() + 30
    while not any(p.name.startswith(".c.bin.") for p in partials(backup / "sub")):
        assert again.poll() is None, again.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    again.send_signal(signal.SIGINT)  # the changed file was copied again before c.bin began
    assert again.wait(timeout=30) == 130

    openspec("copy", "-r", "--sums", str(sums), str(src), str(backup), env=env, check=True)

    assert tree_contents(backup) == data
    lines = sums.read_text().splitlines()
    assert sorted(line.split("  ", 1)[1] for line in lines) == sorted(
        str(backup / name) for name in data
    )
    checked = openspec("verify", "-c", str(sums), env=env)
    assert checked.returncode == 0, checked.stdout


def test_a_sparse_copy_interrupted_in_a_hole_resumes_to_the_same_file(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Holes are seeks, not writes: the partial's length must still say what is committed."""
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    with open(src, "wb") as fh:
        fh.truncate(PACED_SIZE)
        fh.write(random.Random(1).randbytes(1 << 20))
        fh.seek(PACED_SIZE - (1 << 20))
        fh.write(random.Random(2).randbytes(1 << 20))
    if src.stat().st_blocks * 512 >= PACED_SIZE:
        pytest.skip("this filesystem does not keep holes")
    data = src.read_bytes()
    proc = start("copy", "--limit-rate", "4M", str(src), str(dst), env=env)
    wait_for_progress(env, 3 << 20, proc)  # inside the hole
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    (part,) = partials(tmp_path)
    assert part.stat().st_size >= 3 << 20  # committed holes count in the length

    result = openspec("copy", "--json", str(src), str(dst), env=env, check=True)

    assert json.loads(result.stdout)["files"][0]["resumed_from"] >= 3 << 20
    assert dst.read_bytes() == data
    assert dst.stat().st_blocks * 512 <= 4 << 20


def test_no_clobber_is_honoured_on_resume(tmp_path: Path, env: dict[str, str]) -> None:
    """copy -n, interrupted; someone writes the destination; resume must not replace it."""
    _, dst, _, tid = interrupt(tmp_path, env, options=("-n",))
    dst.write_bytes(b"precious")

    result = openspec("resume", tid, env=env, check=True)

    assert dst.read_bytes() == b"precious"
    assert "skipped" in result.stderr
    assert partials(tmp_path) == []
    assert transfers(env) == []


@pytest.mark.parametrize("again_with_n", [True, False])
def test_the_same_no_clobber_copy_again_forgets_what_cannot_finish(
    tmp_path: Path, env: dict[str, str], again_with_n: bool
) -> None:
    """Run again, copy -n skips the taken name and drops its own interrupted transfer, as
    resume does; a transfer started without -n stays, for resume to finish if wanted."""
    src, dst, _, _ = interrupt(tmp_path, env, options=("-n",) if again_with_n else ())
    dst.write_bytes(b"precious")

    result = openspec("copy", "-n", str(src), str(dst), env=env, check=True)

    assert dst.read_bytes() == b"precious"
    assert "skipped" in result.stderr
    assert (partials(tmp_path) == [], transfers(env) == []) == (again_with_n, again_with_n)


def test_a_destination_written_after_the_interruption_is_not_replaced(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Someone put a newer file at the destination since: resuming must not silently replace
    it with the old transfer's source; --restart says so explicitly."""
    src, dst, data, tid = interrupt(tmp_path, env)
    dst.write_bytes(b"newer work")

    refused = openspec("resume", tid, env=env)

    assert refused.returncode == 2
    assert f"openspec resume --restart {tid}" in refused.stderr
    assert dst.read_bytes() == b"newer work"
    openspec("resume", "--restart", tid, env=env, check=True)
    assert dst.read_bytes() == data


def test_sums_path_is_kept_absolute_for_a_resume_elsewhere(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The SUMS file is found from anywhere, and its line names the copy as the user spelled
    it, like the lines the copy itself writes (sha256sum -c runs where the copy ran)."""
    (tmp_path / "job").mkdir()
    (tmp_path / "elsewhere").mkdir()
    src = tmp_path / "src.bin"
    data = make_source(src, PACED_SIZE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "openspec_cli", "copy", "-L", "4M", "--sums", "SUMS", str(src),
         "dst.bin"],
        cwd=tmp_path / "job", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_progress(env, 1 << 20, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    tid = str(transfers(env)[0]["id"])

    subprocess.run(
        [sys.executable, "-m", "openspec_cli", "resume", tid],
        cwd=tmp_path / "elsewhere", env=env, check=True, capture_output=True,
    )  # fmt: skip

    assert not (tmp_path / "elsewhere" / "SUMS").exists()
    assert (tmp_path / "job" / "dst.bin").read_bytes() == data
    digest = xxhash.xxh3_128(data).hexdigest()
    assert (tmp_path / "job" / "SUMS").read_text() == f"{digest}  dst.bin\n"


def make_source_tree(root: Path) -> dict[str, bytes]:
    """Three files and a small one, in two directories. c.bin is large, so that seconds of
    copying are left when interrupt_tree stops the copy after a.bin or b.bin."""
    (root / "sub").mkdir(parents=True)
    files = {"a.bin": 8 << 20, "b.bin": 8 << 20, "sub/c.bin": 24 << 20, "sub/small": 100}
    return {name: make_source(root / name, size) for name, size in files.items()}


def tree_contents(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".openspec-part")
    }


def journal_lists(env: dict[str, str], path: Path) -> bool:
    """Whether the tree copy's journal records ``path`` as complete (bookkeeping done, not just
    the rename: a SIGINT in between would leave it to be copied again, correctly)."""
    journals = (Path(env[STATE]) / "trees").glob("*.jsonl")
    return path.exists() and any(f'"{path}"' in j.read_text() for j in journals)


def checkpointed(env: dict[str, str]) -> bool:
    """Whether some transfer has its checkpoint saved (it has started)."""
    return any((Path(env[STATE]) / "transfers").glob("*.json"))


def interrupt_copy(
    env: dict[str, str], *args: str, done: list[Path], next_started: bool = False
) -> Path:
    """Run ``openspec copy ARGS`` paced; stop it with SIGINT once one of ``done`` is journaled
    as complete (and, with ``next_started``, the next file's transfer has begun), and return
    that one."""
    finished: list[Path] = []

    def ready() -> bool:
        finished[:] = [path for path in done if journal_lists(env, path)]
        return bool(finished) and (checkpointed(env) or not next_started)

    interrupt_when(start("copy", "-L", "4M", *args, env=env), ready)
    return finished[0]


def interrupt_when(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    """Stop a running copy of several files with SIGINT as soon as ``ready()``."""
    deadline = time.monotonic() + 30
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        "openspec: interrupted; to finish, run the same copy again"
    )


def interrupt_tree(env: dict[str, str], src: Path, backup: Path, jobs: str, *extra: str) -> str:
    """Copy the tree paced, stop it with SIGINT once a.bin or b.bin is complete (c.bin is not);
    returns the name of the one that completed (with -j 2, either may be first)."""
    args = ("-r", "-j", jobs, *extra, str(src), str(backup))
    return interrupt_copy(env, *args, done=[backup / "a.bin", backup / "b.bin"]).name


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_interrupted_tree_copy_is_finished_by_running_it_again(
    tmp_path: Path, env: dict[str, str], jobs: str
) -> None:
    """``copy -r src backup`` made ``backup``; run again, it must continue into ``backup``
    (not start ``backup/src``), finish every file, and not copy a completed one again."""
    data = make_source_tree(tmp_path / "src")
    src, backup = tmp_path / "src", tmp_path / "backup"
    complete = interrupt_tree(env, src, backup, jobs)
    assert tree_contents(backup) != data  # it really was cut short
    first_inode = (backup / complete).stat().st_ino

    again = openspec("copy", "-r", "--json", str(src), str(backup), env=env, check=True)

    assert not (backup / "src").exists(), again.stderr
    assert tree_contents(backup) == data
    assert partials(backup) == []
    assert partials(backup / "sub") == []
    assert transfers(env) == []
    files = {Path(f["dest"]).name: f for f in json.loads(again.stdout)["files"]}
    assert files[complete]["resumed_from"] == 8 << 20  # vouched for by the journal
    assert (backup / complete).stat().st_ino == first_inode
    # Finished: a third run is an ordinary cp -r into an existing directory again.
    openspec("copy", "-r", str(src), str(backup), env=env, check=True)
    assert tree_contents(backup / "src") == data


def test_files_completed_just_before_an_interrupt_are_not_copied_again(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The journal's notes of the many small files done in the first moments are kept in
    memory for a while; an interrupt must still get them written, so the rerun reuses them."""
    src, backup = tmp_path / "src", tmp_path / "backup"
    src.mkdir()
    small = {f"f{i:02}": make_source(src / f"f{i:02}", 1000 + i) for i in range(20)}
    make_source(src / "z.bin", 24 << 20)
    proc = start("copy", "-r", "-L", "4M", str(src), str(backup), env=env)
    interrupt_when(proc, lambda: checkpointed(env))  # z.bin, copied last, has begun
    inodes = {name: (backup / name).stat().st_ino for name in small}

    again = openspec("copy", "-r", "--json", str(src), str(backup), env=env, check=True)

    files = {Path(f["dest"]).name: f for f in json.loads(again.stdout)["files"]}
    for name, data in small.items():
        assert files[name]["resumed_from"] == len(data), name
        assert (backup / name).stat().st_ino == inodes[name], name
        assert (backup / name).read_bytes() == data


def test_a_ctrl_c_after_a_tree_copy_completed_does_not_ask_for_a_rerun(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGINT while a complete copy removed its journal said "run the same copy again", and
    that rerun nested a second copy in the first. The moment is arranged by sending the real
    signal from inside the journal's finish."""
    data = make_source_tree(tmp_path / "src")
    src, backup = tmp_path / "src", tmp_path / "backup"
    real_finish = unfinished.TreeJournal.finish

    def interrupted_finish(journal: unfinished.TreeJournal) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        real_finish(journal)

    monkeypatch.setattr(unfinished.TreeJournal, "finish", interrupted_finish)
    report = api.copy(str(src), str(backup), recursive=True, fsync=False)

    assert report.errors == []
    assert tree_contents(backup) == data
    assert tree_journals(env) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handed back


def tree_journals(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env[STATE]) / "trees").glob("*.jsonl"))


@pytest.fixture
def cut_short_tree(tmp_path: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """(src, backup) of a ``copy -r src backup`` that made backup and was interrupted."""
    make_source_tree(tmp_path / "src")
    src, backup = tmp_path / "src", tmp_path / "backup"
    interrupt_tree(env, src, backup, "1")
    return src, backup


def test_resume_lists_an_unfinished_tree_copy_and_prune_forgets_an_idle_one(
    env: dict[str, str], cut_short_tree: tuple[Path, Path]
) -> None:
    src, backup = cut_short_tree
    (journal,) = tree_journals(env)
    (marker,) = backup.glob(".openspec-tree.*")

    listed = openspec("resume", env=env, check=True).stdout
    assert (
        "unfinished copies of trees or several files (to finish one, run the same copy again):"
        in listed
    )
    assert f"'{src}' -> '{backup}': " in listed
    assert " done, last " in listed
    resumed = openspec("resume", "--all", env=env, check=True)
    assert f"not finishing the copy of '{src}' -> '{backup}'" in resumed.stderr

    openspec("resume", "--prune", "--older-than", "1h", env=env, check=True)
    assert journal.exists()  # in place and not idle: kept
    assert marker.exists()
    two_hours_ago = time.time() - 7200
    os.utime(journal, (two_hours_ago, two_hours_ago))
    pruned = openspec("resume", "--prune", "--older-than", "1h", env=env, check=True)
    assert f"removed unfinished copy of '{src}' -> '{backup}' (idle for 2.0 h)" in pruned.stderr
    assert not journal.exists()
    assert not marker.exists()
    assert "tree" not in openspec("resume", env=env, check=True).stdout
    # Forgotten: the same copy now follows cp's rule into the existing directory.
    openspec("copy", "-r", str(src), str(backup), env=env, check=True)
    assert (backup / "src" / "sub" / "c.bin").exists()


def test_a_running_tree_copy_is_neither_pruned_nor_run_twice(
    tmp_path: Path, env: dict[str, str]
) -> None:
    data = make_source_tree(tmp_path / "src")
    src, backup = tmp_path / "src", tmp_path / "backup"
    proc = start("copy", "-r", "-L", "4M", str(src), str(backup), env=env)
    deadline = time.monotonic() + 30
    while not (tree_journals(env) and list(backup.glob(".openspec-tree.*"))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (journal,) = tree_journals(env)
    os.utime(journal, (time.time() - 7200, time.time() - 7200))  # no file completed for 2 h

    pruned = openspec("resume", "--prune", "--older-than", "1h", env=env, check=True)
    listed = openspec("resume", env=env, check=True).stdout
    second = openspec("copy", "-r", str(src), str(backup), env=env)

    assert "tree" not in pruned.stderr
    assert journal.exists()
    assert f"'{src}' -> '{backup}': running, " in listed
    assert second.returncode == 2
    assert second.stderr == (
        f"openspec: a copy of '{src}' into '{backup}' is already running; wait for it to end\n"
    )
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert time.time() - journal.stat().st_mtime < 60  # the run that stopped dated it
    openspec("copy", "-r", str(src), str(backup), env=env, check=True)
    assert tree_contents(backup) == data


def test_a_second_copy_of_the_same_tree_leaves_the_running_ones_journal_alone(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Started before the first has made NEW, the second would begin a journal of its own
    (rewriting the first's), or find no marker and delete it; it must be refused instead."""
    src, backup = tmp_path / "src", tmp_path / "backup"
    src.mkdir()
    first = unfinished.TreeJournal.begin(str(src), str(backup))
    (journal,) = tree_journals(env)
    before = journal.read_text()
    try:
        for second in (unfinished.TreeJournal.begin, unfinished.TreeJournal.reopen):
            with pytest.raises(UsageError, match="is already running"):
                second(str(src), str(backup))
            assert journal.read_text() == before
    finally:
        first.release()
    assert unfinished.TreeJournal.reopen(str(src), str(backup)) is None  # NEW never came
    assert tree_journals(env) == []


def test_prune_forgets_a_tree_copy_whose_directory_is_gone(
    env: dict[str, str], cut_short_tree: tuple[Path, Path]
) -> None:
    src, backup = cut_short_tree
    shutil.rmtree(backup)
    (Path(env[STATE]) / "trees" / "0123456789abcdef.jsonl").write_text("not a journal\n")

    listed = openspec("resume", env=env, check=True).stdout
    assert f"'{src}' -> '{backup}': '{backup}' no longer holds it (forget it: " in listed
    assert "unreadable journal" in listed
    pruned = openspec("resume", "--prune", env=env, check=True)
    assert f"journal of an unfinished copy ('{backup}' no longer holds it)" in pruned.stderr
    assert "journal of an unfinished copy (unreadable)" in pruned.stderr
    assert tree_journals(env) == []
    assert "tree" not in openspec("resume", env=env, check=True).stdout


def test_an_interrupt_while_making_directories_still_leaves_a_copy_to_continue(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree of many directories can be stopped before any file is copied; running the same
    copy again must continue into NEW, not start NEW/src."""
    data = make_source_tree(tmp_path / "src")
    for i in range(5):
        (tmp_path / "src" / f"dir{i}").mkdir(mode=0o750)
    src, backup = tmp_path / "src", tmp_path / "backup"
    real_mkdir = os.mkdir
    made: list[str] = []

    def mkdir_then_ctrl_c(path: str, *args: object, **kwargs: object) -> None:
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]
        if str(path).startswith(str(backup)):
            made.append(str(path))
            if len(made) == 3:  # the root and one directory in it are there
                raise KeyboardInterrupt

    monkeypatch.setattr(os, "mkdir", mkdir_then_ctrl_c)
    with pytest.raises(Interrupted, match="run the same copy again"):
        api.copy(str(src), str(backup), recursive=True)
    monkeypatch.undo()
    monkeypatch.setenv(STATE, env[STATE])

    api.copy(str(src), str(backup), recursive=True)

    assert not (backup / "src").exists()
    assert tree_contents(backup) == data
    assert sorted(p.name for p in backup.iterdir() if p.name.startswith("dir")) == [
        f"dir{i}" for i in range(5)
    ]
    # Those the stopped run made are this copy's too: they get their source's mode.
    assert {stat.S_IMODE((backup / f"dir{i}").stat().st_mode) for i in range(5)} == {0o750}
    assert not list(backup.glob(".openspec-tree.*"))


def test_the_journal_vouches_for_the_source_as_it_was_read(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A source changed just after its copy finished (before the journal noted it) must be
    copied again by the rerun: the journal records what was read, not a later stat."""
    src, backup = tmp_path / "src", tmp_path / "backup"
    src.mkdir()
    for name in ("one.txt", "two.txt"):
        (src / name).write_bytes(name.encode() * 100)
    finished: list[str] = []

    class ChangeFirstThenCtrlC(NullObserver):
        def stream_started(self, stats: StreamStats) -> None:
            if finished:
                raise KeyboardInterrupt

        def stream_finished(self, stats: StreamStats) -> None:
            finished.append(stats.name)
            with open(src / stats.name, "ab") as fh:
                fh.write(b" and more")

    with pytest.raises(Interrupted):
        api.copy(str(src), str(backup), recursive=True, jobs=1, observer=ChangeFirstThenCtrlC())
    assert len(finished) == 1
    assert tree_journals(env)

    api.copy(str(src), str(backup), recursive=True)

    assert tree_contents(backup) == tree_contents(src)


@pytest.mark.parametrize("damage", [{"bytes": "abc"}, {"bytes": None}, {"digest": 7}])
def test_a_damaged_journal_record_only_costs_a_copy_again(
    env: dict[str, str], cut_short_tree: tuple[Path, Path], damage: dict[str, object]
) -> None:
    src, backup = cut_short_tree
    (journal,) = tree_journals(env)
    header, *records = journal.read_text().splitlines()
    damaged = [json.dumps({**json.loads(r), **damage}) for r in records]
    journal.write_text("\n".join([header, *damaged]) + "\n")

    again = openspec("copy", "-r", "--json", str(src), str(backup), env=env)

    assert again.returncode == 0, again.stderr
    assert tree_contents(backup) == tree_contents(src)
    assert not (backup / "src").exists()
    for entry in json.loads(again.stdout)["files"]:
        content = Path(entry["dest"]).read_bytes()
        assert entry["digest"] == xxhash.xxh3_128(content).hexdigest()


def test_finishing_a_tree_copy_says_what_it_did_not_copy_again(
    env: dict[str, str], cut_short_tree: tuple[Path, Path]
) -> None:
    src, backup = cut_short_tree

    again = openspec("copy", "-r", str(src), str(backup), env=env, check=True)

    assert "resumed transfer None" not in again.stderr
    closing = again.stderr.splitlines()[-1]
    assert re.fullmatch(
        r"copied 4 file\(s\), 40\.0 MiB \([0-9.]+ MiB moved, [12] file\(s\) unchanged since an "
        r"earlier run\) in [0-9.]+ s \([0-9.]+ [KMG]iB/s\)",
        closing,
    ), closing


@pytest.mark.parametrize("form", ["several files", "a tree into a folder", "SRC/. into a folder"])
def test_running_a_copy_into_an_existing_folder_again_skips_what_it_finished(
    tmp_path: Path, env: dict[str, str], form: str
) -> None:
    """Not only copy -r SRC NEW: after an interrupt, big files already copied into a folder
    that was there are not copied again (rsync would not either)."""
    data = make_source_tree(tmp_path / "src")
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    if form == "several files":
        args, root = [str(src / "a.bin"), str(src / "sub" / "c.bin"), str(out)], out
    elif form == "a tree into a folder":
        args, root = ["-r", str(src), str(out)], out / "src"
    else:
        args, root = ["-r", f"{src}/.", str(out)], out
    interrupt_copy(env, *args, done=[root / "a.bin"])
    assert "unfinished copies of trees or several files" in openspec("resume", env=env).stdout

    again = openspec("copy", "--json", *args, env=env, check=True)

    files = {Path(f["dest"]).name: f for f in json.loads(again.stdout)["files"]}
    assert files["a.bin"]["resumed_from"] == 8 << 20  # vouched for by the journal
    for name, content in data.items():
        if form != "several files" or name in ("a.bin", "sub/c.bin"):
            copied = root / (name if form != "several files" else Path(name).name)
            assert copied.read_bytes() == content
    assert "unfinished" not in openspec("resume", env=env).stdout


@pytest.fixture
def cut_short_pair(tmp_path: Path, env: dict[str, str]) -> tuple[list[str], Path]:
    """``copy a.bin c.bin out`` stopped once a.bin is complete and c.bin has begun."""
    make_source_tree(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    args = [str(tmp_path / "src" / "a.bin"), str(tmp_path / "src" / "sub" / "c.bin"), str(out)]
    interrupt_copy(env, *args, done=[out / "a.bin"], next_started=True)
    return args, out


def rerun(env: dict[str, str], *args: str) -> dict[str, dict[str, Any]]:
    done = openspec("copy", "--json", *args, env=env, check=True)
    return {Path(f["dest"]).name: f for f in json.loads(done.stdout)["files"]}


def test_a_rerun_takes_the_sources_in_any_order(
    env: dict[str, str], cut_short_pair: tuple[list[str], Path]
) -> None:
    (a, c, out), _ = cut_short_pair
    assert rerun(env, c, a, out)["a.bin"]["resumed_from"] == 8 << 20


def test_a_file_resume_finished_is_not_copied_again_by_the_rerun(
    env: dict[str, str], cut_short_pair: tuple[list[str], Path]
) -> None:
    """resume --all finishes c.bin; the copy run again afterwards finds both done."""
    args, _ = cut_short_pair
    openspec("resume", "--all", env=env, check=True)

    files = rerun(env, *args)

    assert files["a.bin"]["resumed_from"] == 8 << 20
    assert files["c.bin"]["resumed_from"] == 24 << 20


@pytest.mark.parametrize("option", ["--restart", "--algo sha256"])
def test_a_rerun_copies_again_what_the_journal_cannot_vouch_for_as_asked(
    env: dict[str, str], cut_short_pair: tuple[list[str], Path], option: str
) -> None:
    """--restart means start over; another --algo needs digests the journal does not have."""
    args, _ = cut_short_pair
    assert rerun(env, *option.split(), *args)["a.bin"]["resumed_from"] == 0


def test_a_rerun_verifies_and_lists_what_it_reuses(
    tmp_path: Path, env: dict[str, str], cut_short_pair: tuple[list[str], Path]
) -> None:
    """--verify and --sums on the rerun cover every file, also those an earlier run copied."""
    args, out = cut_short_pair
    sums = tmp_path / "SUMS"

    files = rerun(env, "--verify", "--sums", str(sums), *args)

    assert files["a.bin"]["resumed_from"] == 8 << 20
    assert files["a.bin"]["verified"] is True
    check = subprocess.run(["xxh128sum", "-c", str(sums)], capture_output=True, text=True)
    assert check.returncode == 0, check
    assert sorted(line.split("  ")[1] for line in sums.read_text().splitlines()) == [
        str(out / "a.bin"),
        str(out / "c.bin"),
    ]


def test_a_rerun_with_one_file_left_finishes_the_journal(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A file deleted from the tree meanwhile leaves one to copy: the journal must still be
    taken up and finished, not listed as unfinished for ever."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    make_source(src / "a.bin", 8 << 20)
    make_source(src / "z.bin", 24 << 20)
    interrupt_copy(env, "-r", str(src), str(out), done=[out / "src" / "a.bin"])
    (src / "a.bin").unlink()

    openspec("copy", "-r", str(src), str(out), env=env, check=True)

    assert tree_journals(env) == []
    assert "unfinished" not in openspec("resume", env=env).stdout


def test_folders_an_interrupted_copy_made_in_an_existing_one_get_their_modes_on_the_rerun(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The journal records the folders it made, so the rerun finishes them as an unbroken
    copy would: a read-only source folder is read-only again, times are the source's."""
    src, out = tmp_path / "tree", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    out.mkdir()
    make_source(src / "a.bin", 8 << 20)
    make_source(src / "sub" / "z.bin", 24 << 20)
    (src / "sub").chmod(0o555)
    for folder in (src / "sub", src):
        os.utime(folder, ns=(1_000_000_000, 1_000_000_000))
    interrupt_copy(env, "-r", str(src), str(out), done=[out / "tree" / "a.bin"])

    openspec("copy", "-r", str(src), str(out), env=env, check=True)

    sub, top = (out / "tree" / "sub").stat(), (out / "tree").stat()
    assert (stat.S_IMODE(sub.st_mode), sub.st_mtime_ns, top.st_mtime_ns) == (
        0o555,
        1_000_000_000,
        1_000_000_000,
    )


def test_a_file_in_proc_is_never_taken_as_done(tmp_path: Path, env: dict[str, str]) -> None:
    """Its stat stays the same while its content changes: no journal can vouch for it."""
    make_source(tmp_path / "big.bin", PACED_SIZE)
    out = tmp_path / "out"
    out.mkdir()
    args = ["/proc/uptime", str(tmp_path / "big.bin"), str(out)]
    proc = start("copy", "-L", "4M", *args, env=env)
    wait_for_progress(env, 1 << 20, proc)  # big.bin's: uptime, first, is done
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert (out / "uptime").exists()

    assert rerun(env, *args)["uptime"]["resumed_from"] == 0


def test_a_completed_file_changed_since_is_copied_again(
    tmp_path: Path, env: dict[str, str]
) -> None:
    data = make_source_tree(tmp_path / "src")
    src, backup = tmp_path / "src", tmp_path / "backup"
    complete = interrupt_tree(env, src, backup, "1")
    with open(backup / complete, "r+b") as fh:  # same size, other bytes
        fh.write(b"EVIL")

    openspec("copy", "-r", str(src), str(backup), env=env, check=True)

    assert tree_contents(backup) == data


def test_resume_all_and_discard(tmp_path: Path, env: dict[str, str]) -> None:
    src, dst, data, tid = interrupt(tmp_path, env)
    proc = openspec("resume", "--all", "--json", env=env, check=True)
    assert [f["id"] for f in json.loads(proc.stdout)["files"]] == [tid]
    assert dst.read_bytes() == data
    missing = openspec("resume", "deadbeef", env=env)
    assert missing.returncode == 2
    assert "deadbeef" in missing.stderr


def test_resume_all_goes_on_past_a_transfer_that_fails(tmp_path: Path, env: dict[str, str]) -> None:
    """One transfer whose destination directory is gone must not keep the others waiting."""
    copies = {}
    for name in ("gone", "kept"):
        (tmp_path / name).mkdir()
        src = tmp_path / f"{name}.src"
        copies[name] = make_source(src, PACED_SIZE)
        proc = start("copy", "-L", "4M", str(src), str(tmp_path / name / "out"), env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            p.stat().st_size for p in partials(tmp_path / name)
        ):
            assert proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    for part in partials(tmp_path / "gone"):
        part.unlink()
    (tmp_path / "gone").rmdir()

    result = openspec("resume", "--all", env=env)

    assert result.returncode != 0
    assert (tmp_path / "kept" / "out").read_bytes() == copies["kept"]
    last = result.stderr.strip().splitlines()[-1]  # named as the user knows it, not the partial
    assert last.endswith(f"cannot create regular file '{tmp_path / 'gone' / 'out'}': "
                         "No such file or directory")  # fmt: skip


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--older-than", "7d"], "--older-than applies only with --prune"),
        (["--in", "."], "--in applies only with --prune"),
        (["--list", "--restart"], "--restart applies only when resuming"),
        (["--restart"], "--restart applies only when resuming"),
        (["--prune", "--all"], "--all and --prune cannot be used together"),
    ],
)
def test_flags_the_action_would_ignore_are_refused(
    env: dict[str, str], args: list[str], complaint: str
) -> None:
    result = openspec("resume", *args, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == f"openspec: {complaint}" + (
        " (an ID or --all)" if "restart" in complaint else ""
    )


def test_prune_removes_checkpoints_whose_partial_is_gone(
    tmp_path: Path, env: dict[str, str]
) -> None:
    _, _, _, tid = interrupt(tmp_path, env)
    (part,) = partials(tmp_path)
    part.unlink()
    proc = openspec("resume", "--prune", env=env, check=True)
    assert tid in proc.stderr
    assert transfers(env) == []


def test_prune_in_a_directory_removes_partials_with_no_checkpoint(
    tmp_path: Path, env: dict[str, str]
) -> None:
    orphan = tmp_path / ".big.iso.0badcafe.openspec-part"
    orphan.write_bytes(b"x" * 1000)
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    keep = tmp_path / "big.iso"
    keep.write_bytes(b"y")
    openspec("resume", "--prune", env=env, check=True)
    assert orphan.exists()  # not looked for unless asked: the state dir knows nothing of it
    proc = openspec("resume", "--prune", "--in", str(tmp_path), env=env, check=True)
    assert not orphan.exists()
    assert keep.exists()
    assert str(orphan) in proc.stderr
