"""Agreement with the real tools, both ways: what we print is what sha256sum, b2sum and xxhsum
print; what they write we check; and ``-c`` says what ``sha256sum -c`` says, byte for byte.

Each case is skipped only if its tool is not installed.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openspec_cli import hashing, sumfiles
from openspec_cli.engine import READ_AHEAD_TRIGGER
from openspec_cli.sumfiles import CheckOptions

ENV = {**os.environ, "LC_ALL": "C.UTF-8"}  # quoting of non-ASCII names depends on the locale


@dataclass(frozen=True)
class Tool:
    cmd: tuple[str, ...]
    algo: str

    @property
    def gnu(self) -> bool:
        return not self.cmd[0].startswith("xxh")


TOOLS = [
    Tool(("sha256sum",), "sha256"),
    Tool(("sha1sum",), "sha1"),
    Tool(("md5sum",), "md5"),
    Tool(("sha512sum",), "sha512"),
    Tool(("b2sum",), "blake2b"),
    Tool(("b2sum", "-l", "256"), "blake2b-256"),
    Tool(("xxh128sum",), "xxh128"),
    Tool(("xxhsum", "-H0"), "xxh32"),
    Tool(("xxhsum", "-H1"), "xxh64"),
    Tool(("xxhsum", "-H3"), "xxh3"),
    Tool(("xxh64sum",), "xxh64"),
    Tool(("xxh32sum",), "xxh32"),
]


def _installed(tool: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} not installed")


TOOL_PARAMS = [pytest.param(t, id=" ".join(t.cmd), marks=_installed(t.cmd[0])) for t in TOOLS]
needs_sha256sum = _installed("sha256sum")

PLAIN_NAMES = ["plain.bin", "with space.txt"]
ODD_NAMES = ["back\\slash", "new\nline", "cr\rret"]


def run(args: Sequence[str], cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    argv = [os.fsencode(arg) for arg in args]
    return subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, env=ENV, check=False)


def lines_of(data: bytes) -> list[str]:
    """Output split the way check_sums wants its input: on newlines only, bytes kept."""
    text = os.fsdecode(data)
    return text.removesuffix("\n").split("\n") if text else []


def file_digest(path: Path, algo: str) -> str:
    hasher = hashing.new_hasher(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            hasher.update(block)
    return hasher.hexdigest()


def real_hash_file(root: Path) -> sumfiles.HashFile:
    """``hash_file`` for check_sums over real files relative to ``root``."""
    return lambda name, algos: [file_digest(root / name, algo) for algo in algos]


@functools.cache
def escapes_names(cmd: tuple[str, ...]) -> bool:
    """coreutils 9 and xxhsum >= 0.8.2 escape '\\' in names; xxhsum 0.8.1 writes them raw."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a\\b").write_bytes(b"")
        return run([*cmd, "a\\b"], Path(tmp)).stdout.startswith(b"\\")


@functools.cache
def has_gnu_xxh3_form(cmd: tuple[str, ...]) -> bool:
    """xxhsum 0.8.1 prints XXH3 only as a BSD tag line; >= 0.8.2 prints ``XXH3_<hex>  name``."""
    return not run([*cmd, "-"], Path.cwd()).stdout.startswith(b"XXH3 (")


def names_for(tool: Tool) -> list[str]:
    return PLAIN_NAMES + (ODD_NAMES if escapes_names(tool.cmd) else [])


def result_name(name: str) -> str:
    """How ``-c`` shows a name: escaped only if it holds a newline (coreutils 9.1)."""
    return "\\" + hashing.escape_name(name) if "\n" in name else name


