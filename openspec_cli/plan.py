"""Planning a copy the way cp would: what goes where, refused before any byte is written."""

from __future__ import annotations

import contextlib
import os
import stat

from openspec_cli.checkpoint import owner_of_partials_for, partial_owner
from openspec_cli.errors import TransferIOError, UsageError, describe_os_error, kind_name
from openspec_cli.fileio import free_space
from openspec_cli.records import Record

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator


class Step(Record):
    """One action of a plan: make a directory, copy a file, or recreate a symlink.

    A file step keeps what planning learnt of its source, its length and the bytes it takes on
    disk (less than its length when sparse), so that deciding how to copy it stats it no more.
    """

    __slots__ = ("kind", "source", "dest", "size", "allocated")

    def __init__(
        self, kind: str, source: str, dest: str, size: int = 0, allocated: int = 0
    ) -> None:
        self.kind = kind  # "dir" | "file" | "link" | "special" (FIFO, socket, device)
        self.source = source
        self.dest = dest
        self.size = size
        self.allocated = allocated

    @classmethod
    def file(cls, source: str, dest: str, st: os.stat_result) -> Step:
        blocks = getattr(st, "st_blocks", None)
        used = st.st_size if blocks is None else min(blocks * 512, st.st_size)
        return cls("file", source, dest, st.st_size, used)


