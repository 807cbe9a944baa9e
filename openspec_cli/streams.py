"""Streams that end somewhere other than a file: ``cat`` to a pipe, and byte-wise comparison."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable, Iterator

from openspec_cli import hashing
from openspec_cli.chunking import MAX_CHUNK
from openspec_cli.engine import (
    NullObserver,
    Pump,
    RateLimiter,
    StreamStats,
    splice_stream,
)
from openspec_cli.errors import (
    BrokenPipe,
    MismatchError,
    OpenspecError,
    TransferIOError,
    UsageError,
    describe_os_error,
    from_os_error,
    kind_name,
)
from openspec_cli.fileio import write_all
from openspec_cli.records import Record

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from openspec_cli.engine import Observer, Pacer
    from openspec_cli.hashing import Hasher

STDIN = "-"
#: After Ctrl-C, how long cat waits for a write into a stalled pipe before leaving it behind.
PIPE_ABANDON_WAIT = 0.2


def enlarge_pipe(fd: int, size: int = MAX_CHUNK) -> None:
    """Grow a pipe's kernel buffer (Linux ``F_SETPIPE_SZ``) so each write moves a whole chunk."""
    import fcntl

    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is None:
        return
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        fcntl.fcntl(fd, setpipe, size)
    except OSError:
        # Above /proc/sys/fs/pipe-max-size for unprivileged users: keep the default size.
        return


