"""What one file's copy is asked (:class:`CopyOptions`) and what it reports (:class:`FileResult`).

Shared by the transfer, the scheduler, trees, journals and the Python API, which is why they
live apart from the transfer itself.
"""

from __future__ import annotations

import os
import time

from openspec_cli import hashing
from openspec_cli.records import Record

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from openspec_cli import checkpoint as ckpt
    from openspec_cli.engine import Pacer, RateLimiter

DEFAULT_CHECKPOINT_EVERY = 5


class CopyOptions(Record):
    """How to copy; the defaults are the safe ones."""

    __slots__ = (
        "algo",
        "recursive",
        "no_clobber",
        "verify",
        "fsync",
        "sums_path",
        "limiter",
        "checkpoint_every",
        "restart",
        "sleep",
        "pacer",
        "no_cache",
        "journal",
        "dirs_to_sync",
    )

    def __init__(
        self,
        algo: str = hashing.DEFAULT_ALGO,
        recursive: bool = False,
        no_clobber: bool = False,
        verify: bool = False,
        fsync: bool = True,
        sums_path: str | None = None,
        limiter: RateLimiter | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        restart: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        pacer: Pacer | None = None,
        no_cache: bool = False,
        journal: str | None = None,
        dirs_to_sync: set[str] | None = None,
    ) -> None:
        self.algo = algo
        self.recursive = recursive
        self.no_clobber = no_clobber
        self.verify = verify
        self.fsync = fsync
        self.sums_path = sums_path
        self.limiter = limiter
        self.checkpoint_every = checkpoint_every
        self.restart = restart
        self.sleep = sleep
        self.pacer = pacer
        self.no_cache = no_cache
        #: The journal of the copy of several files this transfer is part of (see unfinished).
        self.journal = journal
        #: With fsync, where a copy of many files collects the folders its renames went into,
        #: to sync each once at its end (see scheduler.copy_all); None: each file syncs its own.
        self.dirs_to_sync = dirs_to_sync

    def persistent(self, dest: str) -> dict[str, Any]:
        """The options a later ``resume`` must honour, stored in the checkpoint.

        ``dest`` as the user spelled it: the name the ``--sums`` line gives the file, so that a
        line written by ``resume`` reads like those the copy itself wrote.
        """
        return {
            "verify": self.verify,
            "fsync": self.fsync,
            # Absolute: resume may run from another directory.
            "sums": os.path.abspath(self.sums_path) if self.sums_path else None,
            "sums_name": dest if self.sums_path else None,
            "checkpoint_every": self.checkpoint_every,
            "no_clobber": self.no_clobber,
            "journal": self.journal,
        }


class FileResult(Record):
    """What happened to one file; the ``--json`` summary is built from these."""

    __slots__ = (
        "source",
        "dest",
        "bytes",
        "algo",
        "digest",
        "seconds",
        "chunk_sizes",
        "verified",
        "skipped",
        "transfer_id",
        "resumed_from",
        "retries",
        "reused",
        "fingerprints",
    )

    def __init__(
        self,
        source: str,
        dest: str,
        bytes: int,
        algo: str,
        digest: str | None,
        seconds: float,
        chunk_sizes: list[int] | None = None,
        verified: bool = False,
        skipped: bool = False,
        transfer_id: str | None = None,
        resumed_from: int = 0,
        retries: list[dict[str, Any]] | None = None,
        reused: bool = False,
        fingerprints: tuple[ckpt.Fingerprint, ckpt.Fingerprint] | None = None,
    ) -> None:
        self.source = source
        self.dest = dest
        self.bytes = bytes
        self.algo = algo
        self.digest = digest
        self.seconds = seconds
        self.chunk_sizes: list[int] = chunk_sizes if chunk_sizes is not None else []
        self.verified = verified
        self.skipped = skipped
        self.transfer_id = transfer_id
        self.resumed_from = resumed_from
        self.retries: list[dict[str, Any]] = retries if retries is not None else []
        #: Not copied now: an earlier run of the same tree copy did, and nothing changed since.
        self.reused = reused
        #: The source as it was read and the copy as it was renamed into place, for a tree's
        #: journal: a stat afterwards could describe a source changed since it was read.
        self.fingerprints = fingerprints

    @property
    def throughput_bps(self) -> float:
        """Bytes per second over what this run moved."""
        moved = self.bytes - self.resumed_from
        return moved / self.seconds if self.seconds > 0 else 0.0