def make_files(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        (root / name).write_bytes(f"content {i} of {name!r}\n".encode() * (i + 1))


# --- (a) our lines are the tool's lines --------------------------------------------------------


@pytest.mark.parametrize("tag", [False, True], ids=["gnu", "tag"])
@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_format_matches_tool_output(tool: Tool, tag: bool, tmp_path: Path) -> None:
    names = names_for(tool)
    make_files(tmp_path, names)
    result = run([*tool.cmd, *(["--tag"] if tag else []), *names], tmp_path)
    assert result.returncode == 0
    # xxhsum 0.8.1 has no GNU form for XXH3 and prints the tag form instead.
    as_tag = tag or (tool.algo == "xxh3" and not has_gnu_xxh3_form(tool.cmd))
    ours = [
        hashing.format_sum_line(tool.algo, file_digest(tmp_path / n, tool.algo), n, tag=as_tag)
        for n in names
    ]
    assert lines_of(result.stdout) == ours


@pytest.mark.parametrize("tag", [False, True], ids=["gnu", "tag"])
@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_stdin_line_matches_tool_output(tool: Tool, tag: bool, tmp_path: Path) -> None:
    data = b"piped data\n" * 100
    result = run([*tool.cmd, *(["--tag"] if tag else [])], tmp_path, stdin=data)
    as_tag = tag or (tool.algo == "xxh3" and not has_gnu_xxh3_form(tool.cmd))
    name = hashing.display_name_for_stdin(tool.algo)
    digest = hashing.digest_bytes(data, tool.algo)
    assert lines_of(result.stdout) == [hashing.format_sum_line(tool.algo, digest, name, tag=as_tag)]


NAME_CHARS = st.sampled_from(["a", "Z", " ", "\\", "\n", "\r", "\t", "*", "(", ")", "=", "é", "'"])


@needs_sha256sum
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(NAME_CHARS, min_size=1, max_size=8), tag=st.booleans())
def test_any_name_formats_like_sha256sum(name: str, tag: bool, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(name.encode())
    result = run(["sha256sum", *(["--tag"] if tag else []), "--", name], tmp_path)
    path.unlink()
    expected = hashing.format_sum_line(
        "sha256", hashing.digest_bytes(name.encode(), "sha256"), name, tag=tag
    )
    assert lines_of(result.stdout) == [expected]


# --- (b) what the tool writes, we check -------------------------------------------------------


@pytest.mark.parametrize("tag", [False, True], ids=["gnu", "tag"])
@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_tool_sum_files_check_ok_and_detect_tampering(
    tool: Tool, tag: bool, tmp_path: Path
) -> None:
    # Names with a backslash or CR round-trip even unescaped; a raw newline splits the line.
    names = PLAIN_NAMES + [n for n in ODD_NAMES if "\n" not in n or escapes_names(tool.cmd)]
    make_files(tmp_path, names)
    sum_name = f"{tool.algo}sums.txt"  # the name hints md5 vs xxh128 for 32-digit lines
    written = run([*tool.cmd, *(["--tag"] if tag else []), *names], tmp_path).stdout
    (tmp_path / sum_name).write_bytes(written)
    lines = lines_of(written)

    report = sumfiles.check_sums(lines, sum_name, real_hash_file(tmp_path), CheckOptions())
    assert report.stdout == [f"{result_name(n)}: OK" for n in names]
    assert (report.stderr, report.exit_code) == ([], 0)

    (tmp_path / names[0]).write_bytes(b"tampered")
    report = sumfiles.check_sums(lines, sum_name, real_hash_file(tmp_path), CheckOptions())
    theirs = run([*tool.cmd, "-c", sum_name], tmp_path)
    assert f"{names[0]}: FAILED" in report.stdout
    assert report.exit_code == theirs.returncode == 1
    their_results = lines_of(theirs.stdout)
    if not tool.gnu:  # xxhsum 0.8.1 prints its summary, without prefix, on stdout
        their_results = [line for line in their_results if line.endswith((": OK", ": FAILED"))]
    assert report.stdout == their_results
    if tool.gnu:
        expected_err = [
            line.replace(f"{tool.cmd[0]}: ", "openspec: ", 1) for line in lines_of(theirs.stderr)
        ]
        assert report.stderr == expected_err


@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_tool_sum_files_check_ok_when_the_name_gives_no_hint(tool: Tool, tmp_path: Path) -> None:
    """md5 and xxh128 share 32 hex digits, sha512 and blake2b 128: with no hint in the name
    (here CHECKSUMS), a guess that fails is retried with the other algorithm of that length."""
    make_files(tmp_path, PLAIN_NAMES)
    written = run([*tool.cmd, *PLAIN_NAMES], tmp_path).stdout
    lines = lines_of(written)

    report = sumfiles.check_sums(lines, "CHECKSUMS", real_hash_file(tmp_path), CheckOptions())
    assert report.stdout == [f"{n}: OK" for n in PLAIN_NAMES]
    assert (report.stderr, report.exit_code) == ([], 0)

    (tmp_path / PLAIN_NAMES[0]).write_bytes(b"tampered")
    report = sumfiles.check_sums(lines, "CHECKSUMS", real_hash_file(tmp_path), CheckOptions())
    assert report.stdout == [f"{PLAIN_NAMES[0]}: FAILED", f"{PLAIN_NAMES[1]}: OK"]
    assert report.exit_code == 1


# --- (c) -c output and exit code equal sha256sum -c --------------------------------------------


def build_mixed_sum_file(root: Path, *, with_md5_line: bool) -> bytes:
    """OK, FAILED, missing, unreadable, malformed, comment, blank, CRLF and escaped lines."""
    good = ["ok1", "bad", "sp ace", "back\\slash", "new\nline", "cr\rret"]
    make_files(root, good)
    (root / "adir").mkdir()
    out = run(["sha256sum", *good], root).stdout
    out += run(["sha256sum", "--tag", "ok1", "back\\slash"], root).stdout
    ok1 = file_digest(root / "ok1", "sha256")
    zero = "0" * 64
    extra = [
        "# a comment",
        "",
        "garbage line",
        f"{ok1}  ok1\r",
        f"{zero}  gone",
        f"{zero}  café gone",
        f"{zero}  it's gone",
        f"{ok1} *ok1",
        "   ",
        "ZZ  ok1",
        f"{zero}  adir",
        f"\\{ok1}  bad\\xescape",
        f"  \t{ok1.upper()}  ok1",
        f"SHA256(ok1)= {ok1}",
        f"SHA256 (ok1) = {ok1} ",
    ]
    if with_md5_line:
        extra.append(f"{file_digest(root / 'ok1', 'md5')}  ok1")
    (root / "bad").write_bytes(b"tampered")
    return out + "\n".join(extra).encode() + b"\n"


OPTION_SETS = [
    [],
    ["-w"],
    ["--quiet"],
    ["--status"],
    ["--strict"],
    ["--ignore-missing"],
    ["--strict", "-w"],
    ["--ignore-missing", "--quiet"],
    ["--status", "--strict"],
]


def options_for(flags: list[str], algo: str | None) -> CheckOptions:
    return CheckOptions(
        quiet="--quiet" in flags,
        status="--status" in flags,
        strict="--strict" in flags,
        ignore_missing="--ignore-missing" in flags,
        warn="-w" in flags,
        algo=algo,
    )


def assert_same_as_sha256sum(
    root: Path, sum_name: str, flags: list[str], algo: str | None = "sha256"
) -> None:
    theirs = run(["sha256sum", "-c", *flags, "--", sum_name], root)
    lines = lines_of((root / sum_name).read_bytes())
    ours = sumfiles.check_sums(lines, sum_name, real_hash_file(root), options_for(flags, algo))
    assert ours.stdout == lines_of(theirs.stdout)
    assert ours.stderr == [
        line.replace("sha256sum: ", "openspec: ", 1) for line in lines_of(theirs.stderr)
    ]
    assert ours.exit_code == theirs.returncode


@needs_sha256sum
@pytest.mark.parametrize("algo", ["sha256", None], ids=["forced", "inferred"])
@pytest.mark.parametrize("flags", OPTION_SETS, ids=lambda f: " ".join(f) or "plain")
def test_mixed_sum_file_like_sha256sum(flags: list[str], algo: str | None, tmp_path: Path) -> None:
    sum_name = "my sums.sha256"  # a name that needs quoting in diagnostics
    content = build_mixed_sum_file(tmp_path, with_md5_line=algo is not None)
    (tmp_path / sum_name).write_bytes(content)
    assert_same_as_sha256sum(tmp_path, sum_name, flags, algo)


@needs_sha256sum
@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"junk\n\n# c\n",
        ("0" * 64 + "  gone\n").encode(),
        ("0" * 64 + "  gone\r\n" + "1" * 64 + "  gone too\r\n").encode(),
    ],
    ids=["empty", "junk", "missing", "missing-crlf"],
)
@pytest.mark.parametrize(
    "flags", [[], ["--ignore-missing"], ["--status", "--ignore-missing"], ["-w"]]
)
def test_degenerate_sum_files_like_sha256sum(
    content: bytes, flags: list[str], tmp_path: Path
) -> None:
    (tmp_path / "SUMS").write_bytes(content)
    assert_same_as_sha256sum(tmp_path, "SUMS", flags)


