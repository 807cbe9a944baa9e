"""I/O errors at chosen and random offsets: finish correct, or stop resumable; never a wrong file.

In-process injection wraps the engine's read and write; ``fiu-run`` injects real failures into the
libc calls of a real process; a tiny tmpfs makes a real full disk.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xxhash
from conftest import mounted

from openspec_cli import checkpoint, copying, engine, fileio
from openspec_cli.copy_records import CopyOptions, FileResult
from openspec_cli.errors import OpenspecError, TransferIOError


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv("OPENSPEC_STATE_DIR", str(directory))
    return directory


def source(tmp_path: Path, size: int = 3 << 20) -> tuple[Path, bytes]:
    data = random.Random(size).randbytes(size)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    return path, data


def no_sleep(_: float) -> None:
    """Backoff without waiting: the policy is tested in test_retry.py."""


class Faults:
    """Raises chosen errors when the stream reaches chosen offsets of reads or writes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read_plan: dict[int, int] = {}
        self.write_plan: dict[int, int] = {}
        self.random: tuple[random.Random, float, list[int]] | None = None
        self.fired: list[tuple[str, int]] = []
        real_read = engine.Pump._read
        real_write = fileio.write_all
        self.read_pos = 0
        self.write_pos = 0

        def read(pump: engine.Pump, buf: memoryview) -> int:
            self._maybe_fail("read", pump.stats.done, self.read_plan)
            return real_read(pump, buf)

        def write(fd: int, data: memoryview) -> None:
            pos = os.lseek(fd, 0, os.SEEK_CUR)
            self._maybe_fail("write", pos, self.write_plan)
            real_write(fd, data)

        monkeypatch.setattr(engine.Pump, "_read", read)
        monkeypatch.setattr(fileio, "write_all", write)

    def _maybe_fail(self, op: str, pos: int, plan: dict[int, int]) -> None:
        for offset in sorted(plan):
            if pos >= offset:
                code = plan.pop(offset)
                self.fired.append((op, pos))
                raise OSError(code, os.strerror(code))
        if self.random is not None:
            rng, p, codes = self.random
            if rng.random() < p:
                self.fired.append((op, pos))
                code = rng.choice(codes)
                raise OSError(code, os.strerror(code))


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    return Faults(monkeypatch)


def copy(src: Path, dst: Path) -> FileResult:
    return copying.copy_file(str(src), str(dst), CopyOptions(sleep=no_sleep))


@pytest.mark.parametrize("op", ["read", "write"])
@pytest.mark.parametrize("code", [errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.EBUSY])
def test_transient_error_is_retried_in_place(
    tmp_path: Path, faults: Faults, op: str, code: int
) -> None:
    src, data = source(tmp_path)
    plan = faults.read_plan if op == "read" else faults.write_plan
    plan[1 << 20] = code
    plan[2 << 20] = code
    result = copy(src, tmp_path / "dst.bin")
    assert len(faults.fired) == 2
    assert [r["errno"] for r in result.retries] == [errno.errorcode[code]] * 2
    assert (tmp_path / "dst.bin").read_bytes() == data
    assert result.digest == xxhash.xxh3_128(data).hexdigest()
    assert checkpoint.list_all() == []


def test_error_that_persists_exhausts_the_budget_and_stays_resumable(
    tmp_path: Path, faults: Faults
) -> None:
    src, data = source(tmp_path)
    faults.random = (random.Random(1), 1.1, [errno.EIO])  # every read fails from now on
    with pytest.raises(TransferIOError, match="then run: openspec resume") as info:
        copy(src, tmp_path / "dst.bin")
    assert "Input/output error" in info.value.message
    (cp,) = checkpoint.list_all()
    assert isinstance(cp, checkpoint.Checkpoint)
    assert len(cp.retries) >= 3
    faults.random = None
    result = copying.resume(cp.id, CopyOptions(sleep=no_sleep))
    assert (tmp_path / "dst.bin").read_bytes() == data
    assert result.transfer_id == cp.id


def test_no_space_fails_fast_then_resume_finishes(tmp_path: Path, faults: Faults) -> None:
    src, data = source(tmp_path)
    faults.write_plan[2 << 20] = errno.ENOSPC
    with pytest.raises(TransferIOError) as info:
        copy(src, tmp_path / "dst.bin")
    (cp,) = checkpoint.list_all()
    assert isinstance(cp, checkpoint.Checkpoint)
    assert info.value.message.endswith(f"free some space, then run: openspec resume {cp.id}")
    assert cp.retries == []
    assert not (tmp_path / "dst.bin").exists()
    result = copying.resume(cp.id, CopyOptions(sleep=no_sleep))
    assert result.resumed_from > 0
    assert (tmp_path / "dst.bin").read_bytes() == data


