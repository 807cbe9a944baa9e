"""File and kernel I/O beneath the engine: whole reads and writes, the sink that writes a copy
(write-back, dropping cached pages, holes of sparse files), and libc calls os lacks.

Kept apart from the engine's pump, which moves chunks without caring where they go; these know
about files, pages and the kernel.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable

#: False when running, True for mypy (see engine).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from openspec_cli.engine import Sink


def pread_full(fd: int, buf: memoryview, offset: int) -> int:
    """Fill ``buf`` from ``offset`` of a regular file; fewer bytes only at its end."""
    done = 0
    size = len(buf)
    while done < size:
        n = os.preadv(fd, [buf[done:]], offset + done)  # EINTR is retried by Python (PEP 475)
        if not n:
            break
        done += n
    return done


def write_all(fd: int, data: memoryview) -> None:
    """Write every byte of ``data``; ``os.write`` may write less than asked."""
    written = 0
    size = len(data)
    while written < size:
        written += os.write(fd, data[written:])


#: Start write-back after this many new bytes, so the final fsync finds little left to do.
WRITEBACK_EVERY = 8 * 1024 * 1024


_LIBC_SIGNATURES = {
    "sync_file_range": ("c_int", "c_int64", "c_int64", "c_uint"),
    "fallocate": ("c_int", "c_int", "c_int64", "c_int64"),
    "renameat2": ("c_int", "c_char_p", "c_int", "c_char_p", "c_uint"),
}


@functools.cache
def libc_call(name: str) -> Callable[..., int] | None:
    """A Linux libc function Python's os module lacks (looked up once), or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    func = getattr(ctypes.CDLL(None, use_errno=True), name, None)
    if func is None:
        return None
    func.argtypes = [getattr(ctypes, t) for t in _LIBC_SIGNATURES[name]]
    call: Callable[..., int] = func
    return call


def libc_errno() -> int:
    """errno left by the last :func:`libc_call` function on this thread."""
    import ctypes

    return ctypes.get_errno()


@functools.lru_cache(maxsize=8)
def _zeros(n: int) -> bytes:
    return bytes(n)


def all_zero(view: memoryview) -> bool:
    """Whether a chunk is all zero bytes: three probes settle data at once, a copy and one
    comparison (~7 GB/s) settle the rest."""
    n = len(view)
    if not n or view[0] or view[n - 1] or view[n >> 1]:
        return False
    return view.tobytes() == _zeros(n)


class HoleMap:
    """Where a sparse file keeps data and where it has holes, asked of the filesystem
    (``SEEK_DATA``/``SEEK_HOLE``) through an fd of its own, since seeking moves the offset."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def pieces(self, start: int, end: int) -> list[tuple[int, int, bool]]:
        """[start, end) cut into (from, to, is_data) runs."""
        found: list[tuple[int, int, bool]] = []
        pos = start
        while pos < end:
            try:
                data = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError as err:
                if err.errno != errno.ENXIO:
                    raise
                data = end  # no data from here on
            if data > pos:
                found.append((pos, min(data, end), False))
                pos = min(data, end)
                continue
            hole = min(os.lseek(self.fd, pos, os.SEEK_HOLE), end)
            found.append((pos, hole, True))
            pos = hole
        return found

    def close(self) -> None:
        os.close(self.fd)


def hole_map_of(path: str, like: os.stat_result) -> HoleMap | None:
    """A HoleMap of the file at ``path`` if it is still the file ``like`` describes and the
    platform can tell holes from data; else None."""
    if not hasattr(os, "SEEK_DATA"):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (like.st_dev, like.st_ino):
        os.close(fd)
        return None
    return HoleMap(fd)


def file_sink(
    fd: int,
    writeback: bool = False,
    drop_cache: bool = False,
    sparse: bool = False,
    holes: HoleMap | None = None,
) -> Sink:
    """A sink that writes every chunk to ``fd``.

    With ``writeback`` (when the copy will be fsynced) it asks the kernel to start writing each
    finished 8 MiB to the device while we copy on (``SYNC_FILE_RANGE_WRITE``, asynchronous):
    measured on a 1 GiB copy, the closing fsync drops from ~0.9 s to ~0.01 s and the whole copy
    gets ~30% faster, instead of the disk idling while we fill the page cache.

    With ``drop_cache`` (``--no-cache``) each 8 MiB window is, one window later, waited for and
    dropped from the page cache, so copying a file larger than RAM does not evict everyone
    else's cached data. Waiting one window behind keeps the device busy meanwhile.

    With ``sparse`` (the source has holes), an all-zero chunk is skipped with a seek instead of
    written, leaving a hole as cp does; the caller sets the final length (``ftruncate``). With
    ``holes``, the source's own map, a chunk that holds some data is written piece by piece:
    only its data, so a disk image with a few KiB in every MiB stays as small as it was (whole
    chunks took 8 MiB for 256 KiB of data in a 64 MiB image). A "hole" that reads as anything
    but zeros (the source changed meanwhile) is written: what was hashed is what lands.
    """
    at = [os.lseek(fd, 0, os.SEEK_CUR)] if holes is not None else [0]

    def skip_or_write(view: memoryview) -> None:
        if all_zero(view):
            os.lseek(fd, len(view), os.SEEK_CUR)
        else:
            write_all(fd, view)

    def put(view: memoryview) -> None:
        if not sparse:
            write_all(fd, view)
            return
        if holes is None:
            skip_or_write(view)
        elif all_zero(view):
            os.lseek(fd, len(view), os.SEEK_CUR)
        else:
            start = at[0]
            for a, b, data in holes.pieces(start, start + len(view)):
                piece = view[a - start : b - start]
                if data:
                    write_all(fd, piece)
                else:
                    skip_or_write(piece)
        at[0] += len(view)

    sync_range = libc_call("sync_file_range") if (writeback or drop_cache) else None
    if sync_range is None:
        return put
    start = os.lseek(fd, 0, os.SEEK_CUR)
    marks = [start, start, start]  # written so far, handed to write-back, dropped from cache

    def sink_with_writeback(view: memoryview) -> None:
        put(view)
        marks[0] += len(view)
        if marks[0] - marks[1] < WRITEBACK_EVERY:
            return
        if drop_cache and marks[1] > marks[2]:
            # SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER: clean pages can be dropped.
            sync_range(fd, marks[2], marks[1] - marks[2], 7)
            os.posix_fadvise(fd, marks[2], marks[1] - marks[2], os.POSIX_FADV_DONTNEED)
            marks[2] = marks[1]
        sync_range(fd, marks[1], marks[0] - marks[1], 2)  # SYNC_FILE_RANGE_WRITE
        marks[1] = marks[0]

    return sink_with_writeback


def drop_read_cache(fd: int, start: int, end: int) -> None:
    """Forget pages of a source we have already read (``--no-cache``)."""
    if end > start and hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)


def fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable; some filesystems refuse, which is harmless."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def is_pseudo(vfs: os.statvfs_result) -> bool:
    """proc, sysfs and their kind report no blocks at all: no size, no free space to judge."""
    return vfs.f_blocks == 0


def free_space(path: str) -> int | None:
    """Bytes still writable on the filesystem of ``path``; None when it cannot tell (a pseudo
    filesystem) or cannot be asked."""
    try:
        vfs = os.statvfs(path)
    except OSError:
        return None
    return None if is_pseudo(vfs) else vfs.f_bavail * vfs.f_frsize
