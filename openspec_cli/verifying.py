"""The three jobs of ``openspec verify``: print digests, check sum files, compare files.

Each returns an exit code and writes the lines the GNU tools would write; hashing itself goes
through the same engine as every other command.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Callable, Iterator

from openspec_cli import hashing
from openspec_cli.engine import NullObserver, Pump, RateLimiter, StreamStats
from openspec_cli.errors import (
    ExitCode,
    OpenspecError,
    TransferIOError,
    describe_os_error,
    from_os_error,
)
from openspec_cli.streams import STDIN, compare_files, compare_trees, hash_path, require_identical

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import BinaryIO

    from openspec_cli import sumfiles
    from openspec_cli.engine import Observer
    from openspec_cli.hashing import Hasher

Say = Callable[[str], None]


def hash_any(
    path: str,
    algo: str,
    limiter: RateLimiter | None = None,
    observer: Observer | None = None,
    hasher: Hasher | None = None,
) -> str:
    """Digest of a file, or of stdin for ``-``; raises OSError-derived errors for the caller.
    ``hasher``, when given, is fed instead of a new one of ``algo``."""
    observer = observer or NullObserver()
    if path == STDIN:
        hasher = hasher or hashing.new_hasher(algo)
        stats = StreamStats(name="stdin")
        observer.stream_started(stats)
        try:
            Pump(0, stats, hasher=hasher, limiter=limiter).run()
        except OSError as err:
            raise TransferIOError(f"error reading stdin: {describe_os_error(err)}") from err
        finally:
            observer.stream_finished(stats)
        return hasher.hexdigest()
    try:
        st = os.stat(path)
    except OSError as err:
        raise from_os_error(err, path) from err
    if stat.S_ISDIR(st.st_mode):
        raise OpenspecError(f"'{path}': Is a directory", ExitCode.USAGE)
    return _hash_watched(path, st, algo, limiter, observer, hasher)


def _hash_watched(
    path: str,
    st: os.stat_result,
    algo: str,
    limiter: RateLimiter | None,
    observer: Observer,
    hasher: Hasher | None = None,
) -> str:
    """Hash a file the observer is told about, with its size known before the stream starts
    (so progress shows a percentage and logs say the size)."""
    total = st.st_size if stat.S_ISREG(st.st_mode) else None
    stats = StreamStats(name=os.path.basename(path), total=total)
    observer.stream_started(stats)
    try:
        return hash_path(path, algo, stats=stats, limiter=limiter, hasher=hasher)
    finally:
        observer.stream_finished(stats)


def run_digests(
    paths: list[str],
    algo: str,
    tag: bool,
    limiter: RateLimiter | None,
    observer: Observer,
    say: Say,
) -> int:
    """Print a sum line per file; like sha256sum, go on after a bad file and fail at the end."""
    code = ExitCode.OK
    for path in paths:
        try:
            digest = hash_any(path, algo, limiter, observer)
        except OpenspecError as err:
            say(err.message)
            code = max(code, err.exit_code)
            continue
        name = hashing.display_name_for_stdin(algo) if path == STDIN else path
        sys.stdout.write(hashing.format_sum_line(algo, digest, name, tag=tag) + "\n")
        sys.stdout.flush()
    return int(code)


def _hash_for_check(
    path: str, algos: tuple[str, ...], limiter: RateLimiter | None, observer: Observer
) -> list[str]:
    """``hash_file`` for :func:`sumfiles.check_sums`: the digests of ``path`` in every one of
    ``algos``, from one read; failures must surface as OSError.

    A line for ``-`` (GNU), or for ``stdin`` with an xxhsum-family digest, is checked against
    standard input, as those tools do: ``openspec cat --hash f > g 2> SUMS`` gives such a
    line. A file that is really named ``stdin`` is still read as the file."""
    hasher = hashing.MultiHasher(algos)
    try:
        if path == STDIN or (path == "stdin" and _xxhsum_stdin(algos)):
            hash_any(STDIN, algos[0], limiter, observer, hasher)
            return hasher.hexdigests()
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", path)
        _hash_watched(path, st, algos[0], limiter, observer, hasher)
        return hasher.hexdigests()
    except OpenspecError as err:
        cause = err.__cause__
        if isinstance(cause, OSError):
            raise cause from None
        raise OSError(5, err.message, path) from err


def _rereadable(path: str) -> bool:
    """A regular file can be hashed a second time; a FIFO or a pipe (``/dev/stdin``) cannot.
    (One that cannot be looked at is left to the hashing to report.)"""
    try:
        return path != STDIN and stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return True


def _xxhsum_stdin(algos: tuple[str, ...]) -> bool:
    xxhsum = any(hashing.display_name_for_stdin(a) == "stdin" for a in algos)
    return xxhsum and not os.path.lexists("stdin")


#: The longest line a sum file can usefully hold: a digest and a name the system could open.
#: A longer one is read past in pieces and counted as improperly formatted, so that memory stays
#: bounded whatever file ``-c`` is given (an ISO caught by ``verify -c *`` took 3.7 GB).
MAX_SUM_LINE = 64 * 1024


def _open_sum_file(path: str) -> AbstractContextManager[BinaryIO]:
    """The sum file, opened before its check starts: a missing one is one line, not a check.
    Standard input is left open for a later ``-``."""
    if path == STDIN:
        if sys.stdin is None:  # fd 0 was closed: reading its stand-in fails with EBADF
            return open(0, "rb", closefd=False)
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        return open(path, "rb")
    except OSError as err:
        raise OpenspecError(f"'{path}': {describe_os_error(err)}", ExitCode.USAGE) from err


def _sum_lines(fh: BinaryIO, path: str) -> Iterator[str]:
    """The file's lines one at a time, split on ``\n`` only (a CR stays part of a name)."""
    while True:
        try:
            raw = fh.readline(MAX_SUM_LINE)
            if len(raw) == MAX_SUM_LINE and not raw.endswith(b"\n"):
                while (more := fh.readline(MAX_SUM_LINE)) and not more.endswith(b"\n"):
                    pass
                raw = b"\0"  # nothing the parser takes: an improperly formatted line
        except OSError as err:
            shown = "standard input" if path == STDIN else path
            raise OpenspecError(
                f"'{shown}': read error: {describe_os_error(err)}", ExitCode.MISMATCH
            ) from err
        if not raw:
            return
        yield raw.removesuffix(b"\n").decode("utf-8", errors="surrogateescape")