@needs_sha256sum
def test_bsd_reversed_lines_like_sha256sum(tmp_path: Path) -> None:
    make_files(tmp_path, ["ok1"])
    digest = file_digest(tmp_path / "ok1", "sha256")
    (tmp_path / "REV").write_text(f"{digest} ok1\n{digest}  ok1\n{digest} *ok1\n")
    (tmp_path / "STD").write_text(f"{digest}  ok1\n{digest} ok1\n")
    assert_same_as_sha256sum(tmp_path, "REV", [])
    assert_same_as_sha256sum(tmp_path, "STD", ["-w"])


FRAGMENTS = st.sampled_from(
    [
        "HEX",
        "ZERO",
        "  ",
        " ",
        " *",
        "\t",
        "ok1",
        "gone",
        "sp ace",
        "\\",
        "\\n",
        "\r",
        "#",
        "SHA256 (",
        ") = ",
        "(",
        ")",
        "=",
        "x",
        "'",
        "\n",
    ]
)


@needs_sha256sum
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    parts=st.lists(FRAGMENTS, max_size=14),
    flags=st.sampled_from(OPTION_SETS),
)
def test_random_sum_files_like_sha256sum(
    parts: list[str], flags: list[str], tmp_path: Path
) -> None:
    make_files(tmp_path, ["ok1", "sp ace"])
    digest = file_digest(tmp_path / "ok1", "sha256")
    text = "".join(parts).replace("HEX", digest).replace("ZERO", "0" * 64)
    (tmp_path / "SUMS").write_text(text)
    assert_same_as_sha256sum(tmp_path, "SUMS", flags)


