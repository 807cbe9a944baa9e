"""openspec: copy, stream and hash very large files, safely and fast.

``from openspec_cli import copy, cat, hash_file, compare`` gives the Python API; it is loaded on
first use so that ``openspec --version`` stays fast.
"""

from __future__ import annotations

#: False when running, True for mypy: `openspec --version` should not pay for importing typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
_API = ("copy", "resume", "transfers", "discard", "prune", "cat", "hash_file", "compare")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from openspec_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'openspec_cli' has no attribute {name!r}")
