"""Exit codes and the exceptions that carry them.

Every expected failure is raised as an :class:`OpenspecError` whose message is the one line a user
sees, and a stop by signal as :class:`Interrupted`; ``cli`` is the only place that turns these
into output and an exit status.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import stat
import sys

#: False when running, True for mypy (see engine.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO


class ExitCode(enum.IntEnum):
    """The one exit-code table; README and man page document these same numbers."""

    OK = 0
    MISMATCH = 1  # a checksum or comparison did not match (GNU sha256sum -c uses 1 too)
    USAGE = 2  # bad arguments or bad input: missing file, directory without -r, same file
    IO_ERROR = 3  # reading or writing failed: no space, device error, permission lost mid-copy
    INTERRUPTED = 130  # SIGINT (128 + 2)
    BROKEN_PIPE = 141  # the reader of our stdout went away (128 + SIGPIPE), like cat
    TERMINATED = 143  # SIGTERM (128 + 15)


class _Outcome(BaseException):
    """One line for the user and the exit code that goes with it."""

    exit_code: ExitCode = ExitCode.IO_ERROR

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class OpenspecError(_Outcome, Exception):
    """An expected failure: one line for the user and the exit code that goes with it."""


class UsageError(OpenspecError):
    """The request cannot be carried out as given; nothing was changed."""

    exit_code = ExitCode.USAGE


class MismatchError(OpenspecError):
    """Data was read fine but is not what it should be."""

    exit_code = ExitCode.MISMATCH


class TransferIOError(OpenspecError):
    """The OS refused a read or write while data was moving."""

    exit_code = ExitCode.IO_ERROR


class SourceChangedError(TransferIOError):
    """The source was modified while we copied it, so the copy cannot be trusted."""


class Interrupted(_Outcome):
    """A signal asked us to stop; whatever was partial has been dealt with.

    Not an :class:`OpenspecError`, as KeyboardInterrupt is not an Exception: the loops that
    report a bad file and go on (``except OpenspecError``) must never swallow a stop.
    """

    exit_code = ExitCode.INTERRUPTED


class BrokenPipe(OpenspecError):
    """The consumer of stdout closed the pipe; a normal end for a pipeline stage."""

    exit_code = ExitCode.BROKEN_PIPE


#: Control characters as messages show them: a newline in a name would break the one-line rule,
#: and an escape sequence would reach the terminal (retitle it, recolour it, hide output). C1
#: controls too: some terminals take U+009B as the start of a sequence, as ESC [.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]} | {
    ord("\n"): "\\n",
    ord("\t"): "\\t",
    ord("\r"): "\\r",
}


def printable(text: str) -> str:
    """``text`` with control characters escaped (``'no\\nsuch'``), for a terminal or a log."""
    return text.translate(_CONTROLS)


def describe_os_error(err: OSError) -> str:
    """Return the OS reason for ``err`` as ``strerror`` (``No such file or directory``)."""
    if err.strerror:
        return err.strerror
    if err.errno:
        return os.strerror(err.errno)
    return str(err) or type(err).__name__


def from_os_error(err: OSError, path: str, path2: str | None = None) -> OpenspecError:
    """Map an OSError at ``path`` to the user-facing error, naming both paths when there are two."""
    where = f"'{path}'" if path2 is None else f"'{path}' -> '{path2}'"
    msg = f"{where}: {describe_os_error(err)}"
    if err.errno in _bad_input_errnos():
        return UsageError(msg)
    return TransferIOError(msg)


@functools.cache
def _bad_input_errnos() -> frozenset[int]:
    """What a path itself is wrong about, found on opening it: bad input (2), where the other
    failures of the system are I/O errors (3). A symlink loop, a name too long, a socket (no
    device to open), a read-only filesystem and a closed stdin are the user's to fix."""
    import errno

    return frozenset(
        {
            errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
            errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO, errno.EROFS, errno.EBADF,
        }
    )  # fmt: skip


_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISREG, "a file"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def kind_name(mode: int) -> str:
    """What a stat mode is, for messages: ``a FIFO``, ``a directory``, ..."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a special file"


def write_stderr(text: str, stream: TextIO | None = None, output: bool = False) -> None:
    """Write to stderr (or ``stream``) with file names as their bytes, as coreutils print them.

    Names that are not valid UTF-8 come to Python as surrogate escapes, which ``sys.stderr``
    would print as ``\\udcff``; encoded back here, 'bad\\xffname' reads as on the command line.
    A message that cannot be written is dropped (see :func:`_drop_stderr`); ``output`` that
    cannot (a digest printed there) raises the OSError.
    """
    stream = stream or sys.stderr
    if output and id(stream) in _lost:  # it would go to /dev/null now, as silently
        raise _lost[id(stream)]
    buffer = getattr(stream, "buffer", None)
    try:
        if buffer is None:
            stream.write(text)
        else:
            stream.flush()
            buffer.write(text.encode(stream.encoding or "utf-8", "surrogateescape"))
        stream.flush()
    except OSError as err:
        _lost.setdefault(id(stream), err)
        _drop_stderr(stream)
        if output:  # not a message but what was asked for (``cat --hash f 2> SUMS``)
            raise


#: Why a stderr stream (by id) was sent to /dev/null, once it was.
_lost: dict[int, OSError] = {}


def _drop_stderr(stream: TextIO) -> None:
    """stderr cannot be written (a full disk behind ``2>log``, a closed pipe): nobody can read
    the message, but the exit code must still say what happened. Python would report the
    failure, fail again, and exit 1, the code for a mismatch. What is pending is dropped and
    what follows goes to /dev/null."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
    with contextlib.suppress(OSError):
        stream.flush()  # the bytes still pending now go to /dev/null
