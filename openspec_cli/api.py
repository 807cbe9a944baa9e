"""The small typed Python API; the command line is a thin layer over these functions.

Failures raise :class:`openspec_cli.errors.OpenspecError` subclasses carrying a one-line
message and an exit code.
"""

from __future__ import annotations

from collections.abc import Sequence

from openspec_cli import hashing, streams, transfer
from openspec_cli.engine import Observer, RateLimiter
from openspec_cli.streams import CatResult, Difference
from openspec_cli.transfer import CopyOptions, FileResult


def _limiter(rate: float | None) -> RateLimiter | None:
    return RateLimiter(rate) if rate else None


def copy(
    sources: str | Sequence[str],
    dest: str,
    *,
    recursive: bool = False,
    no_clobber: bool = False,
    verify: bool = False,
    algo: str = hashing.DEFAULT_ALGO,
    fsync: bool = True,
    sums: str | None = None,
    limit_rate: float | None = None,
    observer: Observer | None = None,
) -> list[FileResult]:
    """Copy like ``cp`` (``-r`` with ``recursive``), hashing on the fly; see ``transfer``."""
    srcs = [sources] if isinstance(sources, str) else list(sources)
    options = CopyOptions(
        algo=algo,
        recursive=recursive,
        no_clobber=no_clobber,
        verify=verify,
        fsync=fsync,
        sums_path=sums,
        limiter=_limiter(limit_rate),
    )
    steps = transfer.plan_copy(srcs, dest, recursive)
    return transfer.run_plan(steps, options, observer)


def cat(
    paths: Sequence[str],
    out_fd: int = 1,
    *,
    algo: str | None = None,
    limit_rate: float | None = None,
    observer: Observer | None = None,
) -> CatResult:
    """Concatenate ``paths`` (``-`` is stdin) to ``out_fd``, optionally hashing the stream."""
    return streams.cat(list(paths), out_fd, algo, _limiter(limit_rate), observer)


def hash_file(path: str, algo: str = hashing.DEFAULT_ALGO) -> str:
    """Hex digest of a file, as ``xxh128sum`` (or the tool for ``algo``) prints it."""
    return transfer.hash_path(path, algo)


def compare(left: str, right: str, *, recursive: bool = False) -> list[Difference]:
    """Differences between two files (or trees with ``recursive``); empty when identical."""
    if recursive:
        return streams.compare_trees(left, right)
    diff = streams.compare_files(left, right)
    return [diff] if diff else []
