"""The pure core of hashing: registry, sum-line format and parse, and the ``-c`` checker.

Files are a dict here; tests/test_sums_compat.py runs the same code against the real tools.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openspec_cli import hashing, sumfiles
from openspec_cli.sumfiles import CheckOptions, MalformedLine, SumEntry

EMPTY_DIGESTS = {
    "xxh128": "99aa06d3014798d86001c324468d497f",
    "xxh3": "2d06800538d394c2",
    "xxh64": "ef46db3751d8e999",
    "xxh32": "02cc5d05",
    "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "md5": "d41d8cd98f00b204e9800998ecf8427e",
    "blake2b": "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419"
    "d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce",
    "sha224": "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f",
    # b2sum -l 256 < /dev/null
    "blake2b-256": "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8",
    "sha384": "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da"
    "274edebfe76f65fbd51ad2f14898b95b",
    "sha512": "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
}

# File names a real file system can hold: anything but NUL, including undecodable bytes
# (surrogateescape), newlines, carriage returns and backslashes.
NAME_CHARS = st.one_of(
    st.characters(exclude_characters="\x00"),
    st.sampled_from("\\\n\r\t *()=#'\"$ é\u200b"),
    st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
)
NAMES = st.text(NAME_CHARS, min_size=1, max_size=30)


# --- registry ----------------------------------------------------------------------------------


def test_registry_lists_every_algorithm_with_xxh128_default() -> None:
    assert set(hashing.ALGORITHMS) == set(EMPTY_DIGESTS)
    assert hashing.DEFAULT_ALGO == "xxh128"
    assert hashing.ALGORITHMS[0] == hashing.DEFAULT_ALGO


@pytest.mark.parametrize("algo", hashing.ALGORITHMS)
def test_known_digest_of_empty_input(algo: str) -> None:
    assert hashing.digest_bytes(b"", algo) == EMPTY_DIGESTS[algo]
    assert hashing.hex_length(algo) == len(EMPTY_DIGESTS[algo])


@pytest.mark.parametrize("algo", hashing.ALGORITHMS)
def test_streaming_update_equals_one_shot(algo: str) -> None:
    data = bytes(range(256)) * 40
    hasher = hashing.new_hasher(algo)
    view = memoryview(bytearray(data))
    for start in range(0, len(data), 1000):
        hasher.update(view[start : start + 1000])
    assert hasher.hexdigest() == hashing.digest_bytes(data, algo)


def test_unknown_algorithm_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown algorithm 'crc32'.*xxh128.*sha256"):
        hashing.new_hasher("crc32")


def test_stdin_name_follows_each_tool_family() -> None:
    assert hashing.display_name_for_stdin("sha256") == "-"
    assert hashing.display_name_for_stdin("blake2b") == "-"
    assert hashing.display_name_for_stdin("xxh128") == "stdin"
    assert hashing.display_name_for_stdin("xxh3") == "stdin"


# --- formatting --------------------------------------------------------------------------------

H64 = "ab" * 32
H32 = "cd" * 16


@pytest.mark.parametrize(
    ("algo", "digest", "name", "tag", "expected"),
    [
        ("sha256", H64, "a b", False, f"{H64}  a b"),
        ("sha256", H64, "a b", True, f"SHA256 (a b) = {H64}"),
        ("xxh128", H32, "f", True, f"XXH128 (f) = {H32}"),
        ("xxh3", "12" * 8, "f", False, f"XXH3_{'12' * 8}  f"),
        ("xxh3", "12" * 8, "f", True, f"XXH3 (f) = {'12' * 8}"),
        ("blake2b", "0" * 128, "f", True, f"BLAKE2b (f) = {'0' * 128}"),
        ("sha256", H64, "back\\slash", False, f"\\{H64}  back\\\\slash"),
        ("sha256", H64, "new\nline", True, f"\\SHA256 (new\\nline) = {H64}"),
        ("md5", H32, "cr\rret", False, f"\\{H32}  cr\\rret"),
    ],
)
def test_format_sum_line(algo: str, digest: str, name: str, tag: bool, expected: str) -> None:
    assert hashing.format_sum_line(algo, digest, name, tag=tag) == expected


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"{H64}  a b\n", SumEntry("sha256", H64, "a b", 0)),
        (f"{H64} *bin\r\n", SumEntry("sha256", H64, "bin", 0)),
        (f"  \t{H64}\tname ", SumEntry("sha256", H64, "name ", 0)),
        (f"{H64.upper()}  up", SumEntry("sha256", H64, "up", 0)),
        (f"SHA256 (a) b) = {H64}", SumEntry("sha256", H64, "a) b", 0)),
        (f"SHA256(x)=\t{H64}", SumEntry("sha256", H64, "x", 0)),
        (f"\\SHA1 (n\\nl) = {'1' * 40}", SumEntry("sha1", "1" * 40, "n\nl", 0)),
        (f"\\{H32}  b\\\\s\\rc", SumEntry("xxh128", H32, "b\\s\rc", 0)),
        (f"{H32}  plain\\name", SumEntry("xxh128", H32, "plain\\name", 0)),
        (f"XXH3_{'a' * 16}  f", SumEntry("xxh3", "a" * 16, "f", 0)),
        (f"{'a' * 16}  f", SumEntry("xxh64", "a" * 16, "f", 0)),
        (f"XXH32 (f) = {'a' * 8}", SumEntry("xxh32", "a" * 8, "f", 0)),
        (f"BLAKE2b-512 (f) = {'a' * 128}", SumEntry("blake2b", "a" * 128, "f", 0)),
        (f"{'a' * 128}  f", SumEntry("blake2b", "a" * 128, "f", 0)),
        (f"{H64}  ", SumEntry("sha256", H64, " ", 0)),  # GNU: one-char name after one blank
        (f"{H64} x", SumEntry("sha256", H64, "x", 0)),  # GNU "BSD reversed": no marker
    ],
)
def test_parse_accepts_what_gnu_accepts(line: str, expected: SumEntry) -> None:
    assert sumfiles.parse_sum_line(line) == expected


@pytest.mark.parametrize("line", ["", "\n", "\r\n", "# comment", "#"])
def test_parse_skips_empty_lines_and_comments(line: str) -> None:
    assert sumfiles.parse_sum_line(line) is None


@pytest.mark.parametrize(
    "line",
    [
        "   ",  # only blanks: GNU counts it as improperly formatted
        " # indented comment",
        "garbage line",
        f"{H64}",
        f"{H64} ",
        f"{H64}ff  long",
        f"{'g' * 64}  nothex",
        f"{'a' * 20}  odd length",
        f"SHA256  (two spaces) = {H64}",
        f"SHA256 (x) = {H64} ",
        f"SHA256 (x) {H64}",
        f"SHA256 (x) = {H32}",
        f"MD5 x = {H32}",
        f"\\{H64}  bad\\xescape",
        f"\\{H64}  trailing\\",
    ],
)
def test_parse_rejects_malformed(line: str) -> None:
    with pytest.raises(MalformedLine):
        sumfiles.parse_sum_line(line)


def test_forced_algorithm_must_fit_the_line() -> None:
    assert sumfiles.parse_sum_line(f"{H32}  f", algo="md5") == SumEntry("md5", H32, "f", 0)
    assert sumfiles.parse_sum_line(f"{'a' * 16}  f", algo="xxh3") == SumEntry(
        "xxh3", "a" * 16, "f", 0
    )
    for line, algo in [
        (f"{H32}  f", "sha256"),
        (f"MD5 (f) = {H32}", "xxh128"),
        (f"XXH3_{'a' * 16}  f", "xxh64"),
    ]:
        with pytest.raises(MalformedLine):
            sumfiles.parse_sum_line(line, algo=algo)
    with pytest.raises(ValueError, match="unknown algorithm"):
        sumfiles.parse_sum_line(f"{H32}  f", algo="nope")


@pytest.mark.parametrize(
    ("hint", "length", "algo"),
    [
        (None, 32, "xxh128"),
        ("MD5SUMS", 32, "md5"),
        ("files.md5", 32, "md5"),
        ("SHA256SUMS", 32, "xxh128"),  # a hint never overrides the length
        (None, 128, "blake2b"),
        ("SHA512SUMS", 128, "sha512"),
        ("B2SUMS", 128, "blake2b"),
        ("x.xxh3", 16, "xxh3"),
        ("x.xxh32", 16, "xxh64"),
    ],
)
def test_hint_resolves_shared_lengths(hint: str | None, length: int, algo: str) -> None:
    entry = sumfiles.parse_sum_line(f"{'e' * length}  f", hint=hint, lineno=7)
    assert entry == SumEntry(algo, "e" * length, "f", 7)


@settings(max_examples=300)
@given(algo=st.sampled_from(hashing.ALGORITHMS), name=NAMES, tag=st.booleans(), data=st.binary())
def test_format_then_parse_round_trips(algo: str, name: str, tag: bool, data: bytes) -> None:
    digest = hashing.digest_bytes(data, algo)
    line = hashing.format_sum_line(algo, digest, name, tag=tag)
    assert "\n" not in line
    # Without a tag, shared lengths need the forced algorithm (or a hint) to come back.
    forced = None if tag or algo in ("sha256", "sha1", "xxh3") else algo
    assert sumfiles.parse_sum_line(line + "\n", algo=forced) == SumEntry(algo, digest, name, 0)


@settings(max_examples=300)
@given(
    line=st.one_of(
        st.text(),
        st.text(st.sampled_from("0123456789abcdefXH_ (*)=\\\t\r\n#SHA256BLAKE2bxnr")),
    ),
    algo=st.sampled_from([None, *hashing.ALGORITHMS]),
    hint=st.sampled_from([None, "MD5SUMS", "SHA512SUMS", "x.xxh3"]),
)
def test_parse_never_fails_except_malformed(line: str, algo: str | None, hint: str | None) -> None:
    try:
        entry = sumfiles.parse_sum_line(line, algo=algo, hint=hint)
    except MalformedLine:
        return
    if entry is not None:
        assert entry.algo in hashing.ALGORITHMS
        assert len(entry.hexdigest) == hashing.hex_length(entry.algo)
        assert entry.hexdigest == entry.hexdigest.lower()
        assert algo in (None, entry.algo)


# --- quoting in diagnostics --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("plain.txt", "plain.txt"),
        ("", "''"),
        ("a b", "'a b'"),
        ("it's here", '"it\'s here"'),
        ("it's$", "'it'\\''s$'"),
        ("a:b", "'a:b'"),
        ("x~t", "x~t"),
        ("~t", "'~t'"),
        ("#c", "'#c'"),
        ("{}", "{}"),
        ("{", "'{'"),
        ("café", "café"),
        ("tab\tx", "'tab'$'\\t''x'"),
        ("\x01ctl", "''$'\\001''ctl'"),
        ("a\n", "'a'$'\\n'"),
        ("it's\n", "'''it'\\''s'$'\\n'"),  # gnulib's rescan quirk, verified with sha256sum
        ("\udcff", "''$'\\377'"),
        ("\x01it's\x01", "'\\001''it'\\''s'$'\\001'"),  # same quirk, opening inside $'
        ("a@b's", '"a@b\'s"'),
        ("a#b's", "'a#b'\\''s'"),
        ("mix\\and\nnl\rcr", "'mix\\and'$'\\n''nl'$'\\r''cr'"),
    ],
)
def test_quote_name_matches_coreutils(name: str, quoted: str) -> None:
    assert sumfiles.quote_name(name) == quoted


# --- checking ----------------------------------------------------------------------------------

FILES = {"a": b"alpha", "b b": b"beta", "new\nline": b"nl", "back\\slash": b"bs", "adir": b""}


def fake_hash_file(files: dict[str, bytes]) -> sumfiles.HashFile:
    def hash_file(path: str, algos: tuple[str, ...]) -> list[str]:
        if path == "adir":
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if path not in files:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return [hashing.digest_bytes(files[path], algo) for algo in algos]

    return hash_file


def sum_line(
    name: str, algo: str = "sha256", *, tag: bool = False, data: bytes | None = None
) -> str:
    content = FILES.get(name, b"") if data is None else data
    return hashing.format_sum_line(algo, hashing.digest_bytes(content, algo), name, tag=tag)


def check(lines: list[str], name: str = "SUMS", **opts: Any) -> sumfiles.CheckReport:
    return sumfiles.check_sums(lines, name, fake_hash_file(FILES), CheckOptions(**opts))


def test_a_guessed_algorithm_is_learned_from_the_first_line_that_matches() -> None:
    """An md5sum file with no hint in its name: the first file is hashed as xxh128 and md5 in
    one read; the rest of the file is hashed as md5 straight away."""
    calls: list[tuple[str, tuple[str, ...]]] = []
    plain = fake_hash_file(FILES)

    def counting(path: str, algos: tuple[str, ...]) -> list[str]:
        calls.append((path, algos))
        return plain(path, algos)

    lines = [sum_line("a", "md5"), sum_line("b b", "md5")]
    report = sumfiles.check_sums(lines, "SUMS", counting, CheckOptions())

    assert report.stdout == ["a: OK", "b b: OK"]
    assert calls == [("a", ("xxh128", "md5")), ("b b", ("md5",))]


def test_all_good_lines_pass() -> None:
    lines = [sum_line("a"), sum_line("b b", tag=True), sum_line("a", "xxh128"), "# c", ""]
    report = check(lines)
    assert report.stdout == ["a: OK", "b b: OK", "a: OK"]
    assert report.stderr == []
    assert report.exit_code == 0


def test_result_names_escape_only_newlines_like_coreutils() -> None:
    report = check([sum_line("new\nline"), sum_line("back\\slash")])
    assert report.stdout == ["\\new\\nline: OK", "back\\slash: OK"]


def test_mismatch_and_unreadable_are_reported() -> None:
    lines = [
        sum_line("a", data=b"other"),
        sum_line("b b", data=b"other"),
        sum_line("gone"),
        sum_line("adir"),
        sum_line("a"),
    ]
    report = check(lines)
    assert report.stdout == [
        "a: FAILED",
        "b b: FAILED",
        "gone: FAILED open or read",
        "adir: FAILED open or read",
        "a: OK",
    ]
    assert report.stderr == [
        "openspec: gone: No such file or directory",
        "openspec: adir: Is a directory",
        "openspec: WARNING: 2 listed files could not be read",
        "openspec: WARNING: 2 computed checksums did NOT match",
    ]
    assert report.exit_code == 1


def test_singular_warnings_and_prog_name() -> None:
    report = sumfiles.check_sums(
        ["junk", sum_line("gone"), sum_line("a", data=b"x")],
        "SUMS",
        fake_hash_file(FILES),
        CheckOptions(),
        prog="sha256sum",
    )
    assert report.stderr == [
        "sha256sum: gone: No such file or directory",
        "sha256sum: WARNING: 1 line is improperly formatted",
        "sha256sum: WARNING: 1 listed file could not be read",
        "sha256sum: WARNING: 1 computed checksum did NOT match",
    ]


def test_quiet_hides_only_ok_lines() -> None:
    report = check([sum_line("a"), sum_line("b b", data=b"x")], quiet=True)
    assert report.stdout == ["b b: FAILED"]
    assert report.exit_code == 1


def test_status_prints_nothing_but_open_errors() -> None:
    report = check(["junk", sum_line("a"), sum_line("gone")], status=True, warn=True)
    assert report.stdout == []
    assert report.stderr == ["openspec: gone: No such file or directory"]
    assert report.exit_code == 1
    assert check([sum_line("a")], status=True).exit_code == 0


def test_warn_names_file_line_and_algorithm() -> None:
    lines = [sum_line("a"), "junk", "  "]
    report = check(lines, name="my sums", warn=True)
    assert report.stderr == [
        # Named after the file's own lines (sha256), as sha256sum names SHA256.
        "openspec: 'my sums': 2: improperly formatted SHA256 checksum line",
        "openspec: 'my sums': 3: improperly formatted SHA256 checksum line",
        "openspec: WARNING: 2 lines are improperly formatted",
    ]
    assert report.exit_code == 0
    xxh_lines = ["junk", sum_line("a", "xxh128")]
    assert "XXH128 checksum line" in check(xxh_lines, warn=True).stderr[0]
    assert "XXH128 checksum line" in check(["junk"], warn=True).stderr[0]  # the default
    assert "SHA256 checksum line" in check(lines, warn=True, algo="sha256").stderr[0]
    assert "MD5 checksum line" in check(lines, name="MD5SUMS", warn=True).stderr[0]


def test_strict_fails_on_malformed_lines() -> None:
    assert check([sum_line("a"), "junk"]).exit_code == 0
    assert check([sum_line("a"), "junk"], strict=True).exit_code == 1


@pytest.mark.parametrize("lines", [[], ["junk"], ["# only", ""]])
def test_no_properly_formatted_lines(lines: list[str]) -> None:
    report = check(lines, status=True)
    assert report.stderr == ["openspec: SUMS: no properly formatted checksum lines found"]
    assert report.exit_code == 1


def test_ignore_missing_skips_missing_but_not_unreadable() -> None:
    report = check([sum_line("gone"), sum_line("a"), sum_line("adir")], ignore_missing=True)
    assert report.stdout == ["a: OK", "adir: FAILED open or read"]
    assert report.stderr == [
        "openspec: adir: Is a directory",
        "openspec: WARNING: 1 listed file could not be read",
    ]
    assert check([sum_line("gone"), sum_line("a")], ignore_missing=True).exit_code == 0


@pytest.mark.parametrize("status", [False, True])
def test_ignore_missing_with_nothing_verified(status: bool) -> None:
    report = check([sum_line("gone")], ignore_missing=True, status=status)
    assert report.stdout == []
    assert report.stderr == ([] if status else ["openspec: SUMS: no file was verified"])
    assert report.exit_code == 1


def test_ignore_missing_counts_a_failure_as_not_verified() -> None:
    report = check([sum_line("a", data=b"x")], ignore_missing=True)
    assert report.stderr[-1] == "openspec: SUMS: no file was verified"


def test_stdin_sum_file_is_called_standard_input() -> None:
    report = check(["junk"], name="-")
    assert report.stderr == [
        "openspec: 'standard input': no properly formatted checksum lines found"
    ]


def test_missing_names_are_quoted_on_stderr_and_escaped_on_stdout() -> None:
    report = check([sum_line("it's\ngone")])
    assert report.stdout == ["\\it's\\ngone: FAILED open or read"]
    assert report.stderr[0] == "openspec: 'it'\\''s'$'\\n''gone': No such file or directory"


def test_bsd_reversed_lines_cannot_follow_marked_lines() -> None:
    digest = hashing.digest_bytes(b"alpha", "sha256")
    report = check([f"{digest}  a", f"{digest} a"])
    assert report.stdout == ["a: OK"]
    assert report.stderr == ["openspec: WARNING: 1 line is improperly formatted"]
    # ...and once a file starts without the marker, a later "  " keeps its blank in the name.
    report = check([f"{digest} a", f"{digest}  a"])
    assert report.stdout == ["a: OK", " a: FAILED open or read"]


@settings(max_examples=200)
@given(
    lines=st.lists(st.text(st.sampled_from("0123456789abcdef a*#\\\r\n()=SHA256XH_")), max_size=6),
    options=st.builds(
        CheckOptions,
        quiet=st.booleans(),
        status=st.booleans(),
        strict=st.booleans(),
        ignore_missing=st.booleans(),
        warn=st.booleans(),
        algo=st.sampled_from([None, "sha256", "xxh128"]),
    ),
)
def test_check_never_crashes(lines: list[str], options: CheckOptions) -> None:
    report = sumfiles.check_sums(lines, "SUMS", fake_hash_file(FILES), options)
    assert report.exit_code in (0, 1)
    if options.status:
        assert report.stdout == []
