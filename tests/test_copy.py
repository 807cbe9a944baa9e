"""Behaviour of ``openspec copy``: cp semantics, refusals, digests, ``--json``, safety mid-copy."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash
from conftest import (
    BOUNDARY_SIZES,
    KIB,
    MIB,
    OPENSPEC,
    assert_one_error_line,
    assert_refused,
    invoke,
    kill_quietly,
    mounted,
    partial_bytes,
    partials,
    random_bytes,
    reference_digest,
    run_openspec,
    snapshot,
    start_openspec,
    wait_for,
    write_random,
    xxh128_hex,
)
from typer.testing import CliRunner

from openspec_cli import api, checkpoint, transfer
from openspec_cli.copy_records import CopyOptions
from openspec_cli.engine import NullObserver, StreamStats
from openspec_cli.errors import Interrupted, SourceChangedError

USAGE = 2
IO_ERROR = 3


def copy_json(runner: CliRunner, *args: str) -> dict[str, Any]:
    """Run ``copy --json ARGS``, require success and return the parsed summary."""
    result = invoke(runner, ["copy", "--json", *args])
    assert result.exit_code == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def expected_first_chunk(size: int) -> int:
    """The design record's size classes, as the README documents them."""
    if size < MIB:
        return 32 * KIB
    if size < 10 * MIB:
        return 64 * KIB
    return 128 * KIB


def real_tool_digest(tool: str, path: Path) -> str:
    """The digest the real ``xxh128sum``/``sha256sum`` prints for ``path``."""
    out = subprocess.run([tool, str(path)], capture_output=True, check=True).stdout
    return out.decode().split()[0]


# ---------------------------------------------------------------------------- copies that work


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_copy_to_new_name_is_byte_exact(runner: CliRunner, tmp_path: Path, size: int) -> None:
    src, dest = tmp_path / "src.bin", tmp_path / "dest.bin"
    data = write_random(src, size, seed=size)

    summary = copy_json(runner, str(src), str(dest))

    assert dest.read_bytes() == data
    assert src.read_bytes() == data
    (entry,) = summary["files"]
    assert entry["bytes"] == size
    assert entry["digest"] == xxh128_hex(data)
    assert entry["chunk_sizes"][0] == expected_first_chunk(size)
    assert partials(tmp_path) == []


def traced_syncs(args: list[str], cwd: Path) -> list[str]:
    """The paths openspec fsyncs, in order, as a real ``strace`` sees them."""
    log = cwd / "strace.log"
    trace = ["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o", str(log)]
    result = subprocess.run(
        [*trace, *OPENSPEC, *args], cwd=cwd, capture_output=True, timeout=60, check=False
    )
    if "ptrace" in result.stderr.decode() or "PTRACE" in result.stderr.decode():
        pytest.skip("this machine does not allow ptrace (a container without CAP_SYS_PTRACE)")
    assert result.returncode == 0, result.stderr
    return re.findall(r"(?:fsync|fdatasync)\(\d+<([^>]*)>\) = 0", log.read_text())


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_a_tree_syncs_each_folder_once_after_the_files_renamed_into_it(tmp_path: Path) -> None:
    """Durable as before (every file synced before its rename, every folder after the renames
    into it), without a directory sync per file."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a", "b", "c", "sub/d", "sub/e", "sub/f"):
        write_random(src / name, 5000, seed=len(name))

    synced = traced_syncs(["copy", "-r", "src", "dst"], tmp_path)

    dst = tmp_path / "dst"
    files = ["a", "b", "c", "sub/d", "sub/e", "sub/f"]
    folders = [str(dst), str(dst / "sub"), str(tmp_path)]
    assert sorted(p for p in synced if p in folders) == sorted(folders)  # each one once
    assert len(synced) == len(files) + len(folders)  # the files: their partials' names then
    for folder in folders:
        assert synced.index(folder) > max(
            i for i, p in enumerate(synced) if p not in folders and p.startswith(folder)
        )


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_a_rerun_syncs_the_folders_of_the_files_it_reuses(tmp_path: Path) -> None:
    """The run that copied them may have been killed before its folder syncs; the journal
    already vouched for them, so the rerun, which renames nothing there, must sync them."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    for name in ("a/f1", "a/f2", "b/g1"):
        write_random(src / name, 100 * KIB, seed=len(name))
    write_random(src / "b" / "big", 4 * MIB)  # copied before g1, and z after it
    write_random(src / "b" / "z", 8 * MIB)
    (tmp_path / "pre" / "a").mkdir(parents=True)
    (tmp_path / "pre" / "b").mkdir()
    first = start_openspec(["copy", "-q", "-L", "2M", "-r", "src/.", "pre"], tmp_path)
    try:
        wait_for(lambda: (tmp_path / "pre" / "b" / "g1").exists(), 20, "the a/ files copied")
        first.kill()  # kill -9 during z: no syncs at the end; a/'s files are journaled by now
        first.wait()
    finally:
        kill_quietly(first)

    synced = traced_syncs(["copy", "-q", "-r", "src/.", "pre"], tmp_path)
    print("SYNCED", synced, os.listdir(os.environ["OPENSPEC_STATE_DIR"] + "/trees"))

    assert str(tmp_path / "pre" / "a") in synced
    assert (tmp_path / "pre" / "a" / "f1").read_bytes() == (src / "a" / "f1").read_bytes()


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("files", [0, 1])
def test_a_tree_of_one_file_or_none_syncs_the_folders_it_made(tmp_path: Path, files: int) -> None:
    """Folders were collected for syncing only for two files or more: a tree with one file
    synced only that file's folder, one with none synced nothing, so out/ or out/x could
    vanish in a crash."""
    (tmp_path / "one" / "x" / "y").mkdir(parents=True)
    if files:
        write_random(tmp_path / "one" / "x" / "y" / "file", 100)

    synced = traced_syncs(["copy", "-r", "one", "out"], tmp_path)

    out = tmp_path / "out"
    for folder in (tmp_path, out, out / "x", out / "x" / "y"):
        assert str(folder) in synced


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_a_single_file_syncs_its_folder_after_the_rename(tmp_path: Path) -> None:
    write_random(tmp_path / "a", 5000)
    (tmp_path / "out").mkdir()

    synced = traced_syncs(["copy", "a", "out/b"], tmp_path)

    assert synced[-1] == str(tmp_path / "out")
    assert len(synced) == 2
    assert ".openspec-part" in synced[0]


def test_copy_into_existing_directory(runner: CliRunner, tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    data = write_random(src, 100 * KIB)
    (tmp_path / "out").mkdir()

    result = invoke(runner, ["copy", str(src), str(tmp_path / "out")])

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "a.bin").read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bin"]


def test_copy_several_sources_into_directory(runner: CliRunner, tmp_path: Path) -> None:
    sizes = {"empty": 0, "small": 5, "chunk": 32 * KIB, "big": MIB + 1}
    datas = {
        name: write_random(tmp_path / name, size, seed=i)
        for i, (name, size) in enumerate(sizes.items())
    }
    out = tmp_path / "out"
    out.mkdir()

    summary = copy_json(runner, *(str(tmp_path / n) for n in sizes), str(out))

    for name, data in datas.items():
        assert (out / name).read_bytes() == data
    assert [Path(f["dest"]).name for f in summary["files"]] == list(sizes)
    assert summary["totals"]["files"] == len(sizes)
    assert summary["totals"]["bytes"] == sum(sizes.values())
    assert partials(tmp_path) == []


