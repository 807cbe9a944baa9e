"""Reading and checking sum files as ``sha256sum -c`` and ``xxhsum -c`` do (``verify -c``).

Pure: nothing here prints, reads files or imports the CLI. Files are hashed by a callable the
caller passes in, so the sum-file logic is tested with a dict and the real tools agree with it
byte for byte (tests/test_sums_compat.py). The conventions followed are listed in hashing.py.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from openspec_cli.hashing import DEFAULT_ALGO, SPECS, escape_name, spec_for

#: Names that may stand for standard input in a sum line: ``-`` (GNU), ``stdin`` (xxhsum).
STDIN_NAMES = ("-", "stdin")

#: ``hash_file(path, algos)``: the digests of one file in each of ``algos``, or OSError.
HashFile = Callable[[str, tuple[str, ...]], list[str]]

# Untagged lines only carry a length; where two algorithms share one, the first listed wins,
# except XXH3-64, whose GNU lines always carry the XXH3_ prefix.
_BY_LENGTH = {s.hex_len: n for n, s in reversed(SPECS.items()) if n != "xxh3"}
# Every algorithm an untagged digest of each length may be from: md5 and xxh128 (32), sha256
# and blake2b-256 (64), sha512 and blake2b (128) share lengths.
_SAME_LENGTH: dict[int, tuple[str, ...]] = {}
for _name, _spec in SPECS.items():
    if _name != "xxh3":
        _SAME_LENGTH[_spec.hex_len] = (*_SAME_LENGTH.get(_spec.hex_len, ()), _name)
# Substrings of a sum file's name that say which algorithm wrote it; longest first, so that
# "xxh32" is not read as "xxh3".
_HINTS = (*sorted(SPECS, key=len, reverse=True), "blake2", "b2")
_TAG_TO_ALGO = {spec.tag: name for name, spec in SPECS.items()} | {"BLAKE2b-512": "blake2b"}
_TAG_RE = re.compile(
    r"(XXH128|XXH32|XXH64|XXH3|SHA1|SHA224|SHA256|SHA384|SHA512|MD5"
    r"|BLAKE2b-512|BLAKE2b-256|BLAKE2b) ?\("
)
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_WHITE = " \t"
_FIRST_WHITE = re.compile("[ \t]")
#: No digest is longer (``XXH3_`` and 16 hex digits are shorter): past it, no need to look.
_LONGEST_TOKEN = max(spec.hex_len for spec in SPECS.values())


def _unescape_name(text: str) -> str | None:
    """Inverse of escape_name; None for any other escape or a trailing lone backslash (GNU)."""
    out: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            mapped = {"\\": "\\", "n": "\n", "r": "\r"}.get(nxt)
            if mapped is None:
                return None
            out.append(mapped)
        elif ch == "\0":
            return None
        else:
            out.append(ch)
    return "".join(out)


_C_ESCAPES = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}
_SHELL_SPECIAL = frozenset('!"$&()*;<=>[^`|?\\')
_ALWAYS_SAFE = frozenset(string.ascii_letters + string.digits + "%+,-./:]_")


def _printable(ch: str) -> bool:
    if ch < "\x80":
        return " " <= ch < "\x7f"
    return unicodedata.category(ch) not in ("Cc", "Cs", "Cn")  # glibc iswprint, roughly


def _escape_seq(ch: str) -> str | None:
    if ch in _C_ESCAPES:
        return "\\" + _C_ESCAPES[ch]
    if _printable(ch):
        return None
    return "".join(f"\\{byte:03o}" for byte in ch.encode("utf-8", "surrogateescape"))


def _special_at(name: str, i: int) -> bool:
    """True if name[i] makes gnulib's shell-escape style add quotes (':' for quotef)."""
    ch = name[i]
    if ch in "#~":
        return i == 0
    if ch in "{}":
        return len(name) == 1
    return ch in _SHELL_SPECIAL or ch in " ':" or _escape_seq(ch) is not None


