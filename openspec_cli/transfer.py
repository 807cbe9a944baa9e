"""One file's transfer: started or reopened, checkpointed, retried, and finished atomically.

A file reaches its final name only by ``rename`` of a fully written, fsynced (and, if asked,
re-read and verified) partial file in the same directory, so the final name never holds a short
or wrong file. Every few chunks the transfer records a checkpoint: how many bytes are committed
and the digest of that prefix. An interrupted transfer keeps its partial file and checkpoint; a
resumed one re-hashes the partial and continues only from a prefix whose digest matches.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time

from openspec_cli import checkpoint as ckpt
from openspec_cli import hashing, retry
from openspec_cli.checkpoint import PARTIAL_SUFFIX, Checkpoint
from openspec_cli.chunking import STREAMING_TRIGGER
from openspec_cli.copy_records import CopyOptions, FileResult
from openspec_cli.engine import Pump, StreamStats
from openspec_cli.errors import (
    ExitCode,
    Interrupted,
    MismatchError,
    SourceChangedError,
    TransferIOError,
    describe_os_error,
    from_os_error,
)
from openspec_cli.fileio import (
    HoleMap,
    drop_read_cache,
    file_sink,
    free_space,
    fsync_dir,
    hole_map_of,
    is_pseudo,
    libc_call,
    libc_errno,
)
from openspec_cli.streams import hash_path

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from openspec_cli.engine import Observer
    from openspec_cli.hashing import Hasher

__all__ = ["PARTIAL_SUFFIX", "Transfer", "open_source", "start"]

#: Least time between two writes of a checkpoint sidecar (see Transfer._commit).
SAVE_INTERVAL = 0.2


def keeps_checkpoint(size: int) -> bool:
    """Files under the streaming trigger get no sidecar: copying them again is cheaper."""
    return size >= STREAMING_TRIGGER


def new_transfer_id() -> str:
    """A short id naming a transfer in messages, partial files and checkpoints.

    ``os.urandom`` is what ``secrets.token_hex`` reads; importing secrets (hmac, OpenSSL) would
    add ~8 ms to every copy's start-up."""
    return os.urandom(4).hex()


def _check_space(dest_dir: str, needed: int, src: str, dest: str) -> None:
    """Fail before writing when the destination filesystem clearly cannot hold the file."""
    free = free_space(dest_dir)
    if free is not None and needed > free:
        raise TransferIOError(
            f"'{src}' -> '{dest}': No space left on device (needs {needed} bytes, {free} free)"
        )


def is_sparse(st: os.stat_result) -> bool:
    """A regular file with fewer blocks than its length needs: it has holes (cp's test)."""
    blocks = getattr(st, "st_blocks", None)
    return blocks is not None and stat.S_ISREG(st.st_mode) and blocks * 512 < st.st_size


def _preallocate(fd: int, size: int) -> None:
    """Reserve blocks without changing the size, so a full disk shows up now, not at 90%.

    ``FALLOC_FL_KEEP_SIZE`` keeps the file's length meaning "bytes written", which resume relies
    on. Filesystems without fallocate simply skip this (glibc's posix_fallocate would instead
    write zeros over the whole file).
    """
    fallocate = libc_call("fallocate") if size > 0 else None
    if fallocate is not None and fallocate(fd, 1, 0, size) != 0:
        err = libc_errno()
        if err in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OSError(err, os.strerror(err))