def _lstat(path: str) -> os.stat_result | None:
    """The entry at ``path``, or None when there is none (also when a parent is not a dir)."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:  # a parent we may not search: cp says "cannot stat"
        raise UsageError(f"cannot stat '{path}': {describe_os_error(err)}") from err


def _unwritable(path: str, need: int = os.W_OK | os.X_OK) -> str | None:
    """Why we may not write in (or to) ``path``, as the OS would say it; None if we may.
    os.access gives no reason, and "Permission denied" for a read-only mount sends a user
    after file modes that are fine."""
    if os.access(path, need):
        return None
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "Read-only file system"
    except OSError:
        pass
    return "Permission denied"


def _missing_parent(target: str) -> str | None:
    """Why ``target`` cannot be created in its parent directory, or None if it can."""
    parent = os.path.dirname(target.rstrip(os.sep)) or "."
    if os.path.isdir(parent):
        return None
    return "Not a directory" if os.path.exists(parent) else "No such file or directory"


def _stat_source(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as err:
        raise UsageError(f"cannot stat '{path}': {describe_os_error(err)}") from err


def tree_source(sources: list[str], recursive: bool) -> str | None:
    """The one directory of ``copy -r DIR DEST``, the form that may create DEST; else None."""
    if not (recursive and len(sources) == 1 and os.path.isdir(sources[0])):
        return None
    return None if _copied_as_link(sources[0], recursive) else sources[0]


def _copied_as_link(src: str, recursive: bool) -> bool:
    """With -r, a symlink named as SRC is copied as a symlink, as cp -r does (it implies -P);
    ``LINK/`` names the directory it points to."""
    return recursive and not src.endswith(os.sep) and os.path.islink(src)


def plan_copy(
    sources: list[str],
    dest: str,
    recursive: bool = False,
    into: bool = False,
    no_clobber: bool = False,
) -> list[Step]:
    """Decide every step of ``copy SOURCES DEST`` as cp would, or refuse before any change.

    ``into``: copy the (one) source directory's contents into DEST even though DEST exists,
    as ``cp -r SRC/. DEST`` does (``SRC/.`` asks for that by itself). ``no_clobber``: an
    existing destination will be skipped, so what kind of file it is does not matter.
    """
    if not sources:
        raise UsageError("missing source operand")
    dest_st = _lstat(dest)
    dest_is_dir = dest_st is not None and os.path.isdir(dest)
    if len(sources) > 1 and not dest_is_dir:
        raise UsageError(f"target '{dest}' is not a directory")
    if dest.endswith(os.sep) and not dest_is_dir:
        exists = os.path.lexists(dest.rstrip(os.sep))
        # cp -r DIR NEW/ makes NEW; a file cannot end in '/'
        if exists or tree_source(sources, recursive) is None:
            reason = "Not a directory" if exists else "No such file or directory"
            raise UsageError(f"cannot create '{dest}': {reason}")
        dest = dest.rstrip(os.sep)
    steps: list[Step] = []
    planned: dict[str, str] = {}  # target -> the source going there
    for src in sources:
        name = os.path.basename(os.path.normpath(src))
        contents = into or os.path.basename(src.rstrip(os.sep) or os.sep) == "."
        target = os.path.join(dest, name) if dest_is_dir and not contents else dest
        first = planned.get(os.path.abspath(target))
        if first is not None:
            if first == src or _same_entry(first, src):
                continue  # named twice: copied once, as cp does
            raise UsageError(f"will not overwrite just-created '{target}' with '{src}'")
        planned[os.path.abspath(target)] = src
        steps.extend(_plan_one(src, target, recursive, no_clobber))
    return steps


def _same_entry(a: str, b: str) -> bool:
    try:
        return os.path.samestat(os.lstat(a), os.lstat(b))
    except OSError:
        return False


def _plan_one(src: str, target: str, recursive: bool, no_clobber: bool = False) -> list[Step]:
    if _copied_as_link(src, recursive):
        _refuse_directory_in_the_way(src, target, _lstat(target))
        return [Step("link", src, target)]
    st = _stat_source(src)
    if stat.S_ISDIR(st.st_mode):
        if not recursive:
            raise UsageError(f"-r not specified; omitting directory '{src}'")
        where = _where(target)
        _refuse_into_itself(src, target, where, [st])
        target_st = _lstat(target)
        if target_st is not None and not stat.S_ISDIR(target_st.st_mode):
            raise UsageError(f"cannot overwrite non-directory '{target}' with directory '{src}'")
        if target_st is None:
            parent = os.path.dirname(target.rstrip(os.sep)) or "."
            reason = _missing_parent(target) or _unwritable(parent)
            if reason:
                raise UsageError(f"cannot create directory '{target}': {reason}")
        steps = list(_walk_tree(src, target, no_clobber))
        inner = (os.stat(step.source) for step in steps[1:] if step.kind == "dir")
        _refuse_into_itself(src, target, where, inner)
        return steps
    _check_file_target(src, st, target, no_clobber)  # as named first: messages use that name
    resolved = _through_symlink(target)
    if resolved != target:
        _check_file_target(src, st, resolved, no_clobber)
    return [Step.file(src, resolved, st)]


def _where(target: str) -> set[tuple[int, int]]:
    """The directories ``target`` would be in (device, inode), from its nearest existing one
    up: what a source directory must not be, however it is reached (a bind mount of it)."""
    found = set()
    path = os.path.realpath(target)
    while True:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            found.add((st.st_dev, st.st_ino))
        parent = os.path.dirname(path)
        if parent == path:
            return found
        path = parent


def _refuse_into_itself(
    src: str, target: str, where: set[tuple[int, int]], dirs: Iterable[os.stat_result]
) -> None:
    """cp's "into itself": by path, or when one of the tree's directories ``dirs`` is ``where``
    the copy would go (see :func:`_where`: the tree, or a folder in it, bind-mounted there)."""
    real_src, real_target = os.path.realpath(src), os.path.realpath(target)
    if (
        real_target == real_src
        or real_target.startswith(real_src + os.sep)
        or any((st.st_dev, st.st_ino) in where for st in dirs)
    ):
        raise UsageError(f"cannot copy a directory, '{src}', into itself, '{target}'")


def _through_symlink(target: str) -> str:
    """Like cp, write through a symlink at the destination to the file it names; refuse a
    dangling one rather than create a file somewhere unexpected."""
    if not os.path.islink(target):
        return target
    if not os.path.exists(target):
        raise UsageError(f"not writing through dangling symlink '{target}'")
    return os.path.realpath(target)


def _check_file_target(src: str, st: os.stat_result, target: str, no_clobber: bool = False) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"cannot copy '{src}': {kind_name(st.st_mode)}, not a regular file")
    target_st = _lstat(target)
    if target_st is not None:
        _check_replaceable(src, target, target_st, no_clobber)
        _refuse_same_file(src, st, target)
    reason = _missing_parent(target)
    if reason:
        raise UsageError(f"cannot create regular file '{target}': {reason}")
    if target_st is not None and no_clobber:
        return  # skipped: nothing is written there
    reason = _unwritable(os.path.dirname(target) or ".")
    if reason and target_st is not None:  # cp could write into it
        raise UsageError(
            f"cannot replace '{target}': its folder is not writable ({reason}), and the copy "
            f"is made beside it (to write into it: openspec cat '{src}' > '{target}')"
        )
    if reason:
        raise UsageError(f"cannot create regular file '{target}': {reason}")
    if not os.access(src, os.R_OK):
        raise UsageError(f"cannot open '{src}' for reading: Permission denied")


def check_replaceable(src: str, target: str, no_clobber: bool = False) -> None:
    """Planning's checks of an existing destination, for a transfer started over later
    (``resume --restart``): it must not replace what a new copy would refuse to."""
    target_st = _lstat(target)
    if target_st is not None:
        _check_replaceable(src, target, target_st, no_clobber)


def _user_name(uid: int) -> str:
    import pwd  # here: only a refusal needs it

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"user {uid}"


def _refuse_directory_in_the_way(src: str, target: str, target_st: os.stat_result | None) -> None:
    """A file, symlink or special file is never put where a directory is (cp refuses too)."""
    if target_st is not None and stat.S_ISDIR(target_st.st_mode):
        raise UsageError(f"cannot overwrite directory '{target}' with non-directory '{src}'")


def _refuse_same_file(src: str, st: os.stat_result, target: str) -> None:
    """Copying a file onto itself, whatever the spelling, would truncate it (cp refuses too)."""
    with contextlib.suppress(OSError):
        same = os.path.samestat(st, os.stat(target))
        if same:
            raise UsageError(f"'{src}' and '{target}' are the same file")


def _check_replaceable(
    src: str, target: str, target_st: os.stat_result, no_clobber: bool = False
) -> None:
    """A copy is renamed over its destination: fine for a file or a symlink, never for a
    directory, and never for a device or FIFO, which cp would write into (as root, renaming
    over /dev/null would replace the device with a plain file).

    Nor for a file we may not write: cp opens it for writing and is refused, while a rename
    needs only the directory, and would replace a write-protected or someone else's file."""
    mode = target_st.st_mode
    _refuse_directory_in_the_way(src, target, target_st)
    if no_clobber:
        return  # it is skipped
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise UsageError(
            f"not replacing '{target}': {kind_name(mode)}, not a regular file "
            f"(to write into it: openspec cat '{src}' > '{target}')"
        )
    if stat.S_ISREG(mode) and not os.access(target, os.W_OK):
        try:  # for the reason: "Operation not permitted" for an immutable file, for instance
            os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError as err:
            raise UsageError(f"cannot overwrite '{target}': {describe_os_error(err)}") from err
    if stat.S_ISREG(mode) and target_st.st_uid != os.geteuid() != 0:
        # We may write it (group, ACL), but the copy renamed over it would be ours, with the
        # source's mode: its owner could lose it. cp writes into it instead.
        raise UsageError(
            f"not replacing '{target}': it belongs to {_user_name(target_st.st_uid)}, and "
            f"the copy would be yours (to write into it: openspec cat '{src}' > '{target}')"
        )