def _compatible_at(name: str, i: int) -> bool:
    """True if name[i] reads the same inside C double quotes as in shell quotes."""
    ch = name[i]
    if ch in _ALWAYS_SAFE or ch in " '":
        return True
    if ch in "#~{}":
        return _special_at(name, i)
    return ch not in _SHELL_SPECIAL and _printable(ch)


def _single_quoted(name: str, pending: bool) -> tuple[str, bool, bool, bool]:
    out = ["'"]
    compatible, saw_quote = True, False
    for i, ch in enumerate(name):
        seq = _escape_seq(ch)
        if seq is not None:
            if not pending:
                out.append("'$'")
                pending = True
            out.append(seq)
            compatible = False
        elif ch == "'":
            saw_quote, pending = True, False
            out.append("'\\''")
        else:
            if pending:
                out.append("''")
                pending = False
            out.append(ch)
            compatible = compatible and _compatible_at(name, i)
    out.append("'")
    return "".join(out), pending, compatible, saw_quote


def quote_name(name: str) -> str:
    """A name as coreutils quotes it in diagnostics (``quotef``, UTF-8 locale).

    ``'a b'``, ``"it's"``, ``'x'$'\\n''y'``; plain names stay bare. Mirrors gnulib's quotearg,
    including its quirk of starting with ``''`` when a name has both a quote and an escape and
    the first pass ended inside ``$'...'``.
    """
    if name and not any(_special_at(name, i) for i in range(len(name))):
        return name
    text, pending, compatible, saw_quote = _single_quoted(name, False)
    if saw_quote:
        if compatible:
            return f'"{name}"'
        text = _single_quoted(name, pending)[0]
    return text


# --- parsing -----------------------------------------------------------------------------------


class MalformedLine(ValueError):
    """A line that is neither empty, a comment, nor a valid sum line (GNU counts these)."""


@dataclass(frozen=True)
class SumEntry:
    """One checkable line: the digest to expect for a name, unescaped, hex in lowercase."""

    algo: str
    hexdigest: str
    name: str
    lineno: int
    #: The algorithm was only guessed from the digest's length, which others share.
    guessed: bool = field(default=False, compare=False)
    #: ...but the sum file told us which one it likely is (its name, or an earlier line).
    likely: bool = field(default=False, compare=False)


def _hinted_algo(hint: str | None) -> str | None:
    lowered = (hint or "").lower()
    key = next((key for key in _HINTS if key in lowered), None)
    return "blake2b" if key in ("blake2", "b2") else key


def _strip_eol(line: str) -> str:
    line = line[:-1] if line.endswith("\n") else line
    return line[:-1] if line.endswith("\r") else line


