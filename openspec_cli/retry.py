"""Which I/O errors are worth retrying, how often, how long to wait, and what to tell the user.

Pure: the transfer asks these questions and does the waiting with an injectable sleep.
"""

from __future__ import annotations

import errno

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import random

#: Errors a device, network filesystem or busy kernel can clear up by itself.
TRANSIENT = frozenset(
    {
        errno.EINTR,
        errno.EAGAIN,
        errno.EIO,
        errno.ETIMEDOUT,
        errno.ESTALE,
        errno.EBUSY,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENOLCK,
        errno.ENOBUFS,
        errno.ENOMEM,
    }
)

#: What to do about the errors that will not go away by themselves.
ADVICE = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space or raise the quota",
    errno.EFBIG: "make room for a file this large (a filesystem or ulimit -f limit)",
    errno.EROFS: "remount the destination read-write",
    errno.EACCES: "fix the permissions",
    errno.EPERM: "fix the permissions",
    errno.ENOENT: "restore the missing file or directory",
}

BASE_RETRIES = 3
EXTRA_RETRIES = 7


def is_transient(err: OSError) -> bool:
    """True when retrying the same operation may succeed."""
    return err.errno in TRANSIENT


def errno_name(err: OSError) -> str:
    """``ENOSPC`` for an OSError, for summaries and JSON."""
    return errno.errorcode.get(err.errno or 0, str(err.errno))


def retry_budget(done: int, size: int) -> int:
    """Retries allowed: more the further we are, since there is more work to lose late on."""
    fraction = done / size if size > 0 else 0.0
    return BASE_RETRIES + int(EXTRA_RETRIES * min(max(fraction, 0.0), 1.0))


def backoff(
    attempt: int, rng: random.Random | None = None, base: float = 0.05, cap: float = 2.0
) -> float:
    """Exponential backoff with jitter (half to full), so parallel retries do not march in step."""
    if rng is None:
        import random  # here, not at the top: it costs every copy ~2 ms of start-up

        rng = random.Random()
    delay = min(cap, base * (2 ** max(attempt - 1, 0)))
    return float(delay * rng.uniform(0.5, 1.0))


def advice(err: OSError) -> str:
    """A short hint for a permanent error, or a generic one."""
    return ADVICE.get(err.errno or 0, "fix the cause")