class Transfer:
    """A running copy of one file into its partial, with the checkpoint that describes it."""

    def __init__(
        self,
        cp: Checkpoint,
        options: CopyOptions,
        observer: Observer,
        src_fd: int,
        out_fd: int,
        hasher: Hasher,
        offset: int,
    ) -> None:
        self.cp = cp
        #: The source has holes: all-zero chunks become holes in the copy too (as with cp).
        self.sparse = is_sparse(os.fstat(src_fd))
        self.options = options
        self.observer = observer
        self.src_fd = src_fd
        self.out_fd = out_fd
        self.hasher = hasher
        self.resumed_from = offset
        self.last: tuple[int, Hasher] = (offset, hasher.copy())
        self.stats = StreamStats(name=os.path.basename(cp.source.path), total=cp.size)
        self.stats.done = offset
        self.stats.transfer_id = cp.id
        self.persist = keeps_checkpoint(cp.size)
        self.renamed = False  # the final name is in place: an interrupt from here loses nothing
        self._saved_at = time.monotonic()
        self._on_pseudo: bool | None = None

    # -- the copy loop ------------------------------------------------------------------

    def run(self) -> FileResult:
        """Copy to the end, then finish; interruptions and errors keep a resumable checkpoint."""
        started = False  # the observer hears of a finish only after it heard of the start
        try:
            self.observer.stream_started(self.stats)
            started = True
            self._seek(self.resumed_from)
            self._pump_with_retries()
            return self._finish()
        except (KeyboardInterrupt, Interrupted) as exc:
            code = exc.exit_code if isinstance(exc, Interrupted) else ExitCode.INTERRUPTED
            if self.renamed:  # stopped after the rename: the copy is complete, nothing to resume
                with contextlib.suppress(OSError):
                    ckpt.delete(self.cp.id)
                raise Interrupted("interrupted", code) from None
            if not self.persist:
                self._abandon()
                raise Interrupted("interrupted", code) from None
            self._keep("interrupted")
            raise Interrupted(f"interrupted; resume with: {self.resume_hint()}", code) from None
        except SourceChangedError as exc:
            self._abandon()
            raise SourceChangedError(f"{exc.message}; the partial copy was removed") from None
        except MismatchError:
            self._abandon()
            raise
        finally:
            self._close()
            if started:
                self.observer.stream_finished(self.stats)

    def _pump_with_retries(self) -> None:
        holes = hole_map_of(self.cp.source.path, os.fstat(self.src_fd)) if self.sparse else None
        try:
            self._pump_with_retries_mapped(holes)
        finally:
            if holes is not None:
                holes.close()

    def _pump_with_retries_mapped(self, holes: HoleMap | None) -> None:
        retries_used = 0
        while True:
            try:
                Pump(
                    self.src_fd,
                    self.stats,
                    hasher=self.hasher,
                    sink=file_sink(
                        self.out_fd,
                        writeback=self.options.fsync,
                        drop_cache=self.options.no_cache,
                        sparse=self.sparse,
                        holes=holes,
                    ),
                    drop_source_cache=self.options.no_cache,
                    limiter=self.options.limiter,
                    pacer=self.options.pacer,
                    commit_every=self.options.checkpoint_every,
                    on_commit=self._commit,
                ).run()
                return
            except OSError as err:
                budget = retry.retry_budget(self.stats.done, self.cp.size)
                if not retry.is_transient(err) or retries_used >= budget:
                    self._fail(err)
                retries_used += 1
                self._record_retry(err)
                self.options.sleep(retry.backoff(retries_used))
                self._rewind()

    def _commit(self, offset: int, snap: Hasher) -> None:
        """Called by the engine every few chunks, after they were written.

        Retries rewind to the newest of these in memory; the sidecar is rewritten at most every
        ``SAVE_INTERVAL`` seconds, which keeps checkpointing under a percent of a fast copy
        (one save costs 0.2-0.4 ms on ext4) and bounds what a ``kill -9`` can cost.
        """
        if offset > self.cp.size and (self.cp.size or not self._pseudo()):
            _check_unchanged(self.cp, self.src_fd, offset)  # it grew under us: refused
        self.last = (offset, snap)
        if self.sparse:  # a hole at the end is no length yet; resume reads what the length says
            os.ftruncate(self.out_fd, offset)
        now = time.monotonic()
        if now - self._saved_at >= SAVE_INTERVAL:
            self._persist_last()
            self._saved_at = now

    def _pseudo(self) -> bool:
        """A file in /proc or /sys: its size says nothing (0 for most), so growing past it is
        no change. Asked once."""
        if self._on_pseudo is None:
            self._on_pseudo = _on_pseudo_filesystem(self.src_fd)
        return self._on_pseudo

    def _persist_last(self) -> None:
        offset, snap = self.last
        if offset > (self.cp.points[-1].offset if self.cp.points else 0):
            self.cp.add_point(offset, snap.hexdigest())
        self._save()

    def _save(self) -> None:
        """Write the sidecar; files under the streaming trigger have none (nothing to save)."""
        if self.persist:
            ckpt.save(self.cp)
            self.stats.checkpoints += 1

    def resume_hint(self) -> str:
        """How to continue after a stop: resume a checkpoint, or (small files) copy again."""
        return f"openspec resume {self.cp.id}" if self.persist else "the same copy again"

    def _record_retry(self, err: OSError) -> None:
        self.cp.retries.append(
            {
                "errno": retry.errno_name(err),
                "message": describe_os_error(err),
                "offset": self.stats.done,
                "at": time.time(),
            }
        )
        self.cp.last_error = describe_os_error(err)
        self.stats.retries += 1
        self._save()

    def _rewind(self) -> None:
        """After a transient error: reopen the source, check it, go back to the last commit."""
        offset, snap = self.last
        os.close(self.src_fd)
        self.src_fd = -1
        self.src_fd = open_source(self.cp)
        self.hasher = snap.copy()
        self.stats.done = offset
        os.ftruncate(self.out_fd, offset)
        self._seek(offset)

    def _seek(self, offset: int) -> None:
        os.lseek(self.src_fd, offset, os.SEEK_SET)
        os.lseek(self.out_fd, offset, os.SEEK_SET)

    def _fail(self, err: OSError, doing: str = "", advice: str = "") -> None:
        """A permanent error: keep everything for ``resume`` and say how to continue."""
        reason = describe_os_error(err)
        if self.persist:
            self._keep(reason)
        else:
            self._abandon()
        raise TransferIOError(
            f"'{self.cp.source.path}' -> '{self.cp.dest}': {doing}{reason}; "
            f"{advice or retry.advice(err)}, then run: {self.resume_hint()}"
        ) from err

    def _keep(self, reason: str) -> None:
        """Record the newest commit and the reason we stopped, for ``resume``."""
        self.cp.last_error = reason
        with contextlib.suppress(OSError, ckpt.CheckpointError):
            self._persist_last()

    def _abandon(self) -> None:
        """The data cannot be trusted (source changed, verification failed): drop it all."""
        with contextlib.suppress(OSError):
            os.unlink(self.cp.partial)
        ckpt.delete(self.cp.id)

    def _close(self) -> None:
        for fd in (self.src_fd, self.out_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.src_fd = self.out_fd = -1

    # -- finishing ------------------------------------------------------------------------

    def _finish(self) -> FileResult:
        cp = self.cp
        _check_unchanged(cp, self.src_fd, self.stats.done)
        try:
            if self.sparse:
                os.ftruncate(self.out_fd, self.stats.done)
            src_st = os.fstat(self.src_fd)
            os.fchmod(self.out_fd, self._owned_like_the_file_replaced(src_st))
            os.utime(self.out_fd, ns=(src_st.st_atime_ns, cp.source.mtime_ns))
            if self.options.fsync or self.options.no_cache:
                os.fsync(self.out_fd)
            if self.options.no_cache:  # the tail windows the sink had not dropped yet
                drop_read_cache(self.out_fd, 0, self.stats.done)
                drop_read_cache(self.src_fd, 0, self.stats.done)
        except OSError as err:
            self._fail(err)
        digest = self.hasher.hexdigest()
        if self.options.verify:
            # Buffers from the copy's governor: 8 streams verifying with their own went 4 MiB
            # over the 50 MB the default budget keeps the process under.
            again = hash_path(cp.partial, cp.algo, drop_cache=True, pacer=self.options.pacer)
            if again != digest:
                raise MismatchError(
                    f"'{cp.source.path}' -> '{cp.dest}': verification failed: "
                    f"wrote {again}, expected {digest}"
                )
        if not self._into_place():
            return FileResult(cp.source.path, cp.dest, 0, cp.algo, None, 0.0, skipped=True)
        self.renamed = True
        copied = ckpt.Fingerprint.of(cp.dest, os.fstat(self.out_fd))  # renaming moved its ctime
        if self.options.fsync:  # the rename made durable: now, or once per folder at the end
            folders = self.options.dirs_to_sync
            if folders is None:
                fsync_dir(os.path.dirname(cp.dest))
            else:
                folders.add(os.path.dirname(cp.dest))
        if self.persist:  # a small file never had a sidecar: no lookup for one to delete
            ckpt.delete(cp.id)
        return FileResult(
            cp.source.path,
            cp.dest,
            self.stats.done,
            cp.algo,
            digest,
            self.stats.seconds,
            list(self.stats.chunk_sizes),
            verified=self.options.verify,
            transfer_id=cp.id,
            resumed_from=self.resumed_from,
            retries=list(cp.retries),
            # A file in /proc or /sys changes with no trace in its stat: no journal vouches.
            fingerprints=None if self._pseudo() else (cp.source, copied),
        )

    def _owned_like_the_file_replaced(self, src_st: os.stat_result) -> int:
        """Give the copy the owner of the file it replaces, where we may (cp writes into that
        file, keeping it: a service's config replaced by root stays readable to the service);
        return the mode to set, the source's less any set-id bit whose owner differs now.

        Only the file that was there when the copy started counts (same inode, untouched since):
        one made at the name meanwhile, by someone who may write the folder, must not get the
        copy. A setuid file of another user copied by root would otherwise be setuid-root.
        """
        replaces = self.cp.options.get("replaces")
        with contextlib.suppress(OSError, TypeError, ValueError):
            ino, ctime_ns, uid, gid = replaces  # type: ignore[misc]
            now = os.lstat(self.cp.dest)
            if stat.S_ISREG(now.st_mode) and [now.st_ino, now.st_ctime_ns] == [ino, ctime_ns]:
                try:
                    os.fchown(self.out_fd, uid, gid)
                except PermissionError:  # not root: the group, if we are in it
                    with contextlib.suppress(PermissionError):
                        os.fchown(self.out_fd, -1, gid)
        copy = os.fstat(self.out_fd)
        mode = stat.S_IMODE(src_st.st_mode)
        if copy.st_uid != src_st.st_uid:
            mode &= ~stat.S_ISUID
        if copy.st_gid != src_st.st_gid:
            mode &= ~stat.S_ISGID
        return mode

    def _into_place(self) -> bool:
        """Give the finished copy its final name; False when ``-n`` finds the name taken.

        ``-n`` is checked once more here, atomically: a file that appeared at the name while we
        copied is someone's, and cp -n would not replace it either. If the rename fails (an
        immutable file, a directory made meanwhile), the whole copy is kept for ``resume``.
        """
        cp = self.cp
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # the rename says so
            if not os.path.samestat(os.lstat(cp.partial), os.fstat(self.out_fd)):
                ckpt.delete(cp.id)  # that name is no longer ours to resume into
                raise TransferIOError(
                    f"'{cp.partial}' was replaced by something else while it was being "
                    f"copied into; not renaming that to '{cp.dest}'"
                )
        try:
            if not self.options.no_clobber:
                os.replace(cp.partial, cp.dest)
            elif not rename_no_replace(cp.partial, cp.dest):
                self._abandon()
                return False
        except OSError as err:
            self.last = (self.stats.done, self.hasher.copy())  # all of it is there to resume
            with contextlib.suppress(OSError):  # what resume may replace: chattr -i moves ctime
                st = os.lstat(cp.dest)
                cp.options["dest_in_the_way"] = [st.st_ino, st.st_size, st.st_mtime_ns]
            self._fail(err, "cannot rename the finished copy into place: ", "fix that")
        return True


def rename_no_replace(src: str, dest: str) -> bool:
    """Rename ``src`` to ``dest`` unless ``dest`` exists, atomically; False if it exists.

    ``renameat2(RENAME_NOREPLACE)`` where the kernel and filesystem have it, else a hard link
    (which fails on an existing name just as atomically) and an unlink; a filesystem with
    neither gets a check and a rename, which is all it allows.
    """
    import errno

    renameat2 = libc_call("renameat2")
    if renameat2 is not None:
        at_fdcwd, no_replace = -100, 1
        if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dest), no_replace) == 0:
            return True
        code = libc_errno()
        if code == errno.EEXIST:
            return False
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), src, None, dest)
    try:
        os.link(src, dest)
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        if os.path.lexists(dest):
            return False
        os.rename(src, dest)
        return True
    os.unlink(src)
    return True


