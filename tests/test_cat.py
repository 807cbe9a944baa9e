"""Behaviour of ``openspec cat``: byte-exact streams, quiet broken pipes, ``--hash``, errors."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    KIB,
    MIB,
    OPENSPEC,
    assert_one_error_line,
    invoke,
    random_bytes,
    reference_digest,
    run_openspec,
    start_openspec,
    write_random,
    xxh128_hex,
)
from typer.testing import CliRunner

from openspec_cli.chunking import MAX_CHUNK
from openspec_cli.engine import RateLimiter

USAGE = 2
IO_ERROR = 3
BROKEN_PIPE = 141

PIECES = {"empty": 0, "tiny": 3, "chunk": 32 * KIB, "trigger": MIB, "above": MIB + 1}


def make_pieces(root: Path) -> dict[str, bytes]:
    return {
        name: write_random(root / name, size, seed=i)
        for i, (name, size) in enumerate(PIECES.items())
    }


def hash_line(stderr: bytes) -> str:
    """The one line ``--hash`` writes on stderr, without the ``openspec: `` prefix if any."""
    text = stderr.decode()
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 1, lines
    return lines[0].removeprefix("openspec: ")


def tool_stdin_line(tool: str, data: bytes) -> str:
    """What the real tool prints for ``data`` given on stdin (``<hex>  stdin`` / ``<hex>  -``)."""
    out = subprocess.run([tool], input=data, capture_output=True, check=True).stdout
    return out.decode().rstrip("\n")


def test_files_and_stdin_are_streamed_byte_exact_in_order(tmp_path: Path) -> None:
    pieces = make_pieces(tmp_path)
    stdin_data = random_bytes(300 * KIB, seed=42)
    args = ["empty", "chunk", "-", "tiny", "above", "trigger", "chunk"]

    result = run_openspec(["cat", *args], cwd=tmp_path, stdin=stdin_data)

    expected = b"".join(stdin_data if a == "-" else pieces[a] for a in args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert result.stderr == b""


@pytest.mark.parametrize("args", [[], ["-"]])
def test_stdin_alone(tmp_path: Path, args: list[str]) -> None:
    data = random_bytes(2 * MIB + 5, seed=7)

    result = run_openspec(["cat", *args], cwd=tmp_path, stdin=data)

    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def test_reader_going_away_ends_quietly_with_141(tmp_path: Path) -> None:
    write_random(tmp_path / "big", 6 * MIB)
    proc = start_openspec(["cat", "big"], cwd=tmp_path)
    assert proc.stdout is not None
    assert proc.stderr is not None

    head = proc.stdout.read(100)
    proc.stdout.close()  # like `head -c 100` exiting
    err = proc.stderr.read()
    proc.wait(timeout=20)

    assert len(head) == 100
    assert proc.returncode == BROKEN_PIPE
    assert err == b""


def test_shell_pipeline_into_head(tmp_path: Path) -> None:
    data = write_random(tmp_path / "big", 6 * MIB)
    command = " ".join(OPENSPEC) + ' cat big | head -c 100; echo "status=${PIPESTATUS[0]}" >&2'

    result = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, capture_output=True, timeout=20, check=False
    )

    assert result.stdout == data[:100]
    assert result.stderr.decode() == f"status={BROKEN_PIPE}\n"


@pytest.mark.parametrize(("algo", "tool"), [("xxh128", "xxh128sum"), ("sha256", "sha256sum")])
def test_hash_prints_the_digest_of_everything_streamed(
    tmp_path: Path, algo: str, tool: str
) -> None:
    pieces = make_pieces(tmp_path)
    stdin_data = random_bytes(70 * KIB, seed=3)
    args = ["tiny", "-", "above", "empty", "chunk"]
    expected = b"".join(stdin_data if a == "-" else pieces[a] for a in args)

    result = run_openspec(["cat", "--hash", "--algo", algo, *args], cwd=tmp_path, stdin=stdin_data)

    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    line = hash_line(result.stderr)
    assert line.split()[0] == reference_digest(expected, algo)
    assert line == tool_stdin_line(tool, expected)


def test_hash_without_an_algorithm_uses_xxh128(tmp_path: Path) -> None:
    """The README's own example: ``openspec cat --hash big.bin | ...``; xxh128 by default."""
    data = write_random(tmp_path / "big.bin", MIB + 1)

    result = run_openspec(["cat", "--hash", "big.bin"], cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    assert hash_line(result.stderr) == tool_stdin_line("xxh128sum", data)


def test_hash_of_empty_input(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")

    result = run_openspec(["cat", "--hash", "--algo", "sha256", "empty"], cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout == b""
    assert hash_line(result.stderr) == tool_stdin_line("sha256sum", b"")


def test_unknown_hash_algorithm_is_refused(tmp_path: Path) -> None:
    write_random(tmp_path / "a", 10)

    result = run_openspec(["cat", "--hash", "--algo", "nope", "a"], cwd=tmp_path)

    assert result.returncode == USAGE
    assert b"nope" in result.stderr
    assert b"Traceback" not in result.stderr


def test_missing_file_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    write_random(tmp_path / "a", 10)

    result = invoke(runner, ["cat", str(tmp_path / "a"), str(tmp_path / "missing")])

    assert result.exit_code == USAGE
    line = assert_one_error_line(result.stderr, "missing")
    assert "No such file or directory" in line


def test_directory_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()

    result = invoke(runner, ["cat", str(tmp_path / "dir")])

    assert result.exit_code == USAGE
    assert "directory" in assert_one_error_line(result.stderr, "dir")


@pytest.mark.parametrize("via_stdin", [False, True])
def test_input_that_is_the_output_is_refused(tmp_path: Path, via_stdin: bool) -> None:
    """``openspec cat f >> f`` would read back its own writes until the disk is full; the
    other inputs are written, as GNU cat writes them."""
    data = write_random(tmp_path / "f", 100 * KIB)
    args = ["cat", "a", "-"] if via_stdin else ["cat", "a", "f"]
    small = write_random(tmp_path / "a", 10, seed=1)
    with open(tmp_path / "f", "ab") as out, open(tmp_path / "f", "rb") as stdin:
        result = subprocess.run(
            [*OPENSPEC, *args], cwd=tmp_path, stdin=stdin, stdout=out, stderr=subprocess.PIPE,
            timeout=20,
        )  # fmt: skip

    assert result.returncode == USAGE
    line = assert_one_error_line(result.stderr.decode(), "-" if via_stdin else "f")
    assert "input file is output file" in line
    assert (tmp_path / "f").read_bytes() == data + small  # 'a', and nothing of f itself


def test_an_unreadable_input_is_skipped_and_fails_the_run(
    tmp_path: Path, permission_checked: Callable[[], object] | None
) -> None:
    a = write_random(tmp_path / "a", 10)
    write_random(tmp_path / "secret", 10, seed=1)
    (tmp_path / "secret").chmod(0)

    result = run_openspec(["cat", "a", "secret", "a"], cwd=tmp_path, preexec_fn=permission_checked)

    assert result.returncode == USAGE
    assert "Permission denied" in assert_one_error_line(result.stderr.decode(), "secret")
    assert result.stdout == a + a


def test_bad_inputs_are_named_in_turn_and_the_good_ones_written(tmp_path: Path) -> None:
    """GNU cat goes on after a bad input and fails at the end: a pipeline gets what exists."""
    a = write_random(tmp_path / "a", 3 * MIB)
    (tmp_path / "dir").mkdir()

    result = run_openspec(["cat", "a", "missing", "dir", "a"], cwd=tmp_path)

    assert result.returncode == USAGE
    assert result.stdout == a + a
    assert result.stderr.decode().splitlines() == [
        "openspec: 'missing': No such file or directory",
        "openspec: 'dir': Is a directory",
    ]


def test_progress_json_keeps_stderr_ndjson_with_hash_and_errors(tmp_path: Path) -> None:
    """The digest and the error lines become events too, so every line parses."""
    a = write_random(tmp_path / "a", 3 * MIB)

    result = run_openspec(["cat", "--progress", "json", "--hash", "a", "missing"], cwd=tmp_path)

    assert result.returncode == USAGE
    assert result.stdout == a
    events = [json.loads(line) for line in result.stderr.decode().splitlines()]
    message, digest = events[-2:]
    assert (message["event"], message["message"]) == (
        "message", "'missing': No such file or directory"
    )  # fmt: skip
    assert digest["event"] == "digest"
    assert (digest["algo"], digest["digest"]) == ("xxh128", xxh128_hex(a))


def test_a_failing_output_is_named_as_the_output(tmp_path: Path) -> None:
    """A full disk behind stdout is not the input's fault (GNU: 'write error: ...')."""
    write_random(tmp_path / "a", 100)
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [*OPENSPEC, "cat", "a"], cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, timeout=20
        )
    assert result.returncode == IO_ERROR
    line = assert_one_error_line(result.stderr.decode())
    assert line == "openspec: error writing standard output: No space left on device"


@pytest.mark.parametrize("command", [["cat", "a"], ["verify", "a"], ["cat", "empty"]])
def test_closed_stdout_is_one_line_not_a_traceback(tmp_path: Path, command: list[str]) -> None:
    """With nothing to write too (an empty file), as GNU cat: `cat empty >&-` exits 1."""
    write_random(tmp_path / "a", 100)
    (tmp_path / "empty").touch()
    result = subprocess.run(
        [*OPENSPEC, *command], cwd=tmp_path, stderr=subprocess.PIPE, timeout=20,
        stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert result.returncode == IO_ERROR
    assert "Bad file descriptor" in assert_one_error_line(result.stderr.decode())


@pytest.mark.parametrize("command", [["cat", "a"], ["verify", "a"], ["cat", "-"]])
def test_closed_stderr_still_gives_the_output(tmp_path: Path, command: list[str]) -> None:
    """`2>&-` in a script or cron: GNU cat and sha256sum still write stdout and exit 0."""
    data = write_random(tmp_path / "a", 3 * MIB)
    with open(tmp_path / "a", "rb") as stdin:
        result = subprocess.run(
            [*OPENSPEC, *command], cwd=tmp_path, stdin=stdin, stdout=subprocess.PIPE,
            timeout=20, preexec_fn=lambda: os.close(2),
        )  # fmt: skip
    assert result.returncode == 0
    expected = data if command[0] == "cat" else f"{xxh128_hex(data)}  a\n".encode()
    assert result.stdout == expected


def test_a_copy_with_closed_standard_streams_writes_only_its_files(tmp_path: Path) -> None:
    """No file we open may take a closed stream's number: what goes to it would land inside."""
    data = write_random(tmp_path / "a", 3 * MIB)

    def close_all() -> None:
        for fd in (0, 1, 2):
            os.close(fd)

    result = subprocess.run([*OPENSPEC, "copy", "--json", "a", "b"], cwd=tmp_path, timeout=20,
                            preexec_fn=close_all)  # fmt: skip

    assert result.returncode == IO_ERROR  # the report could not be written to stdout
    assert (tmp_path / "b").read_bytes() == data


def test_missing_file_in_a_real_process(tmp_path: Path) -> None:
    result = run_openspec(["cat", "missing"], cwd=tmp_path)

    assert result.returncode == USAGE
    assert_one_error_line(result.stderr.decode(), "missing")
    assert result.stdout == b""


def test_no_escape_codes_on_stderr_when_it_is_not_a_terminal(tmp_path: Path) -> None:
    data = write_random(tmp_path / "big", 3 * MIB)

    results = [
        run_openspec(["cat", "big"], cwd=tmp_path),
        run_openspec(["cat", "--hash", "big"], cwd=tmp_path),
        run_openspec(["cat", "--limit-rate", "64M", "big", "missing"], cwd=tmp_path),
    ]

    assert results[0].stdout == data
    for result in results:
        assert b"\x1b" not in result.stderr
        assert b"\r" not in result.stderr


def test_a_spliced_stream_reports_its_chunk_size(tmp_path: Path) -> None:
    """Into a pipe the kernel moves the data (splice); the panel still has a chunk to show:
    under -L, the limiter's ~1/20 s of data."""
    data = write_random(tmp_path / "a", 3 * MIB)

    result = run_openspec(["cat", "--progress", "json", "-L", "2M", "a"], cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout == data
    samples = [e for e in map(json.loads, result.stderr.decode().splitlines())
               if e["event"] == "sample"]  # fmt: skip
    assert samples
    assert {e["chunk_size"] for e in samples} == {RateLimiter(2 * MIB).chunk(MAX_CHUNK)}


@pytest.mark.parametrize("via_stdin", [False, True], ids=["named", "stdin"])
def test_the_output_as_input_with_nothing_left_to_read_is_no_error(
    tmp_path: Path, via_stdin: bool
) -> None:
    """As GNU cat: ``cat f > f`` (the shell has emptied f), ``cat e >> e`` of an empty file, or
    stdin already read to its end, are refused only when unread input remains."""
    (tmp_path / "f").write_bytes(b"")
    args = ["cat", "-"] if via_stdin else ["cat", "f"]
    with open(tmp_path / "f", "ab") as out, open(tmp_path / "f", "rb") as stdin:
        result = subprocess.run(
            [*OPENSPEC, *args], cwd=tmp_path, stdin=stdin, stdout=out, stderr=subprocess.PIPE,
            timeout=20,
        )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, b"")
    assert (tmp_path / "f").read_bytes() == b""


def _unopenable(tmp_path: Path, kind: str) -> str:
    """An input that is wrong in itself, made for real."""
    if kind == "symlink loop":
        os.symlink("loop", tmp_path / "loop")
        return "loop"
    if kind == "name too long":
        return "x" * 300
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
    return "sock"


@pytest.mark.parametrize("command", ["cat", "verify"])
@pytest.mark.parametrize("kind", ["symlink loop", "name too long", "socket"])
def test_an_input_that_cannot_be_opened_is_bad_input(
    tmp_path: Path, command: str, kind: str
) -> None:
    """Exit 2 as documented for an input that cannot be read; 3 is for I/O errors while data
    moves. A loop, a name too long and a socket exited 3."""
    name = _unopenable(tmp_path, kind)
    result = run_openspec([command, name], cwd=tmp_path)
    assert result.returncode == USAGE, result.stderr
    assert assert_one_error_line(result.stderr.decode()).startswith(f"openspec: '{name}': ")


def test_a_closed_stdin_is_bad_input(tmp_path: Path) -> None:
    result = run_openspec(["cat", "-"], cwd=tmp_path, preexec_fn=lambda: os.close(0))
    assert result.returncode == USAGE
    assert assert_one_error_line(result.stderr.decode()) == "openspec: '-': Bad file descriptor"


@pytest.mark.parametrize(
    ("args", "out_full", "code"),
    [
        (["cat", "nope"], False, USAGE),
        (["verify", "nope"], False, USAGE),
        (["cat", "a"], True, IO_ERROR),
        # The digest is what was asked for, not a message: losing it is an I/O error.
        (["cat", "--hash", "a"], False, IO_ERROR),
        (["cat", "--hash", "--progress", "json", "a"], False, IO_ERROR),
    ],
)
def test_an_unwritable_stderr_keeps_the_exit_code(
    tmp_path: Path, args: list[str], out_full: bool, code: int
) -> None:
    """A full disk behind ``2>log``: the message is lost, but the status must still say what
    happened (Python's own report of the failure ended in 1, the code for a mismatch)."""
    write_random(tmp_path / "a", 100)
    with open("/dev/full", "wb") as full, open(os.devnull, "wb") as null:
        result = subprocess.run(
            [*OPENSPEC, *args], cwd=tmp_path, stdout=full if out_full else null, stderr=full,
            timeout=20,
        )  # fmt: skip
    assert result.returncode == code