def check_sums_file(path: str) -> None:
    """``--sums FILE`` must be appendable before the first byte is copied, not after."""
    try:
        st: os.stat_result | None = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as err:
        raise UsageError(f"cannot write sums file '{path}': {describe_os_error(err)}") from err
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"cannot write sums file '{path}': Is a directory")
        reason = _unwritable(path, os.W_OK)
        if reason:
            raise UsageError(f"cannot write sums file '{path}': {reason}")
        return
    reason = _missing_parent(path) or _unwritable(os.path.dirname(path) or ".")
    if reason:
        raise UsageError(f"cannot create sums file '{path}': {reason}")


def _walk_tree(src: str, target: str, no_clobber: bool = False) -> Iterator[Step]:
    target_st = _lstat(target)
    if target_st is not None and not stat.S_ISDIR(target_st.st_mode):
        raise UsageError(f"cannot overwrite non-directory '{target}' with directory '{src}'")
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
            yield from _walk_tree(child_src, child_dst, no_clobber)
        else:
            st = entry.stat()
            if stat.S_ISREG(st.st_mode):
                _check_file_target_in_tree(child_src, st, child_dst, no_clobber)
                yield Step.file(child_src, child_dst, st)
            elif _made_anew(st.st_mode):
                _refuse_directory_in_the_way(child_src, child_dst, _lstat(child_dst))
                yield Step("special", child_src, child_dst)
            else:
                raise UsageError(f"cannot copy '{child_src}': {kind_name(st.st_mode)}")