def test_overwrites_an_existing_file(runner: CliRunner, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    data = write_random(src, MIB + 1, seed=1)
    src.chmod(0o640)
    write_random(dest, 3 * MIB, seed=2)
    dest.chmod(0o600)

    result = invoke(runner, ["copy", str(src), str(dest)])

    assert result.exit_code == 0, result.stderr
    assert dest.read_bytes() == data
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert partials(tmp_path) == []


def test_no_clobber_skips_existing_and_copies_the_rest(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"new a")
    b_data = write_random(tmp_path / "b", 40 * KIB)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_bytes(b"old a")
    os.utime(out / "a", ns=(1_000_000_000, 1_000_000_000))
    before = (out / "a").stat()

    result = invoke(runner, ["copy", "-n", str(tmp_path / "a"), str(tmp_path / "b"), str(out)])

    assert result.exit_code == 0, result.stderr
    assert (out / "a").read_bytes() == b"old a"
    after = (out / "a").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (out / "b").read_bytes() == b_data
    assert partials(tmp_path) == []


def test_mode_and_mtime_are_preserved(runner: CliRunner, tmp_path: Path) -> None:
    for mode, size in ((0o640, 10), (0o751, MIB + 1), (0o400, 0)):
        src, dest = tmp_path / f"src{mode:o}", tmp_path / f"dest{mode:o}"
        write_random(src, size)
        mtime_ns = 1_234_567_890_123_456_789
        os.utime(src, ns=(1_111_111_111_000_000_001, mtime_ns))
        src.chmod(mode)

        result = invoke(runner, ["copy", str(src), str(dest)])

        assert result.exit_code == 0, result.stderr
        st = dest.stat()
        assert stat.S_IMODE(st.st_mode) == mode
        assert st.st_mtime_ns == mtime_ns


def test_verify_passes_and_is_reported(runner: CliRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = write_random(src, 2 * MIB + 3)

    summary = copy_json(runner, "--verify", str(src), str(tmp_path / "d1"))
    plain = invoke(runner, ["copy", "--verify", str(src), str(tmp_path / "d2")])

    assert summary["files"][0]["verified"] is True
    assert plain.exit_code == 0
    assert "verified" in plain.stderr
    assert (tmp_path / "d1").read_bytes() == data
    assert (tmp_path / "d2").read_bytes() == data


# ---------------------------------------------------------------------------- trees


def make_tree(root: Path) -> None:
    """Nested directories, an empty one, symlinks (relative, upward, dangling), odd modes."""
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    write_random(root / "top.bin", 40 * KIB, seed=1)
    write_random(root / "run.sh", 7, seed=2)
    write_random(root / "sub" / "deep" / "big.bin", MIB + 1, seed=3)
    (root / "sub" / "deep" / "zero").write_bytes(b"")
    (root / "link").symlink_to("top.bin")
    (root / "sub" / "uplink").symlink_to("../top.bin")
    (root / "dangling").symlink_to("does-not-exist")
    (root / "top.bin").chmod(0o640)
    (root / "run.sh").chmod(0o755)
    for i, path in enumerate(sorted(root.rglob("*"))):
        if not path.is_symlink() and path.is_file():
            os.utime(path, ns=(1_500_000_000_000_000_000 + i, 1_600_000_000_000_000_123 + i))


def assert_same_tree(src: Path, dest: Path) -> None:
    want, got = snapshot(src), snapshot(dest)
    assert sorted(got) == sorted(want)
    for rel, (kind, mode, mtime_ns, content) in want.items():
        g_kind, g_mode, g_mtime_ns, g_content = got[rel]
        assert g_kind == kind, rel
        assert g_content == content, rel
        if kind == "file":
            assert g_mode == mode, rel
            assert g_mtime_ns == mtime_ns, rel


@pytest.mark.parametrize("slash", ["", "/"])
def test_recursive_copy_to_new_name(runner: CliRunner, tmp_path: Path, slash: str) -> None:
    """``cp -r src out/`` makes ``out`` too, when it does not exist yet."""
    make_tree(tmp_path / "src")
    os.utime(tmp_path / "src", ns=(1_400_000_000_000_000_000, 1_400_000_000_000_000_007))

    result = invoke(runner, ["copy", "-r", str(tmp_path / "src"), str(tmp_path / "out") + slash])

    assert result.exit_code == 0, result.stderr
    assert_same_tree(tmp_path / "src", tmp_path / "out")
    assert (tmp_path / "out" / "link").is_symlink()
    assert os.readlink(tmp_path / "out" / "link") == "top.bin"
    assert os.readlink(tmp_path / "out" / "dangling") == "does-not-exist"
    assert (tmp_path / "out" / "empty").is_dir()
    assert partials(tmp_path) == []
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []
    # cp -rp keeps directory times; the top one too, after the copy's own bookkeeping.
    assert (tmp_path / "out").stat().st_mtime_ns == (tmp_path / "src").stat().st_mtime_ns


def test_recursive_copy_into_existing_directory(runner: CliRunner, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    (tmp_path / "backup").mkdir()

    result = invoke(runner, ["copy", "-r", str(tmp_path / "src"), str(tmp_path / "backup")])

    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["src"]
    assert_same_tree(tmp_path / "src", tmp_path / "backup" / "src")


def test_a_tree_copy_leaves_folders_that_were_there_alone(
    runner: CliRunner, tmp_path: Path
) -> None:
    """As cp -r: copying ``src/.`` into a home directory must not give it src's mode."""
    src, home = tmp_path / "src", tmp_path / "home"
    (src / "sub").mkdir(parents=True)
    (src / "new").mkdir()
    write_random(src / "sub" / "f", 10)
    for folder, mode in ((src, 0o777), (src / "sub", 0o700), (src / "new", 0o710)):
        folder.chmod(mode)
        os.utime(folder, ns=(1_000_000_000, 1_000_000_000))
    (home / "sub").mkdir(parents=True)
    home.chmod(0o750)
    (home / "sub").chmod(0o755)

    result = invoke(runner, ["copy", "-r", f"{src}/.", str(home)])

    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o750
    assert stat.S_IMODE((home / "sub").stat().st_mode) == 0o755
    made = (home / "new").stat()  # a folder the copy made takes its source's
    assert (stat.S_IMODE(made.st_mode), made.st_mtime_ns) == (0o710, 1_000_000_000)


def test_a_new_folder_stays_private_until_its_files_are_in(tmp_path: Path) -> None:
    """A 0700 source folder is not readable by others while its files are copied in."""
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "secret").mkdir(parents=True, mode=0o700)
    write_random(src / "secret" / "key", 10)
    seen: list[int] = []

    class Look(NullObserver):
        def stream_started(self, stats: StreamStats) -> None:
            seen.append(stat.S_IMODE((out / "secret").stat().st_mode))

    api.copy(str(src), str(out), recursive=True, observer=Look())

    assert seen == [0o700]
    assert stat.S_IMODE((out / "secret").stat().st_mode) == 0o700


def test_folders_an_interrupted_copy_made_in_an_existing_one_are_not_left_private(
    tmp_path: Path,
) -> None:
    """The rerun does not know them as its own, so they keep the mode they were made with:
    their source's (with ours to write), not 0700 for good (a web root's folders 403)."""
    src, www = tmp_path / "src", tmp_path / "www"
    for name, mode in (("public", 0o755), ("group", 0o750)):
        (src / name).mkdir(parents=True)
        write_random(src / name / "page", 10)
        (src / name).chmod(mode)
    www.mkdir()

    class CtrlCAtTheSecondFile(NullObserver):
        started = 0

        def stream_started(self, stats: StreamStats) -> None:
            self.started += 1
            if self.started == 2:
                raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        api.copy(f"{src}/.", str(www), recursive=True, observer=CtrlCAtTheSecondFile())
    api.copy(f"{src}/.", str(www), recursive=True)

    assert stat.S_IMODE((www / "public").stat().st_mode) == 0o755
    assert stat.S_IMODE((www / "group").stat().st_mode) == 0o750


def test_a_folder_swapped_for_a_symlink_mid_copy_does_not_pass_on_its_mode(
    tmp_path: Path,
) -> None:
    """At the end the copy sets its folders' modes; through a symlink someone put at one's
    name, that chmod would land on the symlink's target (as root: any file)."""
    src, new = tmp_path / "src", tmp_path / "new"
    (src / "sub").mkdir(parents=True)
    write_random(src / "sub" / "f", 10)
    write_random(src / "z", 10)
    (src / "sub").chmod(0o755)
    victim = tmp_path / "victim"
    victim.write_bytes(b"secret")
    victim.chmod(0o600)

    class SwapAtTheLastFile(NullObserver):
        def stream_started(self, stats: StreamStats) -> None:
            if stats.name == "z":
                (new / "sub").rename(tmp_path / "moved")
                (new / "sub").symlink_to(victim)

    api.copy(str(src), str(new), recursive=True, jobs=1, observer=SwapAtTheLastFile())

    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_a_folder_made_a_file_mid_copy_fails_that_file_only(tmp_path: Path) -> None:
    """Its copy cannot be renamed into place: one error for it, the rest of the tree goes on
    (a raw NotADirectoryError used to stop the whole copy)."""
    src, new = tmp_path / "src", tmp_path / "new"
    (src / "sub").mkdir(parents=True)
    write_random(src / "sub" / "f", 10)
    data = write_random(src / "z", 10)

    class FileInTheWay(NullObserver):
        def stream_started(self, stats: StreamStats) -> None:
            if stats.name == "f":
                (new / "sub").rename(tmp_path / "moved")
                (new / "sub").write_bytes(b"in the way")

    report = api.copy(str(src), str(new), recursive=True, jobs=1, observer=FileInTheWay())

    assert len(report.errors) == 1
    assert "sub" in report.errors[0].message
    assert (new / "z").read_bytes() == data


def test_dot_source_copies_the_contents_into_an_existing_directory(
    runner: CliRunner, tmp_path: Path
) -> None:
    """``cp -r src/. backup`` puts what is in src into backup, not backup/src."""
    make_tree(tmp_path / "src")
    (tmp_path / "backup").mkdir()

    result = invoke(runner, ["copy", "-r", str(tmp_path / "src") + "/.", str(tmp_path / "backup")])

    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / "backup" / "src").exists()
    assert_same_tree(tmp_path / "src", tmp_path / "backup")


def test_recursive_copy_writes_sums_for_every_file(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    make_tree(Path("src"))

    result = invoke(runner, ["copy", "-r", "--sums", "SUMS", "src", "out"])

    assert result.exit_code == 0, result.stderr
    check = subprocess.run(["xxh128sum", "-c", "SUMS"], capture_output=True, check=False)
    assert check.returncode == 0, check
    checked = {line.split(": ")[0] for line in check.stdout.decode().splitlines()}
    files = {str(p) for p in Path("out").rglob("*") if p.is_file() and not p.is_symlink()}
    assert checked == files


# ---------------------------------------------------------------------------- sums and JSON


@pytest.mark.parametrize(("algo", "tool"), [(None, "xxh128sum"), ("sha256", "sha256sum")])
def test_sums_file_is_accepted_by_the_real_tool(
    runner: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    algo: str | None,
    tool: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    names = ["empty", "one", "with space.bin", "big"]
    for i, (name, size) in enumerate(zip(names, [0, 1, 32 * KIB, MIB + 1], strict=True)):
        write_random(Path(name), size, seed=i)
    Path("out").mkdir()
    algo_args = ["--algo", algo] if algo else []

    result = invoke(runner, ["copy", *algo_args, "--sums", "SUMS", *names, "out"])

    assert result.exit_code == 0, result.stderr
    lines = Path("SUMS").read_text().splitlines()
    assert len(lines) == len(names)
    check = subprocess.run([tool, "-c", "SUMS"], capture_output=True, check=False)
    assert check.returncode == 0, check
    assert check.stdout.decode().splitlines() == [f"out/{name}: OK" for name in names]
    for line, name in zip(lines, names, strict=True):
        data = Path(name).read_bytes()
        assert line == f"{reference_digest(data, algo or 'xxh128')}  out/{name}"


def test_json_summary_schema(runner: CliRunner, tmp_path: Path) -> None:
    sizes = {"a": 0, "b": 32 * KIB, "c": MIB + 1}
    for i, (name, size) in enumerate(sizes.items()):
        write_random(tmp_path / name, size, seed=i)
    out = tmp_path / "out"
    out.mkdir()

    result = invoke(runner, ["copy", "--json", *(str(tmp_path / n) for n in sizes), str(out)])

    assert result.exit_code == 0
    assert result.stderr == ""
    summary = json.loads(result.stdout)
    assert summary["version"] == 1
    assert summary["command"] == "copy"
    assert len(summary["files"]) == len(sizes)
    for entry, (name, size) in zip(summary["files"], sizes.items(), strict=True):
        assert entry["source"] == str(tmp_path / name)
        assert entry["dest"] == str(out / name)
        assert entry["bytes"] == size
        assert entry["algo"] == "xxh128"
        assert entry["digest"] == real_tool_digest("xxh128sum", out / name)
        assert entry["digest"] == xxh128_hex((tmp_path / name).read_bytes())
        assert isinstance(entry["seconds"], (int, float))
        assert entry["seconds"] >= 0
        assert isinstance(entry["throughput_bps"], int)
        assert entry["throughput_bps"] >= 0
        chunks = entry["chunk_sizes"]
        assert chunks
        assert all(isinstance(c, int) and 32 * KIB <= c <= MIB for c in chunks)
        assert chunks[0] == expected_first_chunk(size)
    totals = summary["totals"]
    assert totals["files"] == len(sizes)
    assert totals["skipped"] == 0
    assert totals["bytes"] == sum(sizes.values())
    assert totals["seconds"] >= 0
    assert totals["throughput_bps"] >= 0


def test_summary_line_counts_wall_time_when_files_run_side_by_side(tmp_path: Path) -> None:
    """Two paced files copied at once: per-file seconds add up to about twice the run."""
    for name in ("a", "b"):
        write_random(tmp_path / name, 2 * MIB, seed=len(name))
    (tmp_path / "out").mkdir()

    started = time.monotonic()
    result = run_openspec(["copy", "-j", "2", "-L", "4M", "a", "b", "out"], cwd=tmp_path)
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    match = re.search(r"copied 2 file\(s\), 4\.0 MiB in ([0-9.]+) s", result.stderr.decode())
    assert match, result.stderr
    assert float(match.group(1)) <= elapsed


def test_json_reports_skipped_files(runner: CliRunner, tmp_path: Path) -> None:
    write_random(tmp_path / "a", 10)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_bytes(b"keep")

    summary = copy_json(runner, "-n", str(tmp_path / "a"), str(tmp_path / "out"))

    assert summary["files"][0]["skipped"] is True
    assert summary["totals"]["files"] == 0
    assert summary["totals"]["skipped"] == 1
    assert (tmp_path / "out" / "a").read_bytes() == b"keep"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["copy", "--json", "{tmp}/missing", "{tmp}/out"], "cannot stat '{tmp}/missing'"),
        (["copy", "--json", "{tmp}/a", "{tmp}/a"], "are the same file"),
        (["resume", "--json", "0badcafe"], "no interrupted transfer with id 0badcafe"),
        (["copy", "--json", "--max-memory", "lots", "{tmp}/a", "{tmp}/b"], "'lots' is not a size"),
        (["copy", "--json", "{tmp}/a"], "missing destination file operand"),
        (["resume", "--json", "-L", "fast", "0badcafe"], "'fast' is not a size"),
    ],
)
def test_json_still_answers_when_the_command_is_refused(
    runner: CliRunner, tmp_path: Path, args: list[str], reason: str
) -> None:
    """A script reading stdout gets the object with the reason, not nothing."""
    write_random(tmp_path / "a", 10)

    result = invoke(runner, [a.format(tmp=tmp_path) for a in args])

    assert result.exit_code == 2
    summary = json.loads(result.stdout)
    assert summary["command"] == args[0]
    assert summary["files"] == []
    assert summary["totals"]["bytes"] == 0
    (error,) = summary["errors"]
    assert reason.format(tmp=tmp_path) in error
    assert result.stderr == f"openspec: {error}\n"