class _LineParser:
    """Parses the lines of one sum file; keeps GNU's per-file "BSD reversed" state.

    GNU accepts ``<hex> <name>`` (one blank, no marker) only if the file never used the
    two-character marker form before, and then reads later ``<hex>  <name>`` lines with the
    name starting at the second blank. GNU keeps that state for the whole process; we keep it
    per sum file.
    """

    def __init__(self, algo: str | None, hint: str | None) -> None:
        if algo is not None:
            spec_for(algo)
        self.algo = algo
        self.sum_file = hint
        self.hinted = _hinted_algo(hint)
        self.reversed: bool | None = None
        #: Digest length -> the algorithm that matched a guessed line of this file: the rest
        #: of a sum file is almost always from the same tool.
        self.learned: dict[int, str] = {}

    def parse(self, line: str, lineno: int) -> SumEntry | None:
        text = _strip_eol(line)
        if not text or text.startswith("#"):
            return None
        i = len(text) - len(text.lstrip(_WHITE))
        escaped = text[i : i + 1] == "\\"
        rest = text[i + escaped :]
        match = _TAG_RE.match(rest)
        if match:
            algo, digest, raw = self._split_tagged(match, rest)
        else:
            algo, digest, raw = self._split_untagged(rest)
        name = _unescape_name(raw) if escaped else raw
        if name is None:
            raise MalformedLine(f"bad escape in name: {line!r}")
        name = name.partition("\0")[0]  # a name ends at a NUL byte, as GNU's C strings do
        if name == "-" and self.sum_file == "-":
            raise MalformedLine("'-' names the sum file itself (standard input)")  # as GNU
        guessed = not match and self.algo is None and len(_SAME_LENGTH.get(len(digest), ())) > 1
        likely = len(digest) in self.learned or (
            self.hinted is not None and SPECS[self.hinted].hex_len == len(digest)
        )
        return SumEntry(algo, digest.lower(), name, lineno, guessed and algo != "xxh3", likely)

    def _split_tagged(self, match: re.Match[str], rest: str) -> tuple[str, str, str]:
        algo = _TAG_TO_ALGO[match.group(1)]
        body = rest[match.end() :]
        close = body.rfind(")")
        after = body[close + 1 :].lstrip(_WHITE)
        if close < 0 or not after.startswith("="):
            raise MalformedLine(f"no ') = ' in tagged line: {rest!r}")
        digest = after[1:].lstrip(_WHITE)
        if (self.algo or algo) != algo or not self._valid_hex(digest, algo):
            raise MalformedLine(f"bad {match.group(1)} digest: {digest!r}")
        return algo, digest, body[:close]

    def _split_untagged(self, rest: str) -> tuple[str, str, str]:
        blank = _FIRST_WHITE.search(rest, 0, _LONGEST_TOKEN + 1)
        if blank is None:  # garbage (``verify -c`` of a disk image): settled at once
            raise MalformedLine("not a sum line: no blank after a digest's length")
        end = blank.start()
        token, after = rest[:end], rest[end + 1 :]
        xxh3 = token.startswith("XXH3_")
        digest = token[5:] if xxh3 else token
        algo = self._algo_for(digest, xxh3)
        if not after or not self._valid_hex(digest, algo):
            raise MalformedLine(f"not a sum line: {rest!r}")
        if len(after) == 1 or after[0] not in " *":
            if self.reversed is False:
                raise MalformedLine("'<hex> <name>' after '<hex>  <name>' lines")
            self.reversed = True
            return algo, digest, after
        if self.reversed:
            return algo, digest, after
        self.reversed = False
        return algo, digest, after[1:]

    def _algo_for(self, digest: str, xxh3: bool) -> str:
        if self.algo is not None:
            return self.algo if not xxh3 or self.algo == "xxh3" else ""
        if xxh3:
            return "xxh3"
        if len(digest) in self.learned:
            return self.learned[len(digest)]
        if self.hinted and SPECS[self.hinted].hex_len == len(digest):
            return self.hinted
        return _BY_LENGTH.get(len(digest), "")

    @staticmethod
    def _valid_hex(digest: str, algo: str) -> bool:
        return (
            algo in SPECS and len(digest) == SPECS[algo].hex_len and bool(_HEX_RE.fullmatch(digest))
        )


def parse_sum_line(
    line: str, *, algo: str | None = None, hint: str | None = None, lineno: int = 0
) -> SumEntry | None:
    """Parse one line of a sum file; None for an empty line or a ``#`` comment.

    Like GNU, a line of only blanks is malformed (it is counted, not skipped). The algorithm
    comes from the tag, the ``XXH3_`` prefix or the digest length; ``algo`` forces it. Shared
    lengths (32: xxh128/md5, 16: xxh64/xxh3, 64: sha256/blake2b-256, 128: blake2b/sha512)
    follow ``hint``, the sum
    file's name ("MD5SUMS" -> md5), else the default. Raises MalformedLine.
    """
    return _LineParser(algo, hint).parse(line, lineno)


# --- checking ----------------------------------------------------------------------------------