def hash_path(
    path: str,
    algo: str,
    stats: StreamStats | None = None,
    drop_cache: bool = False,
    limiter: RateLimiter | None = None,
    hasher: Hasher | None = None,
    pacer: Pacer | None = None,
) -> str:
    """Digest of the file at ``path``; ``drop_cache`` asks the OS to read it from the device.
    ``hasher``, when given, is fed instead of a new one of ``algo``; ``pacer``: the governor
    of a copy whose file this is (``--verify``), whose budget its buffers then count in."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise from_os_error(err, path) from err
    try:
        size = os.fstat(fd).st_size
        if drop_cache and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        hasher = hasher or hashing.new_hasher(algo)
        stats = stats or StreamStats(name=path, total=size)
        try:
            Pump(fd, stats, hasher=hasher, limiter=limiter, pacer=pacer).run()
        except OSError as err:
            raise TransferIOError(f"error reading '{path}': {describe_os_error(err)}") from err
        return hasher.hexdigest()
    finally:
        os.close(fd)


class CatResult(Record):
    """What ``cat`` moved, and the digest of everything it wrote when one was asked for."""

    __slots__ = ("bytes", "algo", "digest", "seconds")

    def __init__(self, bytes: int, algo: str | None, digest: str | None, seconds: float) -> None:
        self.bytes = bytes
        self.algo = algo
        self.digest = digest
        self.seconds = seconds


class OutputError(TransferIOError):
    """Writing standard output failed: that ends the whole cat, whatever the inputs."""


#: Errors of a splice that are the output's whatever the input (a full disk behind stdout).
_OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _check_writable(out_fd: int) -> None:
    """Fail at once on an output we cannot write, as GNU cat does, even with nothing to write:
    ``openspec cat empty >&-`` reported success. (The launcher holds a closed stdout open
    read-only on /dev/null, so that no file we open takes its number.)"""
    import fcntl

    try:
        readonly = fcntl.fcntl(out_fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    except OSError as err:
        raise OutputError(f"error writing standard output: {describe_os_error(err)}") from err
    if readonly:
        raise OutputError(f"error writing standard output: {os.strerror(errno.EBADF)}")


def _output_stat(out_fd: int) -> os.stat_result | None:
    """The output, when it is a regular file that an input could turn out to be."""
    try:
        out = os.fstat(out_fd)
    except OSError:
        return None
    return out if stat.S_ISREG(out.st_mode) else None  # a pipe or terminal cannot be read back


def _check_input(path: str, out: os.stat_result | None) -> None:
    """Refuse an input that is missing, a directory, unreadable, or the output itself
    (``openspec cat f >> f`` would read its own writes until the disk is full)."""
    try:
        st = os.fstat(0) if path == STDIN else os.stat(path)
    except OSError as err:
        if path == STDIN:
            return  # no stdin: reading it will say so
        raise from_os_error(err, path) from err
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"'{path}': Is a directory")
    if path != STDIN and not os.access(path, os.R_OK):
        raise UsageError(f"'{path}': Permission denied")
    if out is not None and os.path.samestat(st, out) and _unread(path, st) > 0:
        raise UsageError(f"'{path}': input file is output file")


def _unread(path: str, st: os.stat_result) -> int:
    """What is left to read of an input: GNU cat refuses its output as input only then, so
    ``cat f > f`` (the shell emptied f) and ``cat empty >> empty`` end quietly, exit 0."""
    if path != STDIN:
        return st.st_size
    try:
        return st.st_size - os.lseek(0, 0, os.SEEK_CUR)
    except OSError:
        return st.st_size


@contextlib.contextmanager
def _open_input(path: str) -> Iterator[int]:
    if path == STDIN:
        yield 0
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise from_os_error(err, path) from err
    try:
        yield fd
    finally:
        os.close(fd)


def cat(
    paths: list[str],
    out_fd: int = 1,
    algo: str | None = None,
    limiter: RateLimiter | None = None,
    observer: Observer | None = None,
    on_error: Callable[[OpenspecError], None] | None = None,
) -> CatResult:
    """Concatenate ``paths`` (``-`` is stdin) to ``out_fd``; a closed pipe raises BrokenPipe.

    As GNU cat does, an input that cannot be read (missing, a directory, the output itself, a
    read error) goes to ``on_error`` and the next one follows; without ``on_error`` it is
    raised. A failing output always ends the run (:class:`OutputError`).
    """
    observer = observer or NullObserver()
    _check_writable(out_fd)
    out = _output_stat(out_fd)
    enlarge_pipe(out_fd)
    hasher = hashing.new_hasher(algo) if algo else None
    total, seconds = 0, 0.0
    for path in paths:
        stats = StreamStats(name="stdin" if path == STDIN else os.path.basename(path))
        try:
            _check_input(path, out)
            _cat_one(path, out_fd, stats, hasher, limiter, observer)
        except (OutputError, BrokenPipe):
            raise
        except OpenspecError as err:
            if on_error is None:
                raise
            on_error(err)
        total += stats.done
        seconds += stats.seconds
    return CatResult(total, algo, hasher.hexdigest() if hasher else None, seconds)


def _cat_one(
    path: str,
    out_fd: int,
    stats: StreamStats,
    hasher: Hasher | None,
    limiter: RateLimiter | None,
    observer: Observer,
) -> None:
    def sink(view: memoryview) -> None:
        try:
            write_all(out_fd, view)
        except BrokenPipeError:
            raise
        except OSError as err:  # the output's fault, not this input's
            raise OutputError(f"error writing standard output: {describe_os_error(err)}") from err

    with _open_input(path) as fd:
        enlarge_pipe(fd)
        st = os.fstat(fd)
        stats.total = st.st_size if stat.S_ISREG(st.st_mode) else None
        observer.stream_started(stats)
        try:
            if hasher is not None or not splice_stream(fd, out_fd, stats, limiter):
                Pump(
                    fd, stats, hasher=hasher, sink=sink, limiter=limiter,
                    abandon_wait=PIPE_ABANDON_WAIT,
                ).run()  # fmt: skip
        except BrokenPipeError as err:
            raise BrokenPipe("output closed") from err
        except OSError as err:
            if err.errno in _OUTPUT_ERRNOS:  # from splice, which cannot say which side failed
                raise OutputError(
                    f"error writing standard output: {describe_os_error(err)}"
                ) from err
            if stats.done == 0:  # not one byte: the input itself (a closed stdin is bad input)
                raise from_os_error(err, path) from err
            raise TransferIOError(f"'{path}': {describe_os_error(err)}") from err
        finally:
            observer.stream_finished(stats)


class Difference(Record):
    """Where two files (or trees) first disagree; ``offset`` is the first differing byte, or
    None when the difference is not in the bytes."""

    __slots__ = ("left", "right", "offset", "reason")

    def __init__(self, left: str, right: str, offset: int | None, reason: str) -> None:
        self.left = left
        self.right = right
        self.offset = offset
        self.reason = reason

    def describe(self) -> str:
        """One line in the style of ``cmp``."""
        if self.offset is None:
            return f"'{self.left}' and '{self.right}' differ: {self.reason}"
        return (
            f"'{self.left}' and '{self.right}' differ: {self.reason} at byte offset {self.offset}"
        )


def _first_mismatch(a: memoryview, b: memoryview) -> int:
    """Index of the first differing byte of two equal-length views known to differ."""
    lo, hi = 0, len(a)
    while hi - lo > 64:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    for i in range(lo, hi):
        if a[i] != b[i]:
            return i
    return hi


def _read_full(fd: int, buf: memoryview) -> int:
    """Fill ``buf`` unless EOF comes first, so two streams stay aligned chunk by chunk."""
    got = 0
    while got < len(buf):
        n = os.readv(fd, [buf[got:]])
        if not n:
            break
        got += n
    return got


def compare_files(
    left: str,
    right: str,
    chunk: int = MAX_CHUNK,
    limiter: RateLimiter | None = None,
    observer: Observer | None = None,
) -> Difference | None:
    """Compare two files byte for byte; None when they are identical.

    ``observer`` sees one stream per comparison, its size that of ``left``; ``limiter`` paces
    the reading of each file (both are read at that rate, side by side).
    """
    for path in (left, right):
        if os.path.isdir(path):
            raise UsageError(f"'{path}': Is a directory (use -r to compare trees)")
    try:
        lfd = os.open(left, os.O_RDONLY)
    except OSError as err:
        raise from_os_error(err, left) from err
    try:
        try:
            rfd = os.open(right, os.O_RDONLY)
        except OSError as err:
            raise from_os_error(err, right) from err
        try:
            watcher = observer or NullObserver()
            return _compare_watched(left, right, lfd, rfd, chunk, limiter, watcher)
        finally:
            os.close(rfd)
    finally:
        os.close(lfd)


def _compare_watched(
    left: str,
    right: str,
    lfd: int,
    rfd: int,
    chunk: int,
    limiter: RateLimiter | None,
    observer: Observer,
) -> Difference | None:
    """The comparison as one stream the observer sees, sized by the left file."""
    st = os.fstat(lfd)
    stats = StreamStats(
        name=os.path.basename(left), total=st.st_size if stat.S_ISREG(st.st_mode) else None
    )
    if limiter is not None:
        chunk = limiter.chunk(chunk)
    stats.chunk_size = chunk
    observer.stream_started(stats)
    try:
        return _compare_fds(left, right, lfd, rfd, chunk, stats, limiter)
    finally:
        stats.finished = time.monotonic()
        observer.stream_finished(stats)


def _compare_fds(
    left: str,
    right: str,
    lfd: int,
    rfd: int,
    chunk: int,
    stats: StreamStats,
    limiter: RateLimiter | None,
) -> Difference | None:
    lbuf, rbuf = memoryview(bytearray(chunk)), memoryview(bytearray(chunk))
    offset = 0
    while True:
        if limiter is not None and offset:
            limiter.throttle(chunk)
        try:
            ln, rn = _read_full(lfd, lbuf), _read_full(rfd, rbuf)
        except OSError as err:
            raise TransferIOError(f"'{left}' / '{right}': {describe_os_error(err)}") from err
        stats.done += min(ln, rn)
        common = min(ln, rn)
        if lbuf[:common] != rbuf[:common]:
            return Difference(
                left,
                right,
                offset + _first_mismatch(lbuf[:common], rbuf[:common]),
                "content differs",
            )
        if ln != rn:
            shorter = left if ln < rn else right
            return Difference(left, right, offset + common, f"EOF on '{shorter}'")
        if ln == 0:
            return None
        offset += ln


def compare_trees(
    left: str,
    right: str,
    limiter: RateLimiter | None = None,
    observer: Observer | None = None,
) -> list[Difference]:
    """Compare two directory trees: names present on one side only, and differing files."""
    for path in (left, right):
        if not os.path.isdir(path):
            missing = not os.path.lexists(path)
            raise UsageError(
                f"'{path}': {'No such file or directory' if missing else 'Not a directory'}"
            )
    diffs: list[Difference] = []
    unlike: set[str] = set()  # names of different kinds: what is below them is said with them
    for rel in sorted(_tree_entries(left) | _tree_entries(right)):
        if any(parent in unlike for parent in _parents(rel)):
            continue
        lp, rp = os.path.join(left, rel), os.path.join(right, rel)
        lkind, rkind = _kind(lp), _kind(rp)
        if lkind != rkind:
            unlike.add(rel)
            reason = f"'{rel}' is {lkind} on the left and {rkind} on the right"
            diffs.append(Difference(lp, rp, None, reason))
        elif lkind == "a symlink" and os.readlink(lp) != os.readlink(rp):
            reason = f"symlink '{rel}' points to '{os.readlink(lp)}' and '{os.readlink(rp)}'"
            diffs.append(Difference(lp, rp, None, reason))
        elif lkind == "a file":
            diff = compare_files(lp, rp, limiter=limiter, observer=observer)
            if diff is not None:
                diffs.append(diff)
    return diffs


def _parents(rel: str) -> list[str]:
    """``a/b/c`` -> ``a``, ``a/b``."""
    parts = rel.split(os.sep)
    return [os.sep.join(parts[:i]) for i in range(1, len(parts))]


def _kind(path: str) -> str:
    """What is at ``path``, without following symlinks or opening it (a FIFO would block)."""
    try:
        return kind_name(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):  # or a file where the other has a dir
        return "missing"


def _walk_error(err: OSError) -> None:
    raise from_os_error(err, err.filename or "?") from err  # as for an unreadable file


def _tree_entries(root: str) -> set[str]:
    """Every path under ``root``; a directory that cannot be read is an error, not empty
    (skipping it, as os.walk does by default, would call two different trees identical)."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=_walk_error):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            found.add(os.path.normpath(os.path.join(rel_dir, name)))
    return found


def require_identical(diffs: list[Difference], say: Callable[[str], None] | None = None) -> None:
    """Raise a difference as a mismatch (exit 1), like ``cmp``; with ``say``, as ``diff -r``
    does for trees, every one is told, a line each, and the last is raised."""
    if not diffs:
        return
    if say is None:
        raise MismatchError(diffs[0].describe())
    for diff in diffs[:-1]:
        say(diff.describe())
    raise MismatchError(diffs[-1].describe())
