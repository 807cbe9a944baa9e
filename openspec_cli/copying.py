"""Copying one file as asked: a fresh transfer, or one continued from its checkpoint.

``copy_file`` picks up an interrupted transfer of the same pair by itself; ``resume`` continues
(or, with ``restart``, starts over) a transfer named by its id; ``discard`` forgets one. A
transfer is continued only from the prefix of its partial file that hashes to a checkpoint
again (:func:`verified_prefix`): nothing written by an earlier run is trusted unverified.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from openspec_cli import checkpoint as ckpt
from openspec_cli import hashing
from openspec_cli.checkpoint import Checkpoint
from openspec_cli.chunking import MAX_CHUNK
from openspec_cli.copy_records import CopyOptions, FileResult
from openspec_cli.engine import NullObserver, StreamStats
from openspec_cli.errors import (
    SourceChangedError,
    TransferIOError,
    UsageError,
    describe_os_error,
    from_os_error,
)
from openspec_cli.fileio import libc_call
from openspec_cli.transfer import Transfer, open_source, start

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from openspec_cli.engine import Observer
    from openspec_cli.hashing import Hasher

__all__ = ["copy_file", "discard", "resume", "verified_prefix"]


def verified_prefix(
    fd: int, points: list[ckpt.Point], algo: str, stats: StreamStats | None = None
) -> tuple[int, Hasher]:
    """Re-hash a partial file and return the longest prefix whose digest matches a checkpoint.

    Returns the offset and the hash state at that offset, ready to continue from. Bytes after it
    (a torn tail, corruption) are never trusted.
    """
    hasher = hashing.new_hasher(algo)
    best: tuple[int, Hasher] = (0, hasher.copy())
    buf = memoryview(bytearray(MAX_CHUNK))
    pos = 0
    os.lseek(fd, 0, os.SEEK_SET)
    for point in sorted(points, key=lambda p: p.offset):
        while pos < point.offset:
            n = os.readv(fd, [buf[: min(len(buf), point.offset - pos)]])
            if not n:
                return best
            hasher.update(buf[:n])
            pos += n
            if stats is not None:
                stats.done = pos
        if hasher.hexdigest() != point.digest:
            return best
        best = (pos, hasher.copy())
    return best


def _reopen(cp: Checkpoint, options: CopyOptions, observer: Observer) -> Transfer:
    """Open an interrupted transfer, trusting only the prefix of its partial that re-verifies."""
    try:
        src_fd = open_source(cp)
    except SourceChangedError as exc:
        raise SourceChangedError(
            f"{exc.message}; start over with: openspec resume --restart {cp.id}"
        ) from None
    try:
        out_fd = os.open(cp.partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as err:  # named as the user knows it (the destination's folder is gone)
        os.close(src_fd)
        if err.errno == errno.ELOOP:
            raise _not_our_partial(cp, "a symbolic link") from err
        kind = type(from_os_error(err, cp.dest))
        raise kind(f"cannot create regular file '{cp.dest}': {describe_os_error(err)}") from err
    st = os.fstat(out_fd)
    strange = (
        "not a regular file" if not stat.S_ISREG(st.st_mode)
        else "a file with other hard links" if st.st_nlink > 1
        else "someone else's file" if st.st_uid != os.geteuid()
        else ""
    )  # fmt: skip
    if strange:
        for fd in (src_fd, out_fd):
            os.close(fd)
        raise _not_our_partial(cp, strange)
    if not ckpt.try_lock(out_fd):
        for fd in (src_fd, out_fd):
            os.close(fd)
        pid = cp.owner.pid if cp.owner else "?"
        raise UsageError(f"transfer {cp.id} is in progress (pid {pid})")
    try:
        stats = StreamStats(name=f"verify {cp.id}", total=cp.bytes_done)
        offset, hasher = verified_prefix(out_fd, cp.points, cp.algo, stats)
        os.ftruncate(out_fd, offset)
        sync_range = libc_call("sync_file_range") if options.fsync else None
        if sync_range is not None and offset:
            # The prefix may still be dirty in the page cache (an interrupted run never
            # fsynced it): start writing it out now, while the rest is copied, rather than
            # leave it all to the closing fsync. SYNC_FILE_RANGE_WRITE does not wait.
            sync_range(out_fd, 0, offset, 2)
        cp.points = [p for p in cp.points if p.offset <= offset]
        cp.bytes_done = offset
        cp.attempts += 1
        cp.owner = ckpt.Owner.current()
        ckpt.save(cp)
    except OSError as err:
        for fd in (src_fd, out_fd):
            os.close(fd)
        raise TransferIOError(f"'{cp.partial}': {describe_os_error(err)}") from err
    return Transfer(cp, options, observer, src_fd, out_fd, hasher, offset)


def _not_our_partial(cp: Checkpoint, what: str) -> ckpt.CheckpointError:
    """Something else sits where the partial file was: writing through it would overwrite a
    file outside the copy (a symlink's target, a hard link's other names)."""
    return ckpt.CheckpointError(
        f"'{cp.partial}' is {what}, not the partial file of transfer {cp.id}; not writing "
        f"through it. Start over with: openspec resume --restart {cp.id}"
    )


def _options_for(cp: Checkpoint, base: CopyOptions) -> CopyOptions:
    stored = cp.options
    return CopyOptions(
        algo=cp.algo,
        verify=bool(stored.get("verify", base.verify)),
        fsync=bool(stored.get("fsync", base.fsync)),
        sums_path=stored.get("sums", base.sums_path),
        no_clobber=bool(stored.get("no_clobber", False)),
        limiter=base.limiter,
        checkpoint_every=int(stored.get("checkpoint_every", base.checkpoint_every)),
        sleep=base.sleep,
        pacer=base.pacer,
        no_cache=base.no_cache,
        journal=stored.get("journal"),
    )


def resume(
    transfer_id: str,
    options: CopyOptions | None = None,
    observer: Observer | None = None,
    check_dest: Callable[[str, str, bool], None] | None = None,
    finished: Callable[[str, FileResult], None] | None = None,
) -> FileResult:
    """Continue transfer ``transfer_id`` (``restart`` in options: start it over).

    ``check_dest(source, dest, no_clobber)``: what planning refuses of an existing destination
    (someone else's file, a write-protected one), applied before starting over, which writes
    a new copy as a fresh ``copy`` would. ``finished(journal, result)``: told of the file
    completed, when the transfer was part of a copy of several files with that journal.
    """
    options = options or CopyOptions()
    cp = ckpt.load(transfer_id)
    opts = _options_for(cp, options)
    observer = observer or NullObserver()
    if opts.no_clobber and os.path.lexists(cp.dest):
        # Copied with -n, and something has taken the name since: it is not ours to replace.
        discard(cp)
        return FileResult(cp.source.path, cp.dest, 0, cp.algo, None, 0.0, skipped=True)
    if options.restart:
        if check_dest is not None:
            check_dest(cp.source.path, cp.dest, opts.no_clobber)
        discard(cp)
        again = start(cp.source.path, cp.dest, opts, observer)
        again.cp.options["sums_name"] = cp.options.get("sums_name")
        result = again.run()
    else:
        _refuse_newer_dest(cp)
        result = _reopen(cp, opts, observer).run()
    if opts.sums_path:
        from openspec_cli.tree import append_sum_line, keep_last_sum_lines

        name = cp.options.get("sums_name")
        named = result.replace(dest=name) if name else result
        append_sum_line(opts.sums_path, named)
        keep_last_sum_lines(opts.sums_path, [named])
    journal = cp.options.get("journal")
    if finished is not None and isinstance(journal, str):
        finished(journal, result)
    return result


def _refuse_newer_dest(cp: Checkpoint) -> None:
    """A destination written after the transfer last ran is someone else's newer file: resuming
    would silently replace it with the old transfer's source. (One that was there before the
    copy started is what the copy meant to replace, as cp would.)"""
    try:
        st = os.stat(cp.dest)
    except OSError:
        return
    if cp.options.get("dest_in_the_way") == [st.st_ino, st.st_size, st.st_mtime_ns]:
        return  # the file that stopped the rename, its data untouched (chattr -i, chmod)
    if st.st_ctime > cp.updated:
        raise UsageError(
            f"'{cp.dest}' was written after transfer {cp.id} stopped; to replace it anyway: "
            f"openspec resume --restart {cp.id}, or forget the transfer: "
            f"openspec resume --discard {cp.id}"
        )


def discard(cp: Checkpoint) -> None:
    """Forget a transfer: its partial file and its checkpoint (refused while it runs)."""
    state = ckpt.state_of(cp)
    if state.startswith("running"):
        raise UsageError(f"transfer {cp.id} is in progress {state.removeprefix('running ')}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(cp.partial)
    ckpt.delete(cp.id)


def copy_file(
    src: str,
    dest: str,
    options: CopyOptions,
    observer: Observer | None = None,
    known: Mapping[tuple[str, str], Checkpoint] | None = None,
) -> FileResult:
    """Copy one regular file; picks up an interrupted transfer of the same pair by itself.

    ``known`` maps (source, dest) to checkpoints already read, so a tree of many files reads
    the state directory once rather than once per file.
    """
    observer = observer or NullObserver()
    key = (os.path.abspath(src), os.path.abspath(dest))
    earlier = known.get(key) if known is not None else ckpt.find_for(*key)
    if options.no_clobber and os.path.lexists(dest):
        # As resume does: an interrupted -n copy to a name now taken can never finish.
        if (
            earlier is not None
            and earlier.options.get("no_clobber")
            and not ckpt.state_of(earlier).startswith("running")
        ):
            discard(earlier)
        return FileResult(src, dest, 0, options.algo, None, 0.0, skipped=True)
    if earlier is not None:
        state = ckpt.state_of(earlier)
        if state.startswith("running"):
            raise UsageError(
                f"transfer {earlier.id} is in progress {state.removeprefix('running ')}"
            )
        # Nothing to resume from a missing partial: a fresh copy re-reads the source as it is.
        fresh = state in ("source changed", "partial missing")
        if options.restart or fresh or earlier.algo != options.algo:
            discard(earlier)
        else:
            result = _reopen(earlier, options, observer).run()
            return result.replace(source=src, dest=dest)
    result = start(src, dest, options, observer).run()
    return result.replace(source=src, dest=dest)
