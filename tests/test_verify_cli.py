"""Behaviour of ``openspec verify`` (digests, ``-c``, ``--against``) and CLI basics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    KIB,
    MIB,
    OPENSPEC,
    assert_one_error_line,
    invoke,
    kill_quietly,
    peak_rss_kib,
    random_bytes,
    reference_digest,
    run_openspec,
    write_random,
)
from typer.main import get_command
from typer.testing import CliRunner

from openspec_cli import __version__, hashing
from openspec_cli.cli import app
from openspec_cli.hashing import ALGORITHMS

MISMATCH = 1
USAGE = 2

FILES = {
    "empty": 0,
    "one": 1,
    "chunk": 32 * KIB,
    "with space": 32 * KIB + 1,
    "trigger": MIB,
    "above": MIB + 1,
}

#: The real tools and the algorithm whose lines they print.
TOOLS = {
    "xxh128sum": "xxh128",
    "sha256sum": "sha256",
    "xxh64sum": "xxh64",
    "xxh32sum": "xxh32",
    "md5sum": "md5",
    "sha1sum": "sha1",
    "sha224sum": "sha224",
    "sha384sum": "sha384",
    "sha512sum": "sha512",
    "b2sum": "blake2b",
}
REQUIRED_TOOLS = {"xxh128sum", "sha256sum"}


def make_files(root: Path) -> dict[str, bytes]:
    return {
        name: write_random(root / name, size, seed=i)
        for i, (name, size) in enumerate(FILES.items())
    }


def tool_or_skip(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if tool in REQUIRED_TOOLS:
            pytest.fail(f"{tool} is required for these tests")
        pytest.skip(f"{tool} is not installed")
    return path


def run_tool(tool: str, args: list[str], cwd: Path, stdin: bytes = b"") -> bytes:
    return subprocess.run(
        [tool_or_skip(tool), *args], cwd=cwd, input=stdin, capture_output=True, check=True
    ).stdout


# ---------------------------------------------------------------------------- digests


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_digests_equal_reference_implementations(
    runner: CliRunner, tmp_path: Path, algo: str
) -> None:
    datas = make_files(tmp_path)
    paths = [str(tmp_path / name) for name in datas]

    result = invoke(runner, ["verify", "--algo", algo, *paths])

    assert result.exit_code == 0, result.stderr
    prefix = "XXH3_" if algo == "xxh3" else ""  # xxhsum's GNU form for XXH3-64
    expected = [
        f"{prefix}{reference_digest(data, algo)}  {path}"
        for path, data in zip(paths, datas.values(), strict=True)
    ]
    assert result.stdout.splitlines() == expected


def test_default_algorithm_is_xxh128(runner: CliRunner, tmp_path: Path) -> None:
    data = write_random(tmp_path / "f", MIB + 1)

    result = invoke(runner, ["verify", str(tmp_path / "f")])

    assert result.stdout == f"{reference_digest(data, 'xxh128')}  {tmp_path / 'f'}\n"


@pytest.mark.parametrize("tool", list(TOOLS))
def test_lines_match_the_real_tool_byte_for_byte(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tool: str
) -> None:
    make_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    names = list(FILES)

    for flags in ([], ["--tag"]):
        expected = run_tool(tool, [*flags, *names], cwd=tmp_path)
        result = invoke(runner, ["verify", "--algo", TOOLS[tool], *flags, *names])

        assert result.exit_code == 0, result.stderr
        assert result.stdout_bytes == expected, flags
        assert result.stderr == ""


@pytest.mark.parametrize("tool", ["xxh128sum", "sha256sum"])
@pytest.mark.parametrize("args", [[], ["-"]], ids=["implicit", "dash"])
def test_stdin_matches_the_real_tool(tmp_path: Path, tool: str, args: list[str]) -> None:
    data = random_bytes(2 * MIB + 11, seed=5)

    expected = run_tool(tool, [], cwd=tmp_path, stdin=data)
    result = run_openspec(["verify", "--algo", TOOLS[tool], *args], cwd=tmp_path, stdin=data)

    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def test_missing_file_among_others(runner: CliRunner, tmp_path: Path) -> None:
    a = write_random(tmp_path / "a", 10)
    b = write_random(tmp_path / "b", MIB + 1, seed=1)
    paths = [str(tmp_path / n) for n in ("a", "missing", "b")]

    result = invoke(runner, ["verify", "--algo", "sha256", *paths])

    assert result.exit_code != 0
    assert result.stdout.splitlines() == [
        f"{reference_digest(a, 'sha256')}  {paths[0]}",
        f"{reference_digest(b, 'sha256')}  {paths[2]}",
    ]
    assert_one_error_line(result.stderr, "missing")


def test_directory_is_reported_and_others_still_hashed(runner: CliRunner, tmp_path: Path) -> None:
    a = write_random(tmp_path / "a", 100)
    (tmp_path / "dir").mkdir()

    result = invoke(runner, ["verify", str(tmp_path / "dir"), str(tmp_path / "a")])

    assert result.exit_code != 0
    assert result.stdout == f"{reference_digest(a, 'xxh128')}  {tmp_path / 'a'}\n"
    assert_one_error_line(result.stderr, "dir")


def test_progress_knows_each_files_size_from_the_start(tmp_path: Path) -> None:
    """Without the size up front the panel shows no percentage and logs say ``total: null``."""
    sizes = {"big": 2 * MIB + 5, "small": 100}
    for name, size in sizes.items():
        write_random(tmp_path / name, size)

    result = run_openspec(["verify", "--progress", "json", *sizes], cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.decode().splitlines()]
    starts = {e["name"]: e["total"] for e in events if e["event"] == "start"}
    assert starts == sizes


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--quiet", "F"], "--quiet option is meaningful only when verifying"),
        (["--status", "F"], "--status option is meaningful only when verifying"),
        (["--strict", "F"], "--strict option is meaningful only when verifying"),
        (["--ignore-missing", "F"], "--ignore-missing option is meaningful only when verifying"),
        (["-c", "--tag", "F"], "--tag option is meaningless when verifying"),
        (["-", "--against", "F"], "does not read standard input"),
        (["-c", "F", "--against", "F"], "--against compares files; it cannot be used with --check"),
        (["-c", "-r", "F"], "--recursive compares files; it cannot be used with --check"),
        (["-r", "F"], "--recursive compares two trees: it needs --against DIR"),
    ],
)
def test_flags_that_would_be_ignored_are_refused(
    runner: CliRunner, tmp_path: Path, args: list[str], complaint: str
) -> None:
    """As sha256sum does: a flag that cannot apply is a mistake worth one line, not silence."""
    write_random(tmp_path / "F", 10)
    result = invoke(runner, ["verify", *(str(tmp_path / a) if a == "F" else a for a in args)])
    assert result.exit_code == USAGE
    assert complaint in assert_one_error_line(result.stderr)


# ---------------------------------------------------------------------------- -c


@pytest.mark.parametrize(("algo", "tool"), [("xxh128", "xxh128sum"), ("sha256", "sha256sum")])
def test_check_round_trip(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algo: str, tool: str
) -> None:
    make_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    names = list(FILES)
    written = invoke(runner, ["verify", "--algo", algo, *names])
    assert written.exit_code == 0
    Path("SUMS").write_bytes(written.stdout_bytes)

    ours = invoke(runner, ["verify", "-c", "SUMS"])
    theirs = run_tool(tool, ["-c", "SUMS"], cwd=tmp_path)

    assert ours.exit_code == 0, ours.stderr
    assert ours.stdout.splitlines() == [f"{name}: OK" for name in names]
    assert ours.stdout_bytes == theirs

    Path("with space").write_bytes(random_bytes(32 * KIB + 1, seed=1000))
    tampered = invoke(runner, ["verify", "-c", "SUMS"])

    assert tampered.exit_code == MISMATCH
    failed = [line for line in tampered.stdout.splitlines() if not line.endswith(": OK")]
    assert failed == ["with space: FAILED"]
    assert "WARNING: 1 computed checksum did NOT match" in tampered.stderr


def test_check_accepts_sums_written_by_the_real_tool(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    Path("SUMS").write_bytes(run_tool("xxh128sum", list(FILES), cwd=tmp_path))

    result = invoke(runner, ["verify", "-c", "SUMS"])

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"{name}: OK" for name in FILES]


def test_check_reads_sums_from_stdin(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    sums = run_tool("sha256sum", list(FILES), cwd=tmp_path)

    result = invoke(runner, ["verify", "-c"], stdin=sums)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"{name}: OK" for name in FILES]


# ---------------------------------------------------------------------------- --against


def compare(runner: CliRunner, left: Path, right: Path, *flags: str) -> tuple[int, str]:
    result = invoke(runner, ["verify", *flags, str(left), "--against", str(right)])
    return result.exit_code, result.stderr


def offset_in(line: str) -> int:
    match = re.search(r"offset (\d+)", line)
    assert match, line
    return int(match.group(1))


@pytest.mark.parametrize("size", [0, 1, 32 * KIB, MIB, MIB + 1, 3 * MIB + 5])
def test_against_equal_files(runner: CliRunner, tmp_path: Path, size: int) -> None:
    data = write_random(tmp_path / "a", size)
    (tmp_path / "b").write_bytes(data)

    code, stderr = compare(runner, tmp_path / "a", tmp_path / "b")

    assert code == 0
    assert stderr == ""


@pytest.mark.parametrize(
    "offset", [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB // 2 + 7, 3 * MIB - 1], ids=str
)
def test_against_reports_the_first_differing_byte(
    runner: CliRunner, tmp_path: Path, offset: int
) -> None:
    data = write_random(tmp_path / "a", 3 * MIB)
    changed = bytearray(data)
    changed[offset] ^= 0x5A
    changed[-1] ^= 0xFF if offset != len(data) - 1 else 0  # a later difference must not win
    (tmp_path / "b").write_bytes(changed)

    code, stderr = compare(runner, tmp_path / "a", tmp_path / "b")

    assert code == MISMATCH
    line = assert_one_error_line(stderr, str(tmp_path / "a"), str(tmp_path / "b"))
    assert offset_in(line) == offset


@pytest.mark.parametrize("short", [0, 10, MIB, MIB + 3, 2 * MIB + 5])
def test_against_files_of_different_lengths(runner: CliRunner, tmp_path: Path, short: int) -> None:
    data = write_random(tmp_path / "long", 3 * MIB)
    (tmp_path / "short").write_bytes(data[:short])

    for left, right in (("long", "short"), ("short", "long")):
        code, stderr = compare(runner, tmp_path / left, tmp_path / right)

        assert code == MISMATCH
        line = assert_one_error_line(stderr, left, right)
        assert offset_in(line) == short


def test_against_is_paced_by_limit_rate_and_shows_progress(
    runner: CliRunner, tmp_path: Path
) -> None:
    data = write_random(tmp_path / "a", 2 * MIB)
    (tmp_path / "b").write_bytes(data)
    args = ["verify", "-L", "1M", "--progress", "json", str(tmp_path / "a")]

    started = time.monotonic()
    result = invoke(runner, [*args, "--against", str(tmp_path / "b")])
    elapsed = time.monotonic() - started

    assert result.exit_code == 0, result.stderr
    assert elapsed >= 1.5
    events = [json.loads(line) for line in result.stderr.splitlines()]
    start = next(e for e in events if e["event"] == "start")
    finish = next(e for e in events if e["event"] == "finish")
    assert (start["name"], start["total"]) == ("a", 2 * MIB)
    assert finish["bytes"] == 2 * MIB


def make_tree(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    write_random(root / "a", 100)
    write_random(root / "sub" / "b", MIB + 1, seed=1)
    write_random(root / "sub" / "deep" / "c", 32 * KIB, seed=2)
    (root / "link").symlink_to("a")


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    left, right = tmp_path / "left", tmp_path / "right"
    make_tree(left)
    make_tree(right)
    return left, right


@pytest.mark.parametrize("missing", ["left", "right"])
def test_against_a_missing_tree_says_so(
    runner: CliRunner, trees: tuple[Path, Path], missing: str
) -> None:
    left, right = trees
    gone = left.parent / "gone"
    pair = [gone, right] if missing == "left" else [left, gone]

    result = invoke(runner, ["verify", "-r", str(pair[0]), "--against", str(pair[1])])

    assert result.exit_code == USAGE
    assert "No such file or directory" in assert_one_error_line(result.stderr, "gone")


def test_against_equal_trees(runner: CliRunner, trees: tuple[Path, Path]) -> None:
    code, stderr = compare(runner, *trees, "-r")

    assert code == 0
    assert stderr == ""


def test_against_trees_where_one_file_differs(runner: CliRunner, trees: tuple[Path, Path]) -> None:
    left, right = trees
    data = bytearray((right / "sub" / "b").read_bytes())
    data[MIB + 0] ^= 1
    (right / "sub" / "b").write_bytes(data)

    code, stderr = compare(runner, left, right, "-r")

    assert code == MISMATCH
    line = assert_one_error_line(stderr, "sub/b")
    assert offset_in(line) == MIB


@pytest.mark.parametrize("side", ["left", "right"])
def test_against_trees_with_a_file_missing_on_one_side(
    runner: CliRunner, trees: tuple[Path, Path], side: str
) -> None:
    left, right = trees
    (left if side == "left" else right).joinpath("sub", "deep", "c").unlink()

    code, stderr = compare(runner, left, right, "-r")

    assert code == MISMATCH
    line = assert_one_error_line(stderr, "sub/deep/c")
    assert "missing" in line


def test_against_trees_where_a_symlink_points_elsewhere(
    runner: CliRunner, trees: tuple[Path, Path]
) -> None:
    """A copied tree whose link leads somewhere else is not the same tree."""
    left, right = trees
    (right / "link").unlink()
    (right / "link").symlink_to("sub")

    code, stderr = compare(runner, left, right, "-r")

    assert code == MISMATCH
    assert_one_error_line(stderr, "link")


@pytest.mark.parametrize("side", ["left", "right"])
def test_against_trees_where_a_directory_is_a_file_on_one_side(
    runner: CliRunner, trees: tuple[Path, Path], side: str
) -> None:
    """The directory's files are missing on the file's side: a difference, not an I/O error."""
    left, right = trees
    flat = left if side == "left" else right
    shutil.rmtree(flat / "sub")
    (flat / "sub").write_bytes(b"now a file")

    code, stderr = compare(runner, left, right, "-r")

    assert code == MISMATCH
    line = assert_one_error_line(stderr, "sub")
    assert "'sub' is a " in line


def test_against_trees_with_unreadable_directories_is_no_match(
    tmp_path: Path, trees: tuple[Path, Path], permission_checked: Callable[[], object] | None
) -> None:
    """Unreadable on both sides: the trees were not compared, so they must not pass as equal."""
    for root in trees:
        (root / "sub" / "deep").chmod(0)
    try:
        result = run_openspec(["verify", "-r", "left", "--against", "right"], tmp_path,
                              preexec_fn=permission_checked)  # fmt: skip
    finally:
        for root in trees:
            (root / "sub" / "deep").chmod(0o755)

    assert result.returncode == USAGE  # as for an unreadable file
    assert result.stderr.decode() == "openspec: 'left/sub/deep': Permission denied\n"


def test_against_trees_holding_a_fifo_does_not_hang(
    tmp_path: Path, trees: tuple[Path, Path]
) -> None:
    left, right = trees
    os.mkfifo(left / "fifo")
    os.mkfifo(right / "fifo")

    try:
        result = run_openspec(["verify", "-r", "left", "--against", "right"], tmp_path, timeout=3)
    except subprocess.TimeoutExpired:
        pytest.fail("verify -r blocked opening a FIFO that nobody writes to")

    assert b"Traceback" not in result.stderr
    assert result.returncode in (0, USAGE)


def test_against_a_directory_without_r_is_refused(
    runner: CliRunner, trees: tuple[Path, Path]
) -> None:
    code, stderr = compare(runner, *trees)

    assert code == USAGE
    assert_one_error_line(stderr, "left")


def test_against_a_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    write_random(tmp_path / "a", 10)

    code, stderr = compare(runner, tmp_path / "a", tmp_path / "missing")

    assert code == USAGE
    assert_one_error_line(stderr, "missing")


# ---------------------------------------------------------------------------- CLI basics

COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]


def test_version(runner: CliRunner) -> None:
    for flag in ("--version", "-V"):
        result = invoke(runner, [flag])
        assert result.exit_code == 0
        assert result.stdout == f"openspec {__version__}\n"


def test_version_in_a_real_process(tmp_path: Path) -> None:
    result = run_openspec(["--version"], cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.decode() == f"openspec {__version__}\n"


def test_the_documented_commands_exist() -> None:
    assert {"copy", "cat", "verify"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]], ids=lambda c: c[0] if c else "")
def test_help(runner: CliRunner, command: list[str]) -> None:
    result = invoke(runner, [*command, "--help"])

    assert result.exit_code == 0
    assert "Usage:" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]], ids=lambda c: c[0] if c else "")
def test_unknown_option(runner: CliRunner, command: list[str]) -> None:
    result = invoke(runner, [*command, "--no-such-option"])

    assert result.exit_code == USAGE
    assert "--no-such-option" in result.stderr


@pytest.mark.parametrize("command", ["copy", "cat", "verify"])
def test_bad_rate_is_a_usage_error(runner: CliRunner, tmp_path: Path, command: str) -> None:
    write_random(tmp_path / "a", 10)
    paths = (
        [str(tmp_path / "a"), str(tmp_path / "b")] if command == "copy" else [str(tmp_path / "a")]
    )

    result = invoke(runner, [command, "--limit-rate", "abc", *paths])

    assert result.exit_code == USAGE
    assert "'abc' is not a size" in result.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("rate", ["0", "-5M", "1X"])
def test_other_bad_rates(runner: CliRunner, tmp_path: Path, rate: str) -> None:
    write_random(tmp_path / "a", 10)

    result = invoke(
        runner, ["copy", "--limit-rate", rate, str(tmp_path / "a"), str(tmp_path / "b")]
    )

    assert result.exit_code == USAGE
    assert rate in result.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("command", ["copy", "cat", "verify"])
def test_unknown_algorithm_is_a_usage_error(
    runner: CliRunner, tmp_path: Path, command: str
) -> None:
    write_random(tmp_path / "a", 10)
    paths = (
        [str(tmp_path / "a"), str(tmp_path / "b")] if command == "copy" else [str(tmp_path / "a")]
    )

    result = invoke(runner, [command, "--algo", "nope", *paths])

    assert result.exit_code == USAGE
    assert "nope" in result.stderr
    assert "sha256" in result.stderr  # says what would have been valid
    assert result.stdout == ""
    assert not (tmp_path / "b").exists()


def test_usage_errors_in_a_real_process_have_no_traceback_or_escape_codes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "CLICOLOR_FORCE")}
    env["TERM"] = "xterm-256color"
    for args, names in (
        (["copy", "--limit-rate", "abc", "a", "b"], ["--limit-rate"]),
        (["verify", "--bogus"], ["--bogus", "openspec verify --help"]),
        (["copy", "-j", "0", "a", "b"], ["--jobs", "openspec copy --help"]),
        (["copy", "--algo", "md6", "a", "b"], ["md6"]),
        (["copy"], ["missing argument"]),
        (["frobnicate"], ["frobnicate", "openspec --help"]),
        (["resume", "--discard"], ["--discard", "openspec resume --help"]),
    ):
        result = subprocess.run(
            [*OPENSPEC, *args],
            cwd=tmp_path,
            capture_output=True,
            env=env,
            timeout=20,
            check=False,
        )
        assert result.returncode == USAGE, args
        assert b"Traceback" not in result.stderr
        assert b"\x1b" not in result.stderr
        # One line, like every other expected failure; not click's usage text and a box.
        assert_one_error_line(result.stderr.decode(), *names)


def test_check_reads_a_file_named_stdin_from_disk_and_mixed_stdin_lines(tmp_path: Path) -> None:
    """md5sum writes a file named 'stdin' as itself; and a stdin line after lines of another
    algorithm of the same length is still read once, in every candidate algorithm."""
    (tmp_path / "stdin").write_bytes(b"real file\n")
    (tmp_path / "b").write_bytes(b"bbb\n")
    data = b"piped\n"
    md5 = hashing.digest_bytes
    (tmp_path / "S1").write_text(f"{md5(b'real file' + bytes([10]), 'md5')}  stdin\n")
    (tmp_path / "S2").write_text(
        f"{md5(b'bbb' + bytes([10]), 'md5')}  b\n{md5(data, 'xxh128')}  stdin\n"
    )
    first = run_openspec(["verify", "-c", "S1"], tmp_path, stdin=b"")
    assert (first.returncode, first.stdout) == (0, b"stdin: OK\n"), first.stderr
    (tmp_path / "stdin").unlink()  # now 'stdin' can only mean standard input
    second = run_openspec(["verify", "-c", "S2"], tmp_path, stdin=data)
    assert (second.returncode, second.stdout) == (0, b"b: OK\nstdin: OK\n"), second.stderr


def test_check_keeps_stderr_ndjson_under_progress_json(tmp_path: Path) -> None:
    """GNU's per-line warnings and closing WARNING lines become message events too."""
    (tmp_path / "a").write_bytes(b"aaa\n")
    digest = hashing.digest_bytes(b"aaa\n", "md5")
    (tmp_path / "SUMS").write_text(f"garbage\n{digest}  missing\n{digest}  a\n")

    result = run_openspec(["verify", "--progress", "json", "-c", "-w", "SUMS"], tmp_path)

    assert result.returncode == 1
    events = [json.loads(line) for line in result.stderr.decode().splitlines()]
    messages = [e["message"] for e in events if e["event"] == "message"]
    assert "missing: No such file or directory" in messages
    assert "WARNING: 1 line is improperly formatted" in messages