def _check_unchanged(cp: Checkpoint, fd: int, copied: int) -> None:
    """Refuse to finish a copy whose source was modified while we read it.

    The length of a file in /proc (0) or /sys (a page) says nothing of its content: there, as
    cp does, what was read is the copy (any other change still refuses it)."""
    changes = cp.source.differences(os.fstat(fd))
    if copied != cp.size and cp.size != 0 and not changes and not _on_pseudo_filesystem(fd):
        changes = [f"read {copied} of {cp.size} bytes"]
    if changes:
        raise SourceChangedError(
            f"'{cp.source.path}' changed while it was being copied ({', '.join(changes)})"
        )


def _on_pseudo_filesystem(fd: int) -> bool:
    """Whether ``fd`` is a file in /proc, /sys or their kind (see :func:`fileio.is_pseudo`)."""
    try:
        return is_pseudo(os.fstatvfs(fd))
    except OSError:
        return False


def open_source(cp: Checkpoint) -> int:
    """Open the source of ``cp`` and make sure it is the file the checkpoint describes."""
    try:
        fd = os.open(cp.source.path, os.O_RDONLY)
    except OSError as err:
        raise from_os_error(err, cp.source.path) from err
    changes = cp.source.differences(os.fstat(fd))
    if changes:
        os.close(fd)
        raise SourceChangedError(
            f"'{cp.source.path}' changed since transfer {cp.id} started ({', '.join(changes)})"
        )
    return fd


