"""Copying: cp-style planning of what goes where, and the safe copy of one file.

A file reaches its final name only by ``rename`` of a fully written, fsynced (and, if asked,
re-read and verified) partial file in the same directory, so the final name never holds a short
or wrong file. Every refusal is decided before any byte is written.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from openspec_cli import hashing
from openspec_cli.engine import NullObserver, Observer, Pump, RateLimiter, StreamStats, file_sink
from openspec_cli.errors import (
    MismatchError,
    OpenspecError,
    SourceChangedError,
    TransferIOError,
    UsageError,
    describe_os_error,
    from_os_error,
)

PARTIAL_SUFFIX = ".openspec-part"


@dataclass
class CopyOptions:
    """How to copy; the defaults are the safe ones."""

    algo: str = hashing.DEFAULT_ALGO
    recursive: bool = False
    no_clobber: bool = False
    verify: bool = False
    fsync: bool = True
    sums_path: str | None = None
    limiter: RateLimiter | None = None


@dataclass
class FileResult:
    """What happened to one file; the ``--json`` summary is built from these."""

    source: str
    dest: str
    bytes: int
    algo: str
    digest: str | None
    seconds: float
    chunk_sizes: list[int] = field(default_factory=list)
    verified: bool = False
    skipped: bool = False

    @property
    def throughput_bps(self) -> float:
        """Bytes per second over the whole file."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Step:
    """One action of a plan: make a directory, copy a file, or recreate a symlink."""

    kind: str  # "dir" | "file" | "link"
    source: str
    dest: str


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _stat_source(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as err:
        raise UsageError(f"cannot stat '{path}': {describe_os_error(err)}") from err


def _kind_name(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def plan_copy(sources: list[str], dest: str, recursive: bool = False) -> list[Step]:
    """Decide every step of ``copy SOURCES DEST`` as cp would, or refuse before any change."""
    if not sources:
        raise UsageError("missing source operand")
    dest_st = _lstat(dest)
    dest_is_dir = dest_st is not None and os.path.isdir(dest)
    if len(sources) > 1 and not dest_is_dir:
        raise UsageError(f"target '{dest}' is not a directory")
    if dest_st is None and dest.endswith(os.sep):
        raise UsageError(f"cannot create '{dest}': No such file or directory")
    steps: list[Step] = []
    for src in sources:
        name = os.path.basename(os.path.normpath(src))
        target = os.path.join(dest, name) if dest_is_dir else dest
        steps.extend(_plan_one(src, target, recursive))
    return steps


def _plan_one(src: str, target: str, recursive: bool) -> list[Step]:
    st = _stat_source(src)
    if stat.S_ISDIR(st.st_mode):
        if not recursive:
            raise UsageError(f"-r not specified; omitting directory '{src}'")
        real_src, real_target = os.path.realpath(src), os.path.realpath(target)
        if real_target == real_src or real_target.startswith(real_src + os.sep):
            raise UsageError(f"cannot copy a directory, '{src}', into itself, '{target}'")
        target_st = _lstat(target)
        if target_st is not None and not stat.S_ISDIR(target_st.st_mode):
            raise UsageError(f"cannot overwrite non-directory '{target}' with directory '{src}'")
        return list(_walk_tree(src, target))
    _check_file_target(src, st, target)
    return [Step("file", src, target)]


def _check_file_target(src: str, st: os.stat_result, target: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"cannot copy '{src}': {_kind_name(st.st_mode)}, not a regular file")
    target_st = _lstat(target)
    if target_st is not None:
        if stat.S_ISDIR(target_st.st_mode):
            raise UsageError(f"cannot overwrite directory '{target}' with non-directory '{src}'")
        with contextlib.suppress(OSError):
            if os.path.samestat(st, os.stat(target)):
                raise UsageError(f"'{src}' and '{target}' are the same file")
    parent = os.path.dirname(target) or "."
    if not os.path.isdir(parent):
        raise UsageError(f"cannot create regular file '{target}': No such file or directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create regular file '{target}': Permission denied")
    if not os.access(src, os.R_OK):
        raise UsageError(f"cannot open '{src}' for reading: Permission denied")


def _walk_tree(src: str, target: str) -> Iterator[Step]:
    yield Step("dir", src, target)
    try:
        entries = sorted(os.scandir(src), key=lambda e: e.name)
    except OSError as err:
        raise UsageError(f"cannot read directory '{src}': {describe_os_error(err)}") from err
    for entry in entries:
        child_src, child_dst = entry.path, os.path.join(target, entry.name)
        if entry.is_symlink():
            yield Step("link", child_src, child_dst)
        elif entry.is_dir():
            yield from _walk_tree(child_src, child_dst)
        else:
            st = entry.stat()
            if stat.S_ISREG(st.st_mode):
                _check_file_target_in_tree(child_src, st, child_dst)
                yield Step("file", child_src, child_dst)
            else:
                raise UsageError(f"cannot copy '{child_src}': {_kind_name(st.st_mode)}")


def _check_file_target_in_tree(src: str, st: os.stat_result, target: str) -> None:
    """Like :func:`_check_file_target`, but the parent may not exist yet (we create it)."""
    target_st = _lstat(target)
    if target_st is not None and stat.S_ISDIR(target_st.st_mode):
        raise UsageError(f"cannot overwrite directory '{target}' with non-directory '{src}'")
    if not os.access(src, os.R_OK):
        raise UsageError(f"cannot open '{src}' for reading: Permission denied")


def partial_path(dest: str, transfer_id: str) -> str:
    """Hidden name beside ``dest`` that holds data until the copy is complete."""
    head, tail = os.path.split(dest)
    return os.path.join(head, f".{tail}.{transfer_id}{PARTIAL_SUFFIX}")


def new_transfer_id() -> str:
    """A short id that names a transfer in messages, partial files and (later) checkpoints."""
    return secrets.token_hex(4)


def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable; some filesystems refuse, which is harmless."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_space(dest_dir: str, needed: int, src: str, dest: str) -> None:
    """Fail before writing when the destination filesystem clearly cannot hold the file."""
    try:
        vfs = os.statvfs(dest_dir)
    except OSError:
        return
    free = vfs.f_bavail * vfs.f_frsize
    if needed > free:
        raise TransferIOError(
            f"'{src}' -> '{dest}': No space left on device (needs {needed} bytes, {free} free)"
        )


def hash_path(
    path: str,
    algo: str,
    stats: StreamStats | None = None,
    drop_cache: bool = False,
    limiter: RateLimiter | None = None,
) -> str:
    """Digest of the file at ``path``; ``drop_cache`` asks the OS to read it from the device."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise from_os_error(err, path) from err
    try:
        size = os.fstat(fd).st_size
        if drop_cache and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        hasher = hashing.new_hasher(algo)
        stats = stats or StreamStats(name=path, total=size)
        try:
            Pump(fd, stats, hasher=hasher, limiter=limiter).run()
        except OSError as err:
            raise TransferIOError(f"error reading '{path}': {describe_os_error(err)}") from err
        return hasher.hexdigest()
    finally:
        os.close(fd)


def copy_file(
    src: str, dest: str, options: CopyOptions, observer: Observer | None = None
) -> FileResult:
    """Copy one regular file safely (see module docstring); ``dest`` is the final file name."""
    observer = observer or NullObserver()
    if options.no_clobber and os.path.lexists(dest):
        return FileResult(src, dest, 0, options.algo, None, 0.0, skipped=True)
    try:
        src_fd = os.open(src, os.O_RDONLY)
    except OSError as err:
        raise from_os_error(err, src) from err
    try:
        return _copy_open(src, src_fd, dest, options, observer)
    finally:
        os.close(src_fd)


def _copy_open(
    src: str, src_fd: int, dest: str, options: CopyOptions, observer: Observer
) -> FileResult:
    before = os.fstat(src_fd)
    dest_dir = os.path.dirname(dest) or "."
    _check_space(dest_dir, before.st_size, src, dest)
    part = partial_path(dest, new_transfer_id())
    try:
        out_fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise from_os_error(err, part) from err
    stats = StreamStats(name=os.path.basename(src), total=before.st_size)
    observer.stream_started(stats)
    try:
        result = _fill_partial(src, src_fd, before, dest, part, out_fd, stats, options)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(out_fd)
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
    finally:
        observer.stream_finished(stats)
    os.replace(part, dest)
    if options.fsync:
        _fsync_dir(dest_dir)
    return result


def _fill_partial(
    src: str,
    src_fd: int,
    before: os.stat_result,
    dest: str,
    part: str,
    out_fd: int,
    stats: StreamStats,
    options: CopyOptions,
) -> FileResult:
    hasher = hashing.new_hasher(options.algo)
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(src_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    try:
        Pump(src_fd, stats, hasher=hasher, sink=file_sink(out_fd), limiter=options.limiter).run()
    except OSError as err:
        raise TransferIOError(f"'{src}' -> '{dest}': {describe_os_error(err)}") from err
    _check_unchanged(src, src_fd, before, stats.done)
    try:
        os.fchmod(out_fd, stat.S_IMODE(before.st_mode))
        os.utime(out_fd, ns=(before.st_atime_ns, before.st_mtime_ns))
        if options.fsync:
            os.fsync(out_fd)
    except OSError as err:
        raise TransferIOError(f"'{dest}': {describe_os_error(err)}") from err
    finally:
        os.close(out_fd)
    digest = hasher.hexdigest()
    if options.verify:
        again = hash_path(part, options.algo, drop_cache=True)
        if again != digest:
            raise MismatchError(
                f"'{src}' -> '{dest}': verification failed: wrote {again}, expected {digest}"
            )
    return FileResult(
        src,
        dest,
        stats.done,
        options.algo,
        digest,
        stats.seconds,
        list(stats.chunk_sizes),
        verified=options.verify,
    )


def _check_unchanged(src: str, fd: int, before: os.stat_result, copied: int) -> None:
    """Refuse to finish a copy whose source was modified while we read it."""
    after = os.fstat(fd)
    if (
        copied != before.st_size
        or after.st_size != before.st_size
        or after.st_mtime_ns != before.st_mtime_ns
    ):
        raise SourceChangedError(
            f"'{src}' changed while it was being copied "
            f"(size {before.st_size} -> {after.st_size}, read {copied} bytes); nothing was written"
        )


def _copy_link(step: Step, options: CopyOptions) -> None:
    if os.path.lexists(step.dest):
        if options.no_clobber:
            return
        os.unlink(step.dest)
    os.symlink(os.readlink(step.source), step.dest)


def run_plan(
    steps: list[Step], options: CopyOptions, observer: Observer | None = None
) -> list[FileResult]:
    """Carry out a plan in order; directories get their mode and mtime once filled."""
    results: list[FileResult] = []
    made_dirs: list[Step] = []
    for step in steps:
        try:
            if step.kind == "dir":
                os.makedirs(step.dest, exist_ok=True)
                made_dirs.append(step)
            elif step.kind == "link":
                _copy_link(step, options)
            else:
                result = copy_file(step.source, step.dest, options, observer)
                results.append(result)
                if options.sums_path and not result.skipped and result.digest:
                    append_sum_line(options.sums_path, result)
        except OpenspecError:
            raise
        except OSError as err:
            raise from_os_error(err, step.source, step.dest) from err
    for step in reversed(made_dirs):
        with contextlib.suppress(OSError):
            st = os.stat(step.source)
            os.chmod(step.dest, stat.S_IMODE(st.st_mode))
            os.utime(step.dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    return results


def append_sum_line(sums_path: str, result: FileResult) -> None:
    """Add ``result`` to a sum file in the format ``xxh128sum``/``sha256sum`` would write."""
    assert result.digest is not None
    line = hashing.format_sum_line(result.algo, result.digest, result.dest) + "\n"
    try:
        with open(sums_path, "a", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(line)
    except OSError as err:
        raise from_os_error(err, sums_path) from err