@dataclass
class CheckOptions:
    """The ``-c`` flags. Unlike GNU, where the last of --status/--quiet/--warn wins, these are
    independent; ``status`` silences stdout and the per-line warnings."""

    quiet: bool = False
    status: bool = False
    strict: bool = False
    ignore_missing: bool = False
    warn: bool = False
    algo: str | None = None


@dataclass
class CheckReport:
    """What ``-c`` printed (lines without newline) and its exit code.

    With ``emit_stdout``/``emit_stderr`` each line goes out as soon as it is known, as
    ``sha256sum -c`` prints each file's result when it is done, not after the last one, and is
    not kept: a sum file of millions of lines must not be held in memory as its results.
    """

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    exit_code: int = 0
    emit_stdout: Callable[[str], None] | None = field(default=None, repr=False)
    emit_stderr: Callable[[str], None] | None = field(default=None, repr=False)

    def out(self, line: str) -> None:
        if self.emit_stdout is not None:
            self.emit_stdout(line)
        else:
            self.stdout.append(line)

    def err(self, line: str) -> None:
        if self.emit_stderr is not None:
            self.emit_stderr(line)
        else:
            self.stderr.append(line)


def _result_name(name: str) -> str:
    # coreutils 9.1 escapes a result name only when it holds a newline; '\' and CR go out raw.
    return "\\" + escape_name(name) if "\n" in name else name


def _plural(count: int, one: str, many: str) -> str:
    return f"WARNING: {count} {one if count == 1 else many}"


@dataclass
class _Tally:
    formatted: int = 0
    malformed: int = 0
    unreadable: int = 0
    mismatched: int = 0
    matched: int = 0


def check_sums(
    lines: Iterable[str],
    sum_file_name: str,
    hash_file: HashFile,
    options: CheckOptions,
    prog: str = "openspec",
    report: CheckReport | None = None,
    rereadable: Callable[[str], bool] = lambda name: True,
) -> CheckReport:
    """Verify one sum file the way ``sha256sum -c`` does: same lines, same exit code (0 or 1).

    ``lines`` are the file split on ``\\n`` only (CR is part of a name unless it ends the line),
    decoded with surrogateescape. ``hash_file(path, algos)`` returns the hex digests of the
    file in those algorithms (one read) or raises OSError; ``rereadable(path)`` says whether
    it can be read a second time (not a pipe or a FIFO). For several sum files call this once
    per file and exit with the max exit code. ``-`` as ``sum_file_name`` is shown as "standard
    input", as GNU does.
    """
    parser = _LineParser(options.algo, sum_file_name)
    shown = quote_name("standard input" if sum_file_name == "-" else sum_file_name)
    warn = options.warn and not options.status
    warnings = _Warnings(prog, shown, options.algo or parser.hinted) if warn else None
    report, tally = report or CheckReport(), _Tally()
    for lineno, line in enumerate(lines, 1):
        try:
            entry = parser.parse(line, lineno)
        except MalformedLine:
            tally.malformed += 1
            if warnings is not None:
                warnings.malformed(lineno, report)
            continue
        if entry is not None:
            if warnings is not None:
                warnings.algo_known(entry.algo, report)
            tally.formatted += 1
            # Asked only where a second read could follow (see _matching_algo): a stat less
            # per line of a sum file whose name says nothing.
            once = entry.guessed and entry.likely and not rereadable(entry.name)
            matched = _check_entry(entry, hash_file, options, prog, report, tally, once)
            if matched is not None and entry.guessed:
                parser.learned[len(entry.hexdigest)] = matched
    if warnings is not None:
        warnings.algo_known(DEFAULT_ALGO, report)
    _summarize(options, prog, shown, report, tally)
    return report