@pytest.mark.parametrize("seed", range(8))
def test_random_faults_never_yield_a_wrong_file(tmp_path: Path, faults: Faults, seed: int) -> None:
    src, data = source(tmp_path, size=(2 << 20) + seed * 4099)
    dst = tmp_path / "dst.bin"
    codes = [errno.EIO, errno.EAGAIN, errno.ENOSPC, errno.EACCES, errno.ESTALE]
    faults.random = (random.Random(seed), 0.08, codes)
    attempt: Callable[[], FileResult] = lambda: copy(src, dst)  # noqa: E731
    for _ in range(60):
        try:
            attempt()
            break
        except OpenspecError:
            assert not dst.exists()
    else:
        pytest.fail("never finished")
    assert dst.read_bytes() == data
    assert list(tmp_path.glob(".*.openspec-part")) == []


FIU = shutil.which("fiu-run")


@pytest.mark.skipif(FIU is None, reason="fiu-run (Debian fiu-utils) is not installed")
@pytest.mark.parametrize("point", ["posix/io/rw/readv", "posix/io/rw/write"])
def test_real_injected_io_errors_with_fiu_run(tmp_path: Path, state: Path, point: str) -> None:
    src, data = source(tmp_path, size=4 << 20)
    dst = tmp_path / "dst.bin"
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(state)}
    command = [
        str(FIU),
        "-x",
        "-c",
        f"enable_random name={point},probability=0.02",
        sys.executable,
        "-m",
        "openspec_cli",
        "copy",
        "-q",
        str(src),
        str(dst),
    ]
    outcomes: list[int] = []
    for _ in range(40):
        proc = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        outcomes.append(proc.returncode)
        if proc.returncode == 0:
            break
        assert "Traceback" not in proc.stderr
        assert proc.returncode in (2, 3), proc.stderr
        assert not dst.exists()
    assert outcomes[-1] == 0, outcomes
    assert dst.read_bytes() == data


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB filesystem (tmpfs), unmounted afterwards."""
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=8m", "tmpfs") as mnt:
        yield mnt


def test_a_small_file_onto_a_full_disk_is_refused_before_any_byte(
    tmp_path: Path, state: Path, small_disk: Path
) -> None:
    """Files under the streaming trigger skip fallocate, not the free-space check."""
    src, _ = source(tmp_path, size=512 << 10)
    (small_disk / "filler").write_bytes(b"\0" * ((8 << 20) - (256 << 10)))
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "openspec_cli", "copy", str(src), str(small_disk / "dst")]

    full = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)

    assert full.returncode == 3
    assert "No space left on device (needs 524288 bytes" in full.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_disk_full_on_a_real_tmpfs_then_copy_after_space_is_made(
    tmp_path: Path, state: Path, small_disk: Path
) -> None:
    mnt = small_disk
    src, data = source(tmp_path, size=5 << 20)
    filler = mnt / "filler"
    filler.write_bytes(b"\0" * (4 << 20))
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "openspec_cli", "copy", str(src), str(mnt / "dst.bin")]
    full = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert full.returncode == 3
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "No space left on device" in lines[0]
    assert str(mnt / "dst.bin") in lines[0]
    assert sorted(p.name for p in mnt.iterdir()) == ["filler"]
    filler.unlink()
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert (mnt / "dst.bin").read_bytes() == data


def test_a_sparse_file_longer_than_the_free_space_still_fits(
    tmp_path: Path, state: Path, small_disk: Path
) -> None:
    """64 MiB long, 1 MiB of data: an 8 MiB disk holds its (sparse) copy, as with cp."""
    src = tmp_path / "image"
    with open(src, "wb") as fh:
        fh.truncate(64 << 20)
        fh.seek(30 << 20)
        fh.write(os.urandom(1 << 20))
    if src.stat().st_blocks * 512 >= 64 << 20:
        pytest.skip("this filesystem does not keep holes")
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "openspec_cli", "copy", str(src), str(small_disk / "image")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (small_disk / "image").read_bytes() == src.read_bytes()


def test_a_read_only_filesystem_is_named_as_such(
    tmp_path: Path, state: Path, small_disk: Path
) -> None:
    """cp says 'Read-only file system'; 'Permission denied' would send a user after modes."""
    src, _ = source(tmp_path, size=1 << 20)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(state)}
    base = [sys.executable, "-m", "openspec_cli", "copy"]
    into = subprocess.run([*base, str(src), str(small_disk)], env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    sums = subprocess.run([*base, "--sums", str(small_disk / "SUMS"), str(src),
                           str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip

    assert (into.returncode, sums.returncode) == (2, 2)
    assert into.stderr == (
        f"openspec: cannot create regular file '{small_disk / src.name}': Read-only file system\n"
    )
    assert sums.stderr.endswith("'" + str(small_disk / "SUMS") + "': Read-only file system\n")
    (tmp_path / "tree").mkdir()
    src.rename(tmp_path / "tree" / src.name)
    tree = subprocess.run([*base, "-r", str(tmp_path / "tree"), str(small_disk / "new")], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert tree.returncode == 2
    assert tree.stderr == (
        f"openspec: cannot create directory '{small_disk / 'new'}': Read-only file system\n"
    )
    assert list(small_disk.iterdir()) == []
    assert not (tmp_path / "out").exists()


def test_a_full_disk_behind_stdout_is_blamed_on_the_output_also_from_a_pipe(
    small_disk: Path,
) -> None:
    """From a pipe, cat moves data with splice, whose error does not say which side failed."""
    producer = subprocess.Popen(["head", "-c", str(12 << 20), "/dev/zero"], stdout=subprocess.PIPE)
    with open(small_disk / "out", "wb") as out:
        result = subprocess.run([sys.executable, "-m", "openspec_cli", "cat"],
                                stdin=producer.stdout, stdout=out, stderr=subprocess.PIPE,
                                timeout=30, check=False)  # fmt: skip
    assert producer.stdout is not None
    producer.stdout.close()
    producer.wait()
    assert result.returncode == 3
    assert result.stderr == b"openspec: error writing standard output: No space left on device\n"


def test_a_tree_too_big_for_the_disk_is_refused_before_its_first_file(
    tmp_path: Path, state: Path, small_disk: Path
) -> None:
    """Each file alone fits, all of them do not: nothing is written, not even the folder."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a", "b", "c"):
        (tree / name).write_bytes(os.urandom(3 << 20))
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "openspec_cli", "copy", "-r", str(tree), str(small_disk / "t")]

    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)

    assert result.returncode == 3
    assert result.stderr == (
        f"openspec: '{small_disk}': No space left on device "
        f"(3 files need up to {9 << 20} bytes at once, {shutil.disk_usage(small_disk).free} free)\n"
    )
    assert list(small_disk.iterdir()) == []
    (tree / "c").unlink()  # two fit: the check must not refuse what the disk can hold
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (small_disk / "t").iterdir()) == ["a", "b"]