def test_names_that_are_not_utf8_are_printed_as_their_bytes(tmp_path: Path) -> None:
    """As cp and sha256sum print them, not as Python's '\\udcff' escapes."""
    name = os.fsdecode(b"bad\xffname")
    write_random(tmp_path / name, 2 * MIB)

    same = run_openspec(["copy", name, name], cwd=tmp_path)
    plain = run_openspec(["copy", "--progress", "plain", name, "out"], cwd=tmp_path)

    assert same.returncode == 2
    assert same.stderr == b"openspec: 'bad\xffname' and 'bad\xffname' are the same file\n"
    assert plain.returncode == 0
    assert b": bad\xffname (2.0 MiB)\n" in plain.stderr
    assert b"udc" not in same.stderr + plain.stderr


def test_json_names_that_are_not_utf8_give_back_their_bytes(tmp_path: Path) -> None:
    """As the README says: json.loads, then os.fsencode, names the file again."""
    name = os.fsdecode(b"bad\xffname")
    write_random(tmp_path / name, 2 * MIB)

    done = run_openspec(["copy", "--json", "--progress", "json", name, name + ".copy"],
                        cwd=tmp_path)  # fmt: skip

    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)["files"]
    assert os.fsencode(entry["source"]) == b"bad\xffname"
    assert (tmp_path / os.fsdecode(os.fsencode(entry["dest"]))).read_bytes() == (
        tmp_path / name
    ).read_bytes()
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert {os.fsencode(e["name"]) for e in events if "name" in e} == {b"bad\xffname"}