def start(src: str, dest: str, options: CopyOptions, observer: Observer) -> Transfer:
    """Open a fresh transfer: source, first checkpoint, then the partial file.

    The checkpoint is saved before the partial exists, so a ``kill -9`` at any moment leaves
    either nothing or a checkpoint that names the partial: never an orphan partial.
    """
    try:
        src_fd = os.open(src, os.O_RDONLY)
    except OSError as err:
        raise from_os_error(err, src) from err
    try:
        return _start_open(src, src_fd, dest, options, observer)
    except BaseException:
        os.close(src_fd)
        raise


def _start_open(
    src: str, src_fd: int, spelled: str, options: CopyOptions, observer: Observer
) -> Transfer:
    dest = os.path.abspath(spelled)
    st = os.fstat(src_fd)
    sparse = is_sparse(st)
    needed = st.st_blocks * 512 if sparse else st.st_size  # a sparse copy: what it holds
    _check_space(os.path.dirname(dest), needed, src, dest)
    # A small file is a read or two and a write: reserving its blocks or advising the kernel
    # of the reads costs it more than it saves.
    streamed = keeps_checkpoint(st.st_size)
    tid = new_transfer_id()
    part = ckpt.partial_path(dest, tid)
    cp = Checkpoint(
        id=tid,
        source=ckpt.Fingerprint.of(src, st),
        dest=dest,
        partial=part,
        algo=options.algo,
        size=st.st_size,
        owner=ckpt.Owner.current(),
        options=options.persistent(spelled),
    )
    with contextlib.suppress(OSError):  # the file this copy will replace, for its owner
        old = os.lstat(dest)
        if stat.S_ISREG(old.st_mode):
            cp.options["replaces"] = [old.st_ino, old.st_ctime_ns, old.st_uid, old.st_gid]
    if streamed:
        try:
            ckpt.save(cp)
        except ckpt.CheckpointError as err:  # found before any byte moved: a usage problem
            raise ckpt.CheckpointError(
                f"{err.message} ({ckpt.STATE_DIR_HINT})",
                ExitCode.USAGE,
            ) from err
    try:
        out_fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as err:
        ckpt.delete(tid)
        raise from_os_error(err, src, dest) from err
    try:
        ckpt.try_lock(out_fd)
        if streamed and not sparse:  # reserving every block would fill in the holes
            _preallocate(out_fd, st.st_size)
        if streamed and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(src_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return Transfer(cp, options, observer, src_fd, out_fd, hashing.new_hasher(options.algo), 0)
    except BaseException as err:  # an interrupt too: no partial is left that nothing names
        os.close(out_fd)
        os.unlink(part)
        ckpt.delete(tid)
        if isinstance(err, OSError):
            raise TransferIOError(f"'{src}' -> '{dest}': {describe_os_error(err)}") from err
        raise
