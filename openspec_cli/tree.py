"""What a copy does around its files: directories, symlinks, and the ``--sums`` file.

Separate from ``transfer`` (one file's data) so that each stays small; the scheduler calls
these before and after it runs the file transfers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading

from openspec_cli import hashing
from openspec_cli.copy_records import CopyOptions, FileResult
from openspec_cli.errors import from_os_error
from openspec_cli.plan import Step

#: False when running, True for mypy (see engine.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def _make_room(step: Step, options: CopyOptions) -> bool:
    """Clear the name for a symlink or special file made anew; False when ``-n`` keeps what
    is there."""
    if not os.path.lexists(step.dest):
        return True
    if options.no_clobber:
        return False
    os.unlink(step.dest)
    return True


def _copy_link(step: Step, options: CopyOptions) -> None:
    if _make_room(step, options):
        os.symlink(os.readlink(step.source), step.dest)


def _make_special(step: Step, options: CopyOptions) -> None:
    """A FIFO, socket or device node like the source's (see ``plan._made_anew``)."""
    if not _make_room(step, options):
        return
    st = os.lstat(step.source)
    os.mknod(step.dest, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
    os.chmod(step.dest, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
    os.utime(step.dest, ns=(st.st_atime_ns, st.st_mtime_ns))


#: A directory the copy made, and which one it is (device, inode).
Made = tuple[Step, int, int]


def prepare_tree(
    steps: list[Step],
    options: CopyOptions,
    made_root: Callable[[], None] | None = None,
    ours: Callable[[str], bool] | None = None,
    made: Callable[[str], None] | None = None,
) -> tuple[list[Step], list[Made]]:
    """Make the directories, symlinks and special files of a plan; return the file steps left
    to copy and the directories that are the copy's own (see :func:`finish_tree`).

    ``made_root`` is called as soon as the first directory (the tree's root) exists: a tree
    copy marks it then, so that an interrupt among thousands of directories still leaves a
    copy that running it again continues. ``ours(path)``: an existing folder an earlier run of
    this copy made. ``made(path)`` is told of each folder made now, for the next run to know.

    A new directory gets its source's permissions for group and others at once, never more
    (a 0700 source folder is not readable by others while its files are copied in), and all
    of them for us, who must write into it; its exact mode comes at the end. So a folder an
    interrupted copy made inside an existing one is never left wider, nor stuck private.
    """
    files: list[Step] = []
    own: list[Made] = []
    for step in steps:
        try:
            if step.kind == "dir":
                try:
                    os.mkdir(step.dest, 0o700)
                    source_mode = stat.S_IMODE(os.stat(step.source).st_mode)
                    os.chmod(step.dest, source_mode | stat.S_IRWXU)
                    if made is not None:
                        made(step.dest)
                    mine = True
                except FileExistsError:
                    if not os.path.isdir(step.dest):
                        raise
                    mine = ours is not None and ours(step.dest)
                if mine:
                    st = os.lstat(step.dest)
                    own.append((step, st.st_dev, st.st_ino))
                if made_root is not None:
                    made_root()
                    made_root = None
            elif step.kind == "link":
                _copy_link(step, options)
            elif step.kind == "special":
                _make_special(step, options)
            else:
                files.append(step)
        except OSError as err:
            raise from_os_error(err, step.source, step.dest) from err
    return files, own


def finish_tree(made: list[Made]) -> None:
    """Give the directories the copy made their source's mode and mtime, once their contents
    are in. Folders that were there already are the user's, as with cp -r: copying
    ``src/.`` into a home directory must not give it the mode of ``src``.

    Through the directory itself, checked to be the one made: a name swapped meanwhile for a
    symlink (or another folder) by someone who may write the parent would otherwise have its
    target's mode changed, by root."""
    for step, device, inode in reversed(made):
        with contextlib.suppress(OSError):
            st = os.stat(step.source)
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(step.dest, flags)
            try:
                here = os.fstat(fd)
                if (here.st_dev, here.st_ino) == (device, inode):
                    os.fchmod(fd, stat.S_IMODE(st.st_mode))
                    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)


def remove_keeping_dir_times(path: str) -> None:
    """Unlink ``path`` (if it is there) without moving its directory's times, which a copy that
    has finished set to its source's (finish_tree)."""
    parent = os.path.dirname(path) or "."
    with contextlib.suppress(OSError):
        st = os.stat(parent)
        os.unlink(path)
        os.utime(parent, ns=(st.st_atime_ns, st.st_mtime_ns))


_SUMS_LOCK = threading.Lock()


def record_sum(options: CopyOptions, result: FileResult) -> None:
    """Append ``result`` to the ``--sums`` file, if one was asked for (safe from many streams)."""
    if options.sums_path and not result.skipped and result.digest:
        with _SUMS_LOCK:
            append_sum_line(options.sums_path, result)


def append_sum_line(sums_path: str, result: FileResult) -> None:
    """Add ``result`` to a sum file in the format ``xxh128sum``/``sha256sum`` would write.

    Under the file's lock, which :func:`keep_last_sum_lines` holds while it edits the file:
    another openspec run sharing the file must not append into the middle of that."""
    assert result.digest is not None
    line = hashing.format_sum_line(result.algo, result.digest, result.dest) + "\n"
    try:
        with open(sums_path, "a", encoding="utf-8", errors="surrogateescape") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            fh.write(line)
    except OSError as err:
        raise from_os_error(err, sums_path) from err


def _sum_key(line: str) -> tuple[str, int] | None:
    """What a GNU-style sum line is about, as this module writes them: its name, and its
    digest's length (so another tool's sha256sum line for the same file is not ours)."""
    head, sep, name = line.partition("  ")
    return (name, len(head)) if sep and head else None


def _lines(text: str) -> list[str]:
    """Lines ending at "\\n" only: a name may hold other characters str.splitlines splits at."""
    pieces = text.split("\n")
    return [piece + "\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def keep_last_sum_lines(sums_path: str, written: list[FileResult]) -> None:
    """In a sum file a copy appended to across runs, keep one line per file it wrote: the
    newest. A file copied again (changed since, or cut short by a kill) otherwise keeps an
    older line, and ``xxh128sum -c`` would fail it. Lines for other files stay as they are.

    The file is edited where it is, under the lock appends take: through a symlink, keeping
    its owner, mode and ACL, losing no line another run appends meanwhile, and with no
    temporary name beside it that someone sharing the folder could plant first.
    """
    keys = {
        _sum_key(hashing.format_sum_line(r.algo, r.digest, r.dest))
        for r in written
        if r.digest and not r.skipped
    }
    try:
        fd = os.open(sums_path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "rb") as fh:
            lines = _lines(fh.read().decode("utf-8", "surrogateescape"))
        last = {_sum_key(line.rstrip("\n")): i for i, line in enumerate(lines)}
        kept = [
            line
            for i, line in enumerate(lines)
            if (key := _sum_key(line.rstrip("\n"))) not in keys or last[key] == i
        ]
        if len(kept) == len(lines):
            return
        data = "".join(kept).encode("utf-8", "surrogateescape")
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except OSError as err:
        raise from_os_error(err, sums_path) from err
    finally:
        os.close(fd)