def test_long_destination_name_that_the_filesystem_allows(
    runner: CliRunner, tmp_path: Path
) -> None:
    """cp copies to any legal name (up to NAME_MAX); the partial's longer name must not fail."""
    src = tmp_path / "src"
    data = write_random(src, 1000)
    dest = tmp_path / ("n" * 250)

    result = invoke(runner, ["copy", str(src), str(dest)])

    assert result.exit_code == 0, result.stderr
    assert dest.read_bytes() == data
    assert partials(tmp_path) == []


# ---------------------------------------------------------------------------- refusals


def test_several_sources_to_a_non_directory_are_refused(runner: CliRunner, tmp_path: Path) -> None:
    write_random(tmp_path / "a", 10)
    write_random(tmp_path / "b", 10, seed=1)
    write_random(tmp_path / "target", 10, seed=2)
    before = snapshot(tmp_path)

    for target in ("target", "missing"):
        result = invoke(
            runner, ["copy", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / target)]
        )
        line = assert_refused(result, USAGE, tmp_path, before, target)
        assert "not a directory" in line


def test_directory_without_r_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", str(tmp_path / "src"), str(tmp_path / "out")])

    line = assert_refused(result, USAGE, tmp_path, before, "src")
    assert "-r" in line


@pytest.mark.parametrize("dest", ["src", "src/sub/inside", "src/sub"])
def test_copying_a_directory_into_itself_is_refused(
    runner: CliRunner, tmp_path: Path, dest: str
) -> None:
    make_tree(tmp_path / "src")
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", "-r", str(tmp_path / "src"), str(tmp_path / dest)])

    line = assert_refused(result, USAGE, tmp_path, before, str(tmp_path / "src"))
    assert "itself" in line


def test_a_tree_of_hard_links_to_the_source_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    """cp -al made ``links``; copying the source onto it would rewrite each file onto itself
    and split the links."""
    make_tree(tmp_path / "src")
    subprocess.run(["cp", "-al", str(tmp_path / "src"), str(tmp_path / "links")], check=True)
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", "-r", f"{tmp_path / 'src'}/.", str(tmp_path / "links")])

    assert "are the same file" in assert_refused(result, USAGE, tmp_path, before, "links")


@pytest.fixture
def bind_mount_of_src(tmp_path: Path) -> Iterator[Path]:
    """``bound``: the directory ``src`` again, through a bind mount (needs root)."""
    make_tree(tmp_path / "src")
    with mounted(tmp_path / "bound", "--bind", str(tmp_path / "src")) as bound:
        yield bound


def test_a_bind_mount_of_a_folder_inside_the_source_is_seen_through(
    runner: CliRunner, tmp_path: Path, bind_mount_of_src: Path
) -> None:
    """``bound`` is ``src``: mount a folder of it elsewhere and copy the tree below that."""
    src, sub = tmp_path / "src", tmp_path / "src" / "sub"
    with mounted(tmp_path / "inner", "--bind", str(sub)) as inner:
        before = snapshot(src)
        result = invoke(runner, ["copy", "-r", str(src), str(inner / "new")])

    assert result.exit_code == USAGE, result.stderr
    assert "into itself" in result.stderr
    assert snapshot(src) == before


@pytest.mark.parametrize("onto", ["into", "contents"])
def test_a_bind_mount_of_the_source_is_seen_through(
    runner: CliRunner, tmp_path: Path, bind_mount_of_src: Path, onto: str
) -> None:
    src = tmp_path / "src"
    before = snapshot(src)
    args = (
        [str(src), f"{bind_mount_of_src}/"]
        if onto == "into"
        else [f"{src}/.", str(bind_mount_of_src)]
    )

    result = invoke(runner, ["copy", "-r", *args])

    assert result.exit_code == USAGE, result.stderr
    assert "into itself" in result.stderr
    assert snapshot(src) == before


@pytest.mark.parametrize("how", ["same path", "hard link", "symlink as dest", "symlink as src"])
def test_same_file_is_refused_and_untouched(runner: CliRunner, tmp_path: Path, how: str) -> None:
    data = write_random(tmp_path / "data", MIB + 1)
    src, dest = tmp_path / "data", tmp_path / "data"
    if how == "hard link":
        dest = tmp_path / "hard"
        os.link(src, dest)
    elif how == "symlink as dest":
        dest = tmp_path / "sym"
        dest.symlink_to("data")
    elif how == "symlink as src":
        src = tmp_path / "sym"
        src.symlink_to("data")
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", str(src), str(dest)])

    line = assert_refused(result, USAGE, tmp_path, before, str(src), str(dest))
    assert "same file" in line
    assert (tmp_path / "data").read_bytes() == data


def test_same_file_via_its_own_directory_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    data = write_random(tmp_path / "dir" / "f", 100)
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", str(tmp_path / "dir" / "f"), str(tmp_path / "dir")])

    assert "same file" in assert_refused(result, USAGE, tmp_path, before, "f")
    assert (tmp_path / "dir" / "f").read_bytes() == data


def test_missing_source_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", str(tmp_path / "nope"), str(tmp_path / "dest")])

    line = assert_refused(result, USAGE, tmp_path, before, "nope")
    assert "No such file or directory" in line


def test_missing_source_among_several_copies_nothing(runner: CliRunner, tmp_path: Path) -> None:
    write_random(tmp_path / "a", MIB + 1)
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)

    result = invoke(
        runner, ["copy", str(tmp_path / "a"), str(tmp_path / "nope"), str(tmp_path / "out")]
    )

    assert_refused(result, USAGE, tmp_path, before, "nope")


def test_fifo_source_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    before = snapshot(tmp_path)

    single = run_openspec(["copy", "fifo", "out"], cwd=tmp_path, timeout=15)

    assert "FIFO" in assert_refused(single, USAGE, tmp_path, before, "fifo")