def test_check_of_a_closed_stdin_is_one_line(tmp_path: Path) -> None:
    """``verify -c - <&-``: Python leaves sys.stdin None; it used to end in a traceback."""
    result = subprocess.run(
        [*OPENSPEC, "verify", "-c", "-"], cwd=tmp_path, capture_output=True, timeout=20,
        preexec_fn=lambda: os.close(0),
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines[0] == "openspec: 'standard input': read error: Bad file descriptor"
    assert "Traceback" not in result.stderr.decode()


def test_a_fifo_whose_digest_fits_two_algorithms_is_read_once(tmp_path: Path) -> None:
    """An md5 line first makes md5 the likely algorithm of a 32-digit line; when it is not,
    the file was opened again for xxh128: a FIFO, already drained, blocked forever."""
    (tmp_path / "a").write_bytes(b"hello\n")
    os.mkfifo(tmp_path / "ff")
    md5 = hashing.new_hasher("md5")
    md5.update(b"hello\n")
    xxh = hashing.new_hasher("xxh128")
    xxh.update(b"hello\n")
    (tmp_path / "S").write_text(f"{md5.hexdigest()}  a\n{xxh.hexdigest()}  ff\n")
    check = subprocess.Popen(
        [*OPENSPEC, "verify", "-c", "S"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        with open(tmp_path / "ff", "wb") as fifo:  # blocks until the check opens it
            fifo.write(b"hello\n")
        out, err = check.communicate(timeout=20)
    finally:
        kill_quietly(check)
    assert (check.returncode, out, err) == (0, b"a: OK\nff: OK\n", b"")


def test_a_pipe_named_as_dev_stdin_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"hello\n")
    md5, xxh = hashing.new_hasher("md5"), hashing.new_hasher("xxh128")
    for hasher in (md5, xxh):
        hasher.update(b"hello\n")
    (tmp_path / "S").write_text(f"{md5.hexdigest()}  a\n{xxh.hexdigest()}  /dev/stdin\n")
    result = subprocess.run(
        [*OPENSPEC, "verify", "-c", "S"], cwd=tmp_path, input=b"hello\n",
        capture_output=True, timeout=20,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, b"a: OK\n/dev/stdin: OK\n")


def test_checking_a_huge_file_that_is_no_sum_file_keeps_memory_flat(tmp_path: Path) -> None:
    """``verify -c *`` catching a disk image read it whole, decoded it and split it: 3.7 GB of
    memory for 500 MB. Its lines are now read one at a time, an overlong one in pieces."""
    big = tmp_path / "image.iso"
    with open(big, "wb") as fh:
        for _ in range(48):
            fh.write(b"\x00" * (1 << 20))  # 48 MiB without one newline
    code, peak_kib = peak_rss_kib(["verify", "-c", str(big)], tmp_path)
    assert code == 1  # no properly formatted lines
    assert peak_kib < 48 * 1024  # the file alone would be 48 MiB; openspec's start-up is ~15


def test_checking_a_sum_file_of_many_lines_keeps_no_list_of_results(tmp_path: Path) -> None:
    """Each result and warning is printed as it is known and not kept as well: 150k
    improperly formatted lines with -w peaked at ~35 MB where ~15 MB is the start-up."""
    (tmp_path / "junk").write_text("x\n" * 150_000)
    code, peak_kib = peak_rss_kib(["verify", "-c", "-w", "junk"], tmp_path)
    assert code == 1
    assert peak_kib < 25 * 1024


def test_comparing_trees_reports_every_difference(runner: CliRunner, tmp_path: Path) -> None:
    """As diff -r: one line per difference, in name order, not only the first (a user had to
    rerun once per difference); exit 1."""
    left, right = tmp_path / "L", tmp_path / "R"
    for side in (left, right):
        (side / "sub").mkdir(parents=True)
        (side / "same").write_bytes(b"same")
    (left / "only").write_bytes(b"a")
    (left / "sub" / "x").write_bytes(b"1")
    (right / "sub" / "x").write_bytes(b"2")
    os.symlink("same", left / "z")
    os.symlink("only", right / "z")
    (left / "gone" / "deep").mkdir(parents=True)  # said once, not once per name inside
    (left / "gone" / "deep" / "f").write_bytes(b"f")

    code, err = compare(runner, left, right, "-r")

    assert code == MISMATCH
    assert err.splitlines() == [
        f"openspec: '{left}/gone' and '{right}/gone' differ: 'gone' is a directory on the left "
        "and missing on the right",
        f"openspec: '{left}/only' and '{right}/only' differ: 'only' is a file on the left and "
        "missing on the right",
        f"openspec: '{left}/sub/x' and '{right}/sub/x' differ: content differs at byte offset 0",
        f"openspec: '{left}/z' and '{right}/z' differ: symlink 'z' points to 'same' and 'only'",
    ]