def _made_anew(mode: int) -> bool:
    """Inside a tree, as cp -r does, a FIFO or socket is made anew rather than read (there is
    no file to read), and so is a device node when we may make one (root)."""
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return True
    return (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and os.geteuid() == 0


def _check_file_target_in_tree(
    src: str, st: os.stat_result, target: str, no_clobber: bool = False
) -> None:
    """Like :func:`_check_file_target`, but the parent may not exist yet (we create it)."""
    target_st = _lstat(target)
    if target_st is not None:
        _check_replaceable(src, target, target_st, no_clobber)
        _refuse_same_file(src, st, target)  # in a tree: hard links, a bind mount of it
    if not os.access(src, os.R_OK):
        raise UsageError(f"cannot open '{src}' for reading: Permission denied")


# ---------------------------------------------------------------------------- free space


def check_space(
    steps: list[Step],
    no_clobber: bool = False,
    skipped: Callable[[Step], bool] | None = None,
) -> None:
    """Refuse, before the first byte, a copy of several files that cannot fit (each file's own
    check comes too late for a tree: its first files would be written for nothing).

    The copy is played through in order on each destination filesystem: a file needs its
    allocated size less what its partial files already hold (a rerun continues them), while
    the file it replaces stays until the rename and frees its space only then. Files that will
    not be written (``-n`` on an existing name, or ``skipped``: a tree rerun's completed files)
    count for nothing. Parallel streams (-j) can need more at once; the per-file check remains.
    """
    files = [step for step in steps if step.kind == "file"]
    if len(files) < 2:
        return  # one file: its own check says it best
    disks: dict[int, _Disk] = {}
    held = _Held()
    places: dict[str, tuple[str, int]] = {}  # destination folder -> (existing folder, device)
    for step in files:
        if (no_clobber and os.path.lexists(step.dest)) or (skipped and skipped(step)):
            continue
        folder, name = os.path.split(os.path.abspath(step.dest))
        if folder not in places:
            where = _existing_ancestor(folder)
            places[folder] = (where, os.stat(where).st_dev)
        where, device = places[folder]
        disk = disks.setdefault(device, _Disk(where))
        partial, old = held.bytes_for(folder, name)
        disk.write(max(step.allocated - partial, 0), old)
    for disk in disks.values():
        disk.check(len(files))


class _Disk:
    """One destination filesystem as the copy goes: bytes in use beyond today's, and the most."""

    def __init__(self, place: str) -> None:
        self.place = place
        self.used = 0
        self.peak = 0

    def write(self, need: int, freed_after: int) -> None:
        self.used += need
        self.peak = max(self.peak, self.used)
        self.used -= freed_after  # the file it replaced goes at the rename

    def check(self, files: int) -> None:
        free = free_space(self.place)
        if free is not None and self.peak > free:
            raise TransferIOError(
                f"'{self.place}': No space left on device ({files} files need up to "
                f"{self.peak} bytes at once, {free} free)"
            )


class _Held:
    """Bytes already at a destination: its partial files, and the file itself (one listing of
    each directory, however many files go there)."""

    def __init__(self) -> None:
        self._folders: dict[str, tuple[dict[str, int], dict[str, int]]] = {}

    def bytes_for(self, folder: str, name: str) -> tuple[int, int]:
        """(bytes in partial files for ``name`` in ``folder``, bytes of the file now there)."""
        if folder not in self._folders:
            self._folders[folder] = _allocated_in(folder)
        files, partials = self._folders[folder]
        partial = partials.get(owner_of_partials_for(name), 0) if partials else 0
        return partial, files.get(name, 0)


def _allocated_in(folder: str) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes on disk of each file in ``folder``, and of the partial files of each name."""
    files: dict[str, int] = {}
    partials: dict[str, int] = {}
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    files[entry.name] = entry.stat(follow_symlinks=False).st_blocks * 512
                    owner = partial_owner(entry.name)
                    if owner is not None:
                        partials[owner] = partials.get(owner, 0) + files[entry.name]
    return files, partials


def _existing_ancestor(path: str) -> str:
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path