def test_special_files_in_a_tree_are_made_anew_like_cp(tmp_path: Path) -> None:
    """One FIFO or socket in a home directory refused the whole tree; cp -r makes them anew
    (and devices, as root), without reading them."""
    tree = tmp_path / "tree"
    tree.mkdir()
    data = write_random(tree / "file", 100)
    os.mkfifo(tree / "fifo", 0o640)
    os.mknod(tree / "socket", 0o600 | stat.S_IFSOCK)
    if os.geteuid() == 0:
        os.mknod(tree / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.utime(tree / "fifo", ns=(1_000_000_000, 1_000_000_000))

    done = run_openspec(["copy", "-r", "tree", "copy"], cwd=tmp_path, timeout=15)

    assert done.returncode == 0, done.stderr
    copy = tmp_path / "copy"
    assert (copy / "file").read_bytes() == data
    fifo = (copy / "fifo").lstat()
    assert stat.S_ISFIFO(fifo.st_mode)
    assert (stat.S_IMODE(fifo.st_mode), fifo.st_mtime_ns) == (0o640, 1_000_000_000)
    assert stat.S_ISSOCK((copy / "socket").lstat().st_mode)
    if os.geteuid() == 0:
        null = (copy / "null").lstat()
        assert stat.S_ISCHR(null.st_mode)
        assert null.st_rdev == os.makedev(1, 3)


def test_copying_again_keeps_one_sum_line_per_file(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file copied again has a new digest: its older line would fail ``xxh128sum -c``.
    Other lines stay, also another tool's for the same file; the sum file is edited where it
    is (a symlink to it stays one); a name with a form feed is one line, not two."""
    monkeypatch.chdir(tmp_path)
    names = ["a", "b", "form\x0cfeed"]
    for seed, name in enumerate(names):
        write_random(Path(name), 100, seed=seed)
    Path("out").mkdir()
    theirs = "ab" * 32 + "  out/a"  # a sha256sum line for the same copy
    Path("REAL").write_text(f"0123456789abcdef0123456789abcdef  elsewhere\n{theirs}\n")
    Path("SUMS").symlink_to("REAL")
    for seed in (3, 4):
        result = invoke(runner, ["copy", "--sums", "SUMS", *names, "out"])
        assert result.exit_code == 0, result.stderr
        write_random(Path("a"), 100, seed=seed)

    assert Path("SUMS").is_symlink()
    lines = Path("REAL").read_text().split("\n")[:-1]
    assert lines[:2] == ["0123456789abcdef0123456789abcdef  elsewhere", theirs]
    ours = lines[2:]
    assert sorted(line.split("  ")[1] for line in ours) == [f"out/{n}" for n in sorted(names)]
    check = subprocess.run(["xxh128sum", "-c", "-"], input="\n".join(ours).encode(),
                           capture_output=True, check=False)  # fmt: skip
    assert check.returncode == 0, check


@pytest.mark.parametrize("where", ["missing/SUMS", "."])
def test_unwritable_sums_file_is_refused_before_copying(
    runner: CliRunner, tmp_path: Path, where: str
) -> None:
    write_random(tmp_path / "a", 10)
    before = snapshot(tmp_path)

    result = invoke(
        runner, ["copy", "--sums", str(tmp_path / where), str(tmp_path / "a"), str(tmp_path / "b")]
    )

    line = assert_refused(result, USAGE, tmp_path, before)
    assert "sums file" in line


def test_destination_parent_missing_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    write_random(tmp_path / "a", 10)
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", str(tmp_path / "a"), str(tmp_path / "no" / "b")])

    assert_refused(result, USAGE, tmp_path, before, "no/b")


def test_recursive_destination_parent_missing_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    """Like ``cp -r src no/out``: the missing parent is not created, nothing is copied."""
    make_tree(tmp_path / "src")
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", "-r", str(tmp_path / "src"), str(tmp_path / "no" / "out")])

    assert_refused(result, USAGE, tmp_path, before, "no/out")


@pytest.mark.parametrize("dest", ["file/b", "file/"])
def test_a_file_where_a_directory_is_needed_is_refused(
    runner: CliRunner, tmp_path: Path, dest: str
) -> None:
    write_random(tmp_path / "a", 10)
    write_random(tmp_path / "file", 10, seed=1)
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", str(tmp_path / "a"), str(tmp_path) + "/" + dest])

    line = assert_refused(result, USAGE, tmp_path, before, dest)
    assert "Not a directory" in line


def test_a_directory_in_the_way_of_a_file_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    write_random(tmp_path / "a", 10)
    (tmp_path / "out" / "a").mkdir(parents=True)
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", str(tmp_path / "a"), str(tmp_path / "out")])

    assert "directory" in assert_refused(result, USAGE, tmp_path, before, "out/a")


def make_special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    else:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the null device, as /dev/null


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("inside_tree", [False, True])
def test_a_device_or_fifo_destination_is_never_replaced(
    runner: CliRunner, tmp_path: Path, kind: str, inside_tree: bool
) -> None:
    """cp writes into these; a copy renamed over one would, as root, turn /dev/null into a file."""
    (tmp_path / "src").mkdir()
    write_random(tmp_path / "src" / "a", 10)
    (tmp_path / "out" / "src").mkdir(parents=True)
    special = tmp_path / "out" / "src" / "a"
    make_special(special, kind)
    before = snapshot(tmp_path)
    args = (
        ["-r", str(tmp_path / "src"), str(tmp_path / "out")]
        if inside_tree
        else [
            str(tmp_path / "src" / "a"),
            str(special),
        ]
    )

    result = invoke(runner, ["copy", *args])

    line = assert_refused(result, USAGE, tmp_path, before, "out/src/a")
    assert "not a regular file" in line
    assert not special.is_file()


@pytest.mark.parametrize("inside_tree", [False, True])
def test_no_clobber_skips_a_fifo_destination_like_cp(
    runner: CliRunner, tmp_path: Path, inside_tree: bool
) -> None:
    (tmp_path / "src").mkdir()
    write_random(tmp_path / "src" / "a", 10)
    data_b = write_random(tmp_path / "src" / "b", 10, seed=1)
    (tmp_path / "out" / "src").mkdir(parents=True)
    special = tmp_path / "out" / "src" / "a"
    make_special(special, "fifo")
    args = (
        ["-r", str(tmp_path / "src"), str(tmp_path / "out")]
        if inside_tree
        else [str(tmp_path / "src" / "a"), str(special)]
    )

    result = invoke(runner, ["copy", "-n", *args])

    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(special.lstat().st_mode)
    if inside_tree:
        assert (tmp_path / "out" / "src" / "b").read_bytes() == data_b


def test_a_file_in_the_way_of_a_directory_of_the_tree_is_refused(
    runner: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "src" / "sub").mkdir(parents=True)
    write_random(tmp_path / "src" / "sub" / "a", 10)
    (tmp_path / "out" / "src").mkdir(parents=True)
    write_random(tmp_path / "out" / "src" / "sub", 10, seed=1)
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", "-r", str(tmp_path / "src"), str(tmp_path / "out")])

    line = assert_refused(result, USAGE, tmp_path, before, "out/src/sub", "src/sub")
    assert "non-directory" in line


def test_a_tree_onto_a_file_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    write_random(tmp_path / "file", 10)
    before = snapshot(tmp_path)

    result = invoke(runner, ["copy", "-r", str(tmp_path / "src"), str(tmp_path / "file")])

    assert_refused(result, USAGE, tmp_path, before, "file", "src")


def test_unreadable_source_is_refused(
    tmp_path: Path, permission_checked: Callable[[], object] | None
) -> None:
    write_random(tmp_path / "secret", 100)
    (tmp_path / "secret").chmod(0)
    before = snapshot(tmp_path)

    result = run_openspec(["copy", "secret", "out"], cwd=tmp_path, preexec_fn=permission_checked)

    assert "Permission denied" in assert_refused(result, USAGE, tmp_path, before, "secret")


def test_unreadable_file_inside_a_tree_is_refused(
    tmp_path: Path, permission_checked: Callable[[], object] | None
) -> None:
    make_tree(tmp_path / "src")
    (tmp_path / "src" / "sub" / "deep" / "big.bin").chmod(0)
    before = snapshot(tmp_path)

    result = run_openspec(["copy", "-r", "src", "out"], cwd=tmp_path, preexec_fn=permission_checked)

    assert_refused(result, USAGE, tmp_path, before, "big.bin")


@pytest.mark.parametrize("inside_tree", [False, True])
def test_a_write_protected_destination_is_not_replaced(
    tmp_path: Path, permission_checked: Callable[[], object] | None, inside_tree: bool
) -> None:
    """cp opens the file it overwrites and is refused; a rename needs only the folder."""
    (tmp_path / "src").mkdir()
    write_random(tmp_path / "src" / "a", 10)
    (tmp_path / "out" / "src").mkdir(parents=True)
    protected = tmp_path / "out" / "src" / "a"
    protected.write_bytes(b"keep me")
    protected.chmod(0o444)
    before = snapshot(tmp_path)
    args = ["-r", "src", "out"] if inside_tree else ["src/a", "out/src/a"]

    result = run_openspec(["copy", *args], cwd=tmp_path, preexec_fn=permission_checked)

    line = assert_refused(result, USAGE, tmp_path, before, "out/src/a")
    assert "cannot overwrite" in line
    assert "Permission denied" in line


ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


@ROOT_ONLY
def test_a_setuid_file_of_another_user_is_not_made_setuid_for_us(
    runner: CliRunner, tmp_path: Path
) -> None:
    """The copy belongs to whoever copies; a set-id bit would now run as them (cp -p's rule)."""
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    for path in (theirs, ours):
        write_random(path, 100)
    os.chown(theirs, 65534, 65534)
    for path in (theirs, ours):
        path.chmod(0o6755)

    for path in (theirs, ours):
        result = invoke(runner, ["copy", str(path), str(tmp_path / f"{path.name}.copy")])
        assert result.exit_code == 0, result.stderr

    theirs_copy = (tmp_path / "theirs.copy").stat()
    assert (theirs_copy.st_uid, stat.S_IMODE(theirs_copy.st_mode)) == (0, 0o755)
    assert stat.S_IMODE((tmp_path / "ours.copy").stat().st_mode) == 0o6755


@ROOT_ONLY
def test_a_file_made_at_the_name_during_the_copy_does_not_get_it(tmp_path: Path) -> None:
    """Someone who may write the folder creates the destination while root copies a secret:
    the copy must stay root's, not become theirs."""
    write_random(tmp_path / "secret", 3 * MIB)
    (tmp_path / "secret").chmod(0o600)
    proc = start_openspec(["copy", "--limit-rate", "4M", "secret", "backup"], cwd=tmp_path)
    try:
        wait_for(lambda: bool(partials(tmp_path)), what="the copy to start")
        planted = tmp_path / "backup"
        planted.write_bytes(b"mine")
        os.chown(planted, 65534, 65534)
        _, err = proc.communicate(timeout=30)
    finally:
        kill_quietly(proc)

    assert proc.returncode == 0, err
    st = (tmp_path / "backup").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)


@ROOT_ONLY
def test_a_replaced_file_keeps_its_owner(runner: CliRunner, tmp_path: Path) -> None:
    """cp writes into the file it overwrites, so its owner stays: a service's file replaced by
    root must stay the service's."""
    data = write_random(tmp_path / "new", 100)
    (tmp_path / "new").chmod(0o640)
    served = tmp_path / "served.conf"
    served.write_bytes(b"old")
    os.chown(served, 65534, 65534)

    result = invoke(runner, ["copy", str(tmp_path / "new"), str(served)])

    assert result.exit_code == 0, result.stderr
    st = served.stat()
    assert served.read_bytes() == data
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o640)


def test_another_users_file_we_may_write_is_not_taken_over(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group-writable, not ours: cp writes into it; a rename would give it to us, with the
    source's mode, and its owner could lose it. (Not being root is what is faked here: the
    tests' interpreter may not be reachable for another user.)"""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    write_random(tmp_path / "src", 10)
    theirs = tmp_path / "theirs"
    theirs.write_bytes(b"theirs")
    os.chown(theirs, 65534, 65534)
    theirs.chmod(0o666)
    before = snapshot(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    result = invoke(runner, ["copy", str(tmp_path / "src"), str(theirs)])

    line = assert_refused(result, USAGE, tmp_path, before, "theirs")
    assert "not replacing" in line
    assert "openspec cat" in line


def test_a_file_in_a_read_only_folder_is_refused_with_the_real_reason(
    tmp_path: Path, permission_checked: Callable[[], object] | None
) -> None:
    """The file exists and may be written; what cannot be made is the copy beside it. With -n
    it is skipped, as nothing is written."""
    write_random(tmp_path / "a", 10)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "a").write_bytes(b"writable")
    (tmp_path / "ro" / "a").chmod(0o666)
    (tmp_path / "ro").chmod(0o555)
    before = snapshot(tmp_path)

    result = run_openspec(["copy", "a", "ro/a"], cwd=tmp_path, preexec_fn=permission_checked)
    skipped = run_openspec(["copy", "-n", "a", "ro/a"], cwd=tmp_path, preexec_fn=permission_checked)

    line = assert_refused(result, USAGE, tmp_path, before, "ro/a")
    assert "its folder is not writable (Permission denied)" in line
    assert "openspec cat" in line
    assert skipped.returncode == 0, skipped.stderr
    assert snapshot(tmp_path) == before


def test_two_sources_for_one_name_are_refused_and_one_named_twice_is_copied_once(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cp: "will not overwrite just-created"; with -j the winner was a matter of chance."""
    monkeypatch.chdir(tmp_path)
    for folder in ("A", "B", "out"):
        Path(folder).mkdir()
    data = write_random(Path("A") / "x", 10)
    write_random(Path("B") / "x", 10, seed=1)
    before = snapshot(tmp_path)

    clash = invoke(runner, ["copy", "-j", "4", "A/x", "B/x", "out"])
    assert "will not overwrite just-created 'out/x' with 'B/x'" in assert_refused(
        clash, USAGE, tmp_path, before, "B/x"
    )

    twice = copy_json(runner, "A/x", "./A/x", "A/x", "out")

    assert len(twice["files"]) == 1
    assert (tmp_path / "out" / "x").read_bytes() == data


def test_several_small_files_need_no_writable_state_dir(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    permission_checked: Callable[[], object] | None,
) -> None:
    """Their journal only spares a rerun some copying; without it, they are still copied."""
    (tmp_path / "ro").mkdir(mode=0o555)
    monkeypatch.setenv("OPENSPEC_STATE_DIR", str(tmp_path / "ro" / "state"))
    write_random(tmp_path / "a", 10)
    write_random(tmp_path / "b", 10, seed=1)
    (tmp_path / "out").mkdir()

    result = run_openspec(["copy", "a", "b", "out"], cwd=tmp_path, preexec_fn=permission_checked)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "b").read_bytes() == (tmp_path / "b").read_bytes()


def test_a_name_with_a_newline_stays_on_one_error_line(tmp_path: Path) -> None:
    """Control characters in a name are escaped: the message is one line, and no terminal
    escape sequence reaches the screen."""
    result = run_openspec(["copy", "no\nsuch\x1b[31m", "out"], cwd=tmp_path)

    assert result.returncode == USAGE
    assert result.stderr == (
        b"openspec: cannot stat 'no\\nsuch\\x1b[31m': No such file or directory\n"
    )


def test_unwritable_destination_directory_is_refused(
    tmp_path: Path, permission_checked: Callable[[], object] | None
) -> None:
    write_random(tmp_path / "a", MIB + 1)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    before = snapshot(tmp_path)

    result = run_openspec(["copy", "a", "ro"], cwd=tmp_path, preexec_fn=permission_checked)

    assert "Permission denied" in assert_refused(result, USAGE, tmp_path, before, "ro")


def test_destination_in_a_directory_we_may_not_search_is_refused(
    tmp_path: Path, permission_checked: Callable[[], object] | None
) -> None:
    """Checked up front like other permissions: exit 2, not an I/O error."""
    write_random(tmp_path / "a", 100)
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0)
    before = snapshot(tmp_path)
    try:
        result = run_openspec(["copy", "a", "locked/x"], cwd=tmp_path,
                              preexec_fn=permission_checked)  # fmt: skip
        line = assert_refused(result, USAGE, tmp_path, before, "locked/x")
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert line == "openspec: cannot stat 'locked/x': Permission denied"


@pytest.mark.parametrize("tree", [False, True])
def test_a_state_directory_that_cannot_be_written_is_refused_up_front(
    tmp_path: Path, permission_checked: Callable[[], object] | None, tree: bool
) -> None:
    """A service user with no writable state dir: exit 2, nothing made, and what to do (a tree
    needs its journal there even for small files)."""
    (tmp_path / "src").mkdir()
    write_random(tmp_path / "src" / "a", 2 * MIB if not tree else 10)
    (tmp_path / "state" / "transfers").mkdir(parents=True)
    (tmp_path / "state" / "transfers").chmod(0o555)
    (tmp_path / "into").mkdir()
    before = snapshot(tmp_path)
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(tmp_path / "state")}
    args = ["-r", "src", "into/"] if tree else ["src/a", "b"]

    result = subprocess.run([*OPENSPEC, "copy", *args], cwd=tmp_path, env=env,
                            capture_output=True, check=False,
                            preexec_fn=permission_checked)  # fmt: skip

    line = assert_refused(result, USAGE, tmp_path, before, "state/transfers")
    assert line == (
        f"openspec: cannot write checkpoints in '{tmp_path / 'state' / 'transfers'}': "
        "Permission denied (OPENSPEC_STATE_DIR chooses another state directory)"
    )


# ---------------------------------------------------------------------------- while a copy runs


def test_final_name_never_exists_while_copy_is_in_progress(
    tmp_path: Path, background: list[subprocess.Popen[bytes]]
) -> None:
    data = write_random(tmp_path / "src", 3 * MIB)
    dest = tmp_path / "dest"
    proc = start_openspec(["copy", "--limit-rate", "2M", "src", "dest"], cwd=tmp_path)
    background.append(proc)

    seen_partial_without_dest = False
    while proc.poll() is None:
        dest_exists = dest.exists()  # first the final name, then the partials: see below
        parts = partials(tmp_path)
        if dest_exists:
            # The rename had happened when we looked, so the partial is gone and dest complete.
            assert parts == []
            assert dest.read_bytes() == data
        elif parts:
            seen_partial_without_dest = True
            assert len(parts) == 1
            assert parts[0].parent == tmp_path
            assert parts[0].name.startswith(".dest.")
        time.sleep(0.02)

    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else None
    assert seen_partial_without_dest
    assert dest.read_bytes() == data
    assert partials(tmp_path) == []


def test_no_clobber_keeps_a_file_that_appears_while_copying(
    tmp_path: Path, background: list[subprocess.Popen[bytes]]
) -> None:
    """cp -n never replaces a file: nor may we, if one takes the name before our rename."""
    write_random(tmp_path / "src", 3 * MIB)
    proc = start_openspec(["copy", "-n", "--limit-rate", "4M", "src", "dest"], cwd=tmp_path)
    background.append(proc)
    wait_for(lambda: partials(tmp_path) != [], what="the partial file")
    (tmp_path / "dest").write_bytes(b"precious")

    _, err = proc.communicate(timeout=20)

    assert proc.returncode == 0, err
    assert b"skipped 'dest' (exists)" in err
    assert (tmp_path / "dest").read_bytes() == b"precious"
    assert partials(tmp_path) == []
    assert run_openspec(["resume"], cwd=tmp_path).stdout == b"no interrupted transfers\n"


@pytest.mark.parametrize("with_renameat2", [True, False])
def test_rename_no_replace_never_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_renameat2: bool
) -> None:
    if not with_renameat2:  # the hard-link way, for kernels and filesystems without it
        monkeypatch.setattr(transfer, "libc_call", lambda name: None)
    (tmp_path / "a").write_bytes(b"new")
    (tmp_path / "taken").write_bytes(b"old")

    assert transfer.rename_no_replace(str(tmp_path / "a"), str(tmp_path / "taken")) is False
    assert (tmp_path / "taken").read_bytes() == b"old"
    assert transfer.rename_no_replace(str(tmp_path / "a"), str(tmp_path / "free")) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["free", "taken"]
    assert (tmp_path / "free").read_bytes() == b"new"


def test_a_failed_final_rename_keeps_the_whole_copy_for_resume(
    tmp_path: Path, background: list[subprocess.Popen[bytes]]
) -> None:
    """A directory made at the name meanwhile: the error names the destination, and resume
    renames the finished copy without copying it again."""
    data = write_random(tmp_path / "src", 3 * MIB)
    proc = start_openspec(["copy", "--limit-rate", "4M", "src", "dest"], cwd=tmp_path)
    background.append(proc)
    wait_for(lambda: partials(tmp_path) != [], what="the partial file")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "in-the-way").write_bytes(b"x")

    _, err = proc.communicate(timeout=20)

    assert proc.returncode == 3
    (line,) = err.decode().splitlines()[1:]
    tid = re.search(r"openspec resume (\w+)$", line)
    assert tid is not None, line
    assert "/dest': cannot rename the finished copy into place: Is a directory" in line
    assert len(partials(tmp_path)) == 1
    (tmp_path / "dest" / "in-the-way").unlink()
    (tmp_path / "dest").rmdir()
    done = run_openspec(["resume", "--json", tid.group(1)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"][0]["resumed_from"] == len(data)
    assert (tmp_path / "dest").read_bytes() == data
    assert partials(tmp_path) == []


def chattr(flag: str, path: Path) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def _steady_sysfs_attribute() -> Path | None:
    """A readable file in /sys whose content is shorter than its length and does not change."""
    for path in sorted(Path("/sys/kernel/mm").rglob("*")):
        try:
            first = path.read_bytes()
            if 0 < len(first) < path.stat().st_size and path.read_bytes() == first:
                return path
        except OSError:
            continue
    return None


def test_a_sysfs_file_is_copied_as_read(runner: CliRunner, tmp_path: Path) -> None:
    """Its length is a page whatever it holds; cp copies what it reads."""
    src = _steady_sysfs_attribute()
    if src is None:
        pytest.skip("no readable sysfs attribute on this machine")

    result = invoke(runner, ["copy", str(src), str(tmp_path / "copy")])

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "copy").read_bytes() == src.read_bytes()


def test_an_immutable_destination_is_refused_before_the_copy(tmp_path: Path) -> None:
    """As cp: a file nobody may write is not replaced, with the reason the system gives."""
    write_random(tmp_path / "src", 10)
    (tmp_path / "dest").write_bytes(b"old")
    if not chattr("+i", tmp_path / "dest"):
        pytest.skip("chattr +i is not possible here (not root, or the filesystem has no flags)")
    try:
        before = snapshot(tmp_path)
        result = run_openspec(["copy", "src", "dest"], cwd=tmp_path)
        line = assert_refused(result, USAGE, tmp_path, before, "dest")
    finally:
        chattr("-i", tmp_path / "dest")
    assert "Operation not permitted" in line


def test_a_destination_made_immutable_meanwhile_is_replaced_by_resume_once_it_is_not(
    tmp_path: Path,
) -> None:
    """The failed rename's advice works: chattr -i moves the file's ctime, which is no write."""
    data = write_random(tmp_path / "src", 3 * MIB)
    (tmp_path / "dest").write_bytes(b"old")
    proc = start_openspec(["copy", "--limit-rate", "4M", "src", "dest"], cwd=tmp_path)
    try:
        wait_for(lambda: bool(partials(tmp_path)), what="the copy to start")
        if not chattr("+i", tmp_path / "dest"):
            pytest.skip("chattr +i is not possible here (not root, or the filesystem has no flags)")
        _, err = proc.communicate(timeout=30)
    finally:
        kill_quietly(proc)
        chattr("-i", tmp_path / "dest")
    tid = re.search(r"then run: openspec resume (\w+)$", err.decode().strip())
    assert proc.returncode == IO_ERROR
    assert tid is not None, err

    done = run_openspec(["resume", "--json", tid.group(1)], cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"][0]["resumed_from"] == len(data)
    assert (tmp_path / "dest").read_bytes() == data


def test_limit_rate_paces_the_copy(runner: CliRunner, tmp_path: Path) -> None:
    data = write_random(tmp_path / "src", 2 * MIB)

    started = time.monotonic()
    result = invoke(
        runner, ["copy", "--limit-rate", "1M", str(tmp_path / "src"), str(tmp_path / "dest")]
    )
    elapsed = time.monotonic() - started

    assert result.exit_code == 0, result.stderr
    assert elapsed >= 1.5
    assert (tmp_path / "dest").read_bytes() == data


@pytest.mark.parametrize(
    ("size", "grown_by"),
    [(3 * MIB, 10), (6 * MIB, 2 * MIB)],  # the second grows past a checkpoint's reach: it crashed
)
def test_source_that_changes_while_copied_is_refused(
    tmp_path: Path, background: list[subprocess.Popen[bytes]], size: int, grown_by: int
) -> None:
    src = tmp_path / "src"
    write_random(src, size)
    proc = start_openspec(["copy", "--limit-rate", "2M", "src", "dest"], cwd=tmp_path)
    background.append(proc)
    wait_for(
        lambda: partial_bytes(tmp_path) > 0 or proc.poll() is not None,
        what="the copy to start writing",
    )
    with src.open("ab") as fh:
        fh.write(random_bytes(grown_by, seed=99))

    _, err = proc.communicate(timeout=20)

    assert proc.returncode == IO_ERROR, err
    line = assert_one_error_line(err.decode(), "src", after_start=True)
    assert "changed" in line
    assert not (tmp_path / "dest").exists()
    assert partials(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc filesystem here")
def test_pseudo_filesystem_target_is_not_reported_as_full(
    runner: CliRunner, tmp_path: Path
) -> None:
    """/proc reports no blocks at all; that must not read as 'No space left on device'."""
    write_random(tmp_path / "a", 2 * 1024 * 1024)
    result = invoke(runner, ["copy", str(tmp_path / "a"), "/proc/openspec-test"])
    assert result.exit_code != 0
    assert "No space left" not in result.stderr
    assert "/proc/openspec-test" in result.stderr


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="no procfs on this machine")
def test_a_pseudo_file_that_reports_size_0_is_copied_like_cp(
    runner: CliRunner, tmp_path: Path
) -> None:
    """/proc and /sys files stat as empty yet have content; cp copies what it reads."""
    result = invoke(runner, ["copy", "/proc/cpuinfo", str(tmp_path / "cpuinfo")])

    assert result.exit_code == 0, result.stderr
    copied = (tmp_path / "cpuinfo").read_bytes()
    assert copied
    assert copied == Path("/proc/cpuinfo").read_bytes()


def make_sparse(path: Path, size: int, data_at: dict[int, int]) -> bytes:
    """A file of ``size`` bytes that is a hole except random data at the given offsets."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset, length in data_at.items():
            fh.seek(offset)
            fh.write(random_bytes(length, seed=offset))
    if path.stat().st_blocks * 512 >= size:
        pytest.skip("this filesystem does not keep holes")
    return path.read_bytes()


def test_a_sparse_source_gives_a_sparse_copy_like_cp(runner: CliRunner, tmp_path: Path) -> None:
    """A 64 MiB disk image with 3 MiB of data must not take 64 MiB at the destination."""
    data = make_sparse(
        tmp_path / "image", 64 * MIB, {10 * MIB: 2 * MIB, 40 * MIB + 5: MIB}
    )  # ends in a hole

    result = copy_json(runner, str(tmp_path / "image"), str(tmp_path / "copy"))

    copy = tmp_path / "copy"
    assert copy.read_bytes() == data
    assert result["files"][0]["digest"] == xxhash.xxh3_128(data).hexdigest()
    assert copy.stat().st_size == 64 * MIB
    assert copy.stat().st_blocks * 512 <= 6 * MIB


def test_a_sparse_image_with_a_little_data_in_every_mib_stays_small(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Every 1 MiB chunk holds 4 KiB of data: only the data is written (cp: the same)."""
    data = make_sparse(tmp_path / "image", 64 * MIB, {i * MIB + 100: 4 * KIB for i in range(64)})
    held = (tmp_path / "image").stat().st_blocks * 512

    result = copy_json(runner, str(tmp_path / "image"), str(tmp_path / "copy"))

    copy = tmp_path / "copy"
    assert copy.read_bytes() == data
    assert result["files"][0]["digest"] == xxhash.xxh3_128(data).hexdigest()
    assert copy.stat().st_blocks * 512 <= held + 64 * KIB


@pytest.mark.parametrize("spelled", ["link", "link/"])
def test_recursive_copy_of_a_symlink_copies_the_link_like_cp(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelled: str
) -> None:
    """cp -r implies -P: the symlink itself; ``link/`` names the directory behind it."""
    monkeypatch.chdir(tmp_path)
    Path("dir").mkdir()
    data = write_random(Path("dir") / "f", 10)
    Path("link").symlink_to("dir")

    result = invoke(runner, ["copy", "-r", spelled, "copy"])

    assert result.exit_code == 0, result.stderr
    copy = Path("copy")
    if spelled == "link":
        assert copy.is_symlink()
        assert os.readlink(copy) == "dir"
    else:
        assert not copy.is_symlink()
        assert (copy / "f").read_bytes() == data


def test_destination_symlink_is_written_through_like_cp(runner: CliRunner, tmp_path: Path) -> None:
    data = write_random(tmp_path / "a", 4096)
    (tmp_path / "real").write_bytes(b"old")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = invoke(runner, ["copy", str(tmp_path / "a"), str(tmp_path / "link")])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "real").read_bytes() == data


def test_dangling_destination_symlink_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    write_random(tmp_path / "a", 4096)
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    result = invoke(runner, ["copy", str(tmp_path / "a"), str(tmp_path / "link")])
    assert result.exit_code == 2
    assert "dangling symlink" in result.stderr
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("start", [b"x", b""], ids=["1 byte", "empty"])
def test_a_small_source_that_grows_while_read_is_refused_at_once(
    tmp_path: Path, start: bytes
) -> None:
    """A file appended to after the copy looked at it: the copy must stop as soon as it reads
    past the size it started from, not read on to the end (it read a byte per call, for as long
    as a writer kept appending). An empty file too: only /proc and /sys say 0 and mean more."""
    src = tmp_path / "grows"
    src.write_bytes(start)
    started = transfer.start(str(src), str(tmp_path / "copy"), CopyOptions(), NullObserver())
    with open(src, "ab") as writer:
        writer.write(b"y" * (8 << 20))

    with pytest.raises(SourceChangedError, match="changed while it was being copied"):
        started.run()

    assert started.stats.done <= 64 * KIB  # stopped at its first read past the end, not at 8 MiB
    assert not (tmp_path / "copy").exists()
    assert partials(tmp_path) == []


@pytest.mark.parametrize("where", ["locking the partial", "telling the observer"])
def test_a_ctrl_c_between_making_the_partial_and_copying_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A SIGINT while the partial was locked, or while the panel was told of the stream, left
    a small file's partial that no checkpoint names and no rerun removes. (The signal's exact
    moment cannot be arranged from outside: the step it lands in raises as its handler would.)"""
    write_random(tmp_path / "small", 5000)

    def ctrl_c(*_: object) -> bool:
        raise KeyboardInterrupt

    class Watcher(NullObserver):
        def stream_started(self, stats: StreamStats) -> None:
            raise KeyboardInterrupt

    observer: NullObserver = NullObserver()
    if where == "locking the partial":
        monkeypatch.setattr(checkpoint, "try_lock", ctrl_c)
    else:
        observer = Watcher()
    with pytest.raises((KeyboardInterrupt, Interrupted)):
        api.copy(str(tmp_path / "small"), str(tmp_path / "out"), observer=observer)

    assert partials(tmp_path) == []
    assert not (tmp_path / "out").exists()