def _print_line(line: str) -> None:
    """A result of -c, out at once (a terminal shows each file's as it is done)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run_check(
    sum_files: list[str],
    options: sumfiles.CheckOptions,
    limiter: RateLimiter | None,
    say: Say,
    observer: Observer | None = None,
) -> int:
    """Check each sum file as ``sha256sum -c`` does; the worst exit code wins."""
    from openspec_cli import sumfiles

    watcher = observer or NullObserver()
    code = 0
    for sum_file in sum_files:
        try:
            with _open_sum_file(sum_file) as fh:
                report = sumfiles.check_sums(
                    _sum_lines(fh, sum_file),
                    sum_file,
                    lambda p, a: _hash_for_check(p, a, limiter, watcher),
                    options,
                    # Through ``say``, which knows how stderr is spoken (an NDJSON event under
                    # --progress json); the report's lines carry the "openspec: " that say adds.
                    report=sumfiles.CheckReport(
                        emit_stdout=_print_line,
                        emit_stderr=lambda line: say(line.removeprefix("openspec: ")),
                    ),
                    rereadable=_rereadable,
                )
        except OpenspecError as err:  # the sum file itself: it cannot be opened or read
            say(err.message)
            code = max(code, int(ExitCode.MISMATCH))
            continue
        code = max(code, report.exit_code)
    return code


def run_compare(
    paths: list[str],
    other: str,
    recursive: bool,
    limiter: RateLimiter | None = None,
    observer: Observer | None = None,
    say: Say | None = None,
) -> None:
    """Compare one file (or tree) with another; raises MismatchError on a difference. In a
    tree, every difference is found, and ``say`` is told of each but the last."""
    if len(paths) != 1:
        raise OpenspecError("--against takes exactly one FILE", ExitCode.USAGE)
    left = paths[0]
    if recursive:
        diffs = compare_trees(left, other, limiter, observer)
    else:
        diff = compare_files(left, other, limiter=limiter, observer=observer)
        diffs = [diff] if diff else []
    require_identical(diffs, say if recursive else None)