# --- diagnostics quote names like coreutils -------------------------------------------------------

QUOTE_CHARS = st.sampled_from(
    list("aZ0 '\"$\\:#~{}?*!@,.%+=[]^|&;<>`\n\r\t\x01\x7fé") + ["\u200b", "\u00a0", "\udcff"]
)


@needs_sha256sum
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.text(QUOTE_CHARS, min_size=1, max_size=7).filter(lambda n: n not in ("-", ".", ".."))
)
def test_quote_name_like_coreutils(name: str, tmp_path: Path) -> None:
    result = run(["sha256sum", "--", name], tmp_path)
    assert lines_of(result.stderr) == [
        f"sha256sum: {sumfiles.quote_name(name)}: No such file or directory"
    ]


# --- (d) large files take the read-ahead path; the digests stay the tools' --------------------


@pytest.fixture(scope="module")
def large_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Just over the size from which verify reads ahead on a second thread."""
    path = tmp_path_factory.mktemp("large") / "large.bin"
    path.write_bytes(os.urandom(READ_AHEAD_TRIGGER + 12345))
    return path


def only_digest(output: bytes) -> str:
    found: list[str] = re.findall(r"[0-9a-f]{8,}", output.decode())
    return found[0]


@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_large_file_digest_is_the_tools(tool: Tool, large_file: Path) -> None:
    theirs = run([*tool.cmd, large_file.name], large_file.parent)
    ours = run(
        [sys.executable, "-m", "openspec_cli", "verify", "--algo", tool.algo, large_file.name],
        large_file.parent,
    )
    assert theirs.returncode == ours.returncode == 0, ours.stderr
    assert only_digest(ours.stdout) == only_digest(theirs.stdout)


@pytest.mark.parametrize("tool", TOOL_PARAMS)
def test_the_sum_line_of_cat_hash_checks_stdin_in_both_tools(tmp_path: Path, tool: Tool) -> None:
    """`openspec cat --hash f > g 2> SUMS` names stdin as the tool does (`-` or `stdin`); a line
    with that name checks standard input, in openspec as in the tool."""
    data = os.urandom(100_000)
    (tmp_path / "f").write_bytes(data)
    openspec = [sys.executable, "-m", "openspec_cli"]
    made = run([*openspec, "cat", "--hash", "--algo", tool.algo, "f"], tmp_path)
    assert made.returncode == 0, made.stderr
    (tmp_path / "SUMS").write_bytes(made.stderr)
    name = "-" if tool.gnu else "stdin"

    checkers = [openspec + ["verify"]]
    if tool.algo != "xxh3" or has_gnu_xxh3_form(tool.cmd):  # 0.8.1 reads XXH3 as tags only
        checkers.append(list(tool.cmd))
    for checker in checkers:
        good = run([*checker, "-c", "SUMS"], tmp_path, stdin=data)
        bad = run([*checker, "-c", "SUMS"], tmp_path, stdin=data[:-1])
        assert (good.returncode, good.stdout) == (0, f"{name}: OK\n".encode()), checker
        assert bad.returncode == 1, checker
        assert bad.stdout.splitlines()[0] == f"{name}: FAILED".encode(), checker


def assert_verify_c_like_sha256sum(args: list[str], root: Path, stdin: bytes = b"") -> None:
    """``openspec verify -c ARGS`` in a real process, against ``sha256sum -c ARGS``."""
    theirs = run(["sha256sum", "-c", *args], root, stdin)
    ours = run([sys.executable, "-m", "openspec_cli", "verify", "-c", *args], root, stdin)
    assert ours.stdout == theirs.stdout
    assert ours.stderr == theirs.stderr.replace(b"sha256sum: ", b"openspec: ")
    assert ours.returncode == theirs.returncode


@needs_sha256sum
@pytest.mark.parametrize("tagged", [False, True], ids=["gnu", "bsd"])
def test_a_name_ends_at_a_nul_byte_as_in_sha256sum(tagged: bool, tmp_path: Path) -> None:
    """A corrupt sum file with a NUL in a name: it used to end in a traceback."""
    make_files(tmp_path, ["ok1"])
    digest = file_digest(tmp_path / "ok1", "sha256").encode()
    line = b"SHA256 (ok1\0tail) = " + digest if tagged else digest + b"  ok1\0tail"
    (tmp_path / "SUMS").write_bytes(line + b"\n")
    assert_verify_c_like_sha256sum(["SUMS"], tmp_path)


@needs_sha256sum
def test_a_line_for_stdin_in_a_sum_file_read_from_stdin_is_malformed(tmp_path: Path) -> None:
    """Standard input is the sum file itself: checking '-' hashed what was left of it (nothing)
    and said OK. GNU counts the line as improperly formatted."""
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert_verify_c_like_sha256sum(["-"], tmp_path, f"{empty}  -\n".encode())


def test_an_overlong_line_is_improperly_formatted_and_the_next_one_checked(
    tmp_path: Path,
) -> None:
    """Lines past the longest a sum file can use are read past in pieces, never held whole in
    memory (``verify -c`` of a disk image took 3.7 GB). Here openspec differs from GNU, which
    tries to open the 200 KB name and reports "File name too long": the exit code is the same."""
    make_files(tmp_path, ["ok1"])
    digest = file_digest(tmp_path / "ok1", "sha256")
    long = "0" * 64 + "  " + "x" * 200_000  # looks like a line, but no name is that long
    (tmp_path / "SUMS.sha256").write_text(f"{long}\n{digest}  ok1\n")

    ours = run([sys.executable, "-m", "openspec_cli", "verify", "-cw", "SUMS.sha256"], tmp_path)

    assert ours.stdout == b"ok1: OK\n"
    assert ours.stderr.decode().splitlines() == [
        "openspec: SUMS.sha256: 1: improperly formatted SHA256 checksum line",
        "openspec: WARNING: 1 line is improperly formatted",
    ]
    assert ours.returncode == 0  # as sha256sum: malformed lines fail only with --strict