def test_replacing_files_needs_each_one_in_full_until_its_rename(
    tmp_path: Path, state: Path, small_disk: Path
) -> None:
    """A copy is renamed over the old file, so the old one's space comes back only then: with
    2 MiB free, replacing two 3 MiB files cannot work, and nothing is written."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("f1", "f2"):
        (src / name).write_bytes(os.urandom(3 << 20))
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "openspec_cli", "copy", "-r", f"{src}/.", str(small_disk)]
    assert subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 0
    (src / "small").write_bytes(os.urandom(1 << 20))

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)

    assert again.returncode == 3
    assert "No space left on device (3 files need up to" in again.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["f1", "f2"]


def test_an_interrupted_tree_that_fits_is_finished_not_refused(
    tmp_path: Path, state: Path, small_disk: Path
) -> None:
    """Its completed files are not written again, and its partial file holds its blocks: the
    rerun needs no more space, though copying everything afresh would."""
    src = tmp_path / "src"
    src.mkdir()
    data = {name: os.urandom(3 << 20) for name in ("f1", "f2")}
    for name, content in data.items():
        (src / name).write_bytes(content)
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(state)}
    dest = small_disk / "t"
    base = [sys.executable, "-m", "openspec_cli", "copy", "-r", str(src), str(dest)]
    proc = subprocess.Popen([*base, "-L", "4M"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not list(dest.glob(".f2.*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    again = subprocess.run(base, env=env, capture_output=True, text=True, check=False)

    assert again.returncode == 0, again.stderr
    assert {name: (dest / name).read_bytes() for name in data} == data