class _Warnings:
    """``-w``'s lines, which name the algorithm as sha256sum names SHA256: that of the first
    valid line, unless the options or the file's name said. Lines met before it are held back
    (a few thousand at most, so that memory stays bounded: past that, the default is named),
    since the sum file is read once, as it streams."""

    HELD_AT_MOST = 4096

    def __init__(self, prog: str, shown: str, algo: str | None) -> None:
        self.prog, self.shown = prog, shown
        self.label = spec_for(algo).tag if algo else None
        self.held: list[int] = []

    def malformed(self, lineno: int, report: CheckReport) -> None:
        if self.label is None and len(self.held) >= self.HELD_AT_MOST:
            self.algo_known(DEFAULT_ALGO, report)
        if self.label is None:
            self.held.append(lineno)
        else:
            self._say(lineno, report)

    def algo_known(self, algo: str, report: CheckReport) -> None:
        """The algorithm is known now: out with the lines held for it."""
        if self.label is None:
            self.label = spec_for(algo).tag
        for lineno in self.held:
            self._say(lineno, report)
        self.held.clear()

    def _say(self, lineno: int, report: CheckReport) -> None:
        line = f"{self.shown}: {lineno}: improperly formatted {self.label} checksum line"
        report.err(f"{self.prog}: {line}")


def _check_entry(
    entry: SumEntry,
    hash_file: HashFile,
    options: CheckOptions,
    prog: str,
    report: CheckReport,
    tally: _Tally,
    once: bool = False,
) -> str | None:
    """Check one line; returns the algorithm whose digest matched, if one did."""
    try:
        matched = _matching_algo(entry, hash_file, once)
    except OSError as exc:
        if options.ignore_missing and isinstance(exc, FileNotFoundError):
            return None
        tally.unreadable += 1
        report.err(f"{prog}: {quote_name(entry.name)}: {exc.strerror or exc}")
        if not options.status:
            report.out(f"{_result_name(entry.name)}: FAILED open or read")
        return None
    if matched is not None:
        tally.matched += 1
        if not (options.quiet or options.status):
            report.out(f"{_result_name(entry.name)}: OK")
    else:
        tally.mismatched += 1
        if not options.status:
            report.out(f"{_result_name(entry.name)}: FAILED")
    return matched


def _matching_algo(entry: SumEntry, hash_file: HashFile, once: bool = False) -> str | None:
    """The entry's algorithm if the file matches; for a guessed one, the others of the same
    length count too (an md5sum file named M5 is not xxh128). When nothing says which it is,
    all are hashed in one read; when the file's name or an earlier line does, that one first,
    and the others only if it does not match, unless the file can be read ``once`` only (a
    FIFO, a pipe): a second read would block forever or see nothing."""
    others = tuple(a for a in _SAME_LENGTH.get(len(entry.hexdigest), ()) if a != entry.algo)
    rounds: list[tuple[str, ...]] = [(entry.algo,)]
    if entry.guessed and entry.likely and entry.name not in STDIN_NAMES and not once:
        rounds.append(others)
    elif entry.guessed:  # standard input, above all, can be read only once
        rounds = [(entry.algo, *others)]
    for algos in rounds:
        for algo, digest in zip(algos, hash_file(entry.name, algos), strict=True):
            if digest.lower() == entry.hexdigest:
                return algo
    return None


def _summarize(
    options: CheckOptions, prog: str, shown: str, report: CheckReport, tally: _Tally
) -> None:
    if not tally.formatted:
        report.err(f"{prog}: {shown}: no properly formatted checksum lines found")
        report.exit_code = 1
        return
    if not options.status:
        for count, one, many in (
            (tally.malformed, "line is improperly formatted", "lines are improperly formatted"),
            (tally.unreadable, "listed file could not be read", "listed files could not be read"),
            (
                tally.mismatched,
                "computed checksum did NOT match",
                "computed checksums did NOT match",
            ),
        ):
            if count:
                report.err(f"{prog}: {_plural(count, one, many)}")
        if options.ignore_missing and not tally.matched:
            report.err(f"{prog}: {shown}: no file was verified")
    failed = tally.mismatched or tally.unreadable or (options.strict and tally.malformed)
    report.exit_code = 1 if failed or not tally.matched else 0
