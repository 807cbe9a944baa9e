"""Digest algorithms, and sum lines as sha256sum, b2sum and xxhsum write them.

Reading and checking sum files (``verify -c``) is in :mod:`openspec_cli.sumfiles`, so that printing
a digest loads none of it. Pure: nothing here prints, reads files or imports the CLI.

Conventions, checked against the coreutils 9.1 and xxhsum 0.8.1 binaries and xxhsum 0.8.2's source:

- GNU line ``<hex>  <name>``; BSD ``--tag`` line ``<TAG> (<name>) = <hex>``; XXH3-64 in GNU
  style is ``XXH3_<hex>  <name>`` (xxhsum >= 0.8.2; 0.8.1 only prints the tag form for -H3).
- A name containing ``\\``, newline or carriage return is escaped (``\\\\``, ``\\n``, ``\\r``) and
  the line starts with ``\\``. coreutils 9 and xxhsum >= 0.8.2 do this; xxhsum 0.8.1 writes such
  names raw (a newline then splits the line). We always follow the GNU convention.
"""

from __future__ import annotations

from collections.abc import Callable

import xxhash

from openspec_cli import algorithms

BytesLike = bytes | bytearray | memoryview

#: False when running, True for mypy (see engine.py): Hasher is for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Hasher(Protocol):
        """What the engine needs from a digest object: hashlib and xxhash objects both fit."""

        def update(self, data: BytesLike, /) -> None: ...

        def hexdigest(self) -> str: ...

        def copy(self) -> Hasher:
            """An independent snapshot of the state so far (checkpoints keep these)."""
            ...


class AlgoSpec:
    """How to make one algorithm's hasher and how its sum lines look (a plain class: importing
    dataclasses would cost every command ~20 ms of start-up)."""

    __slots__ = ("factory", "hex_len", "tag", "xxhsum")

    def __init__(
        self, factory: Callable[[], Hasher], hex_len: int, tag: str, xxhsum: bool = False
    ) -> None:
        self.factory = factory
        self.hex_len = hex_len
        self.tag = tag
        self.xxhsum = xxhsum  # written by the xxhsum family (which names stdin "stdin")


def _openssl(name: str, for_security: bool = True) -> Callable[[], Hasher]:
    """A factory that imports hashlib (OpenSSL, ~6 ms) only when such a digest is asked for.

    md5 and sha1 are marked not-for-security: checksums, so FIPS hosts keep working.
    """

    def make() -> Hasher:
        import hashlib

        hasher: Hasher = hashlib.new(name, usedforsecurity=for_security)
        return hasher

    return make


def _blake2b_256() -> Hasher:
    """BLAKE2b with a 32-byte digest, as ``b2sum -l 256`` writes it."""
    import hashlib

    hasher: Hasher = hashlib.blake2b(digest_size=32)
    return hasher


SPECS: dict[str, AlgoSpec] = {
    "xxh128": AlgoSpec(xxhash.xxh3_128, 32, "XXH128", xxhsum=True),
    "xxh3": AlgoSpec(xxhash.xxh3_64, 16, "XXH3", xxhsum=True),
    "xxh64": AlgoSpec(xxhash.xxh64, 16, "XXH64", xxhsum=True),
    "xxh32": AlgoSpec(xxhash.xxh32, 8, "XXH32", xxhsum=True),
    "sha256": AlgoSpec(_openssl("sha256"), 64, "SHA256"),
    "sha1": AlgoSpec(_openssl("sha1", for_security=False), 40, "SHA1"),
    "md5": AlgoSpec(_openssl("md5", for_security=False), 32, "MD5"),
    "blake2b": AlgoSpec(_openssl("blake2b"), 128, "BLAKE2b"),
    "sha224": AlgoSpec(_openssl("sha224"), 56, "SHA224"),
    "sha384": AlgoSpec(_openssl("sha384"), 96, "SHA384"),
    "sha512": AlgoSpec(_openssl("sha512"), 128, "SHA512"),
    "blake2b-256": AlgoSpec(_blake2b_256, 64, "BLAKE2b-256"),
}

ALGORITHMS: tuple[str, ...] = tuple(SPECS)
if ALGORITHMS != algorithms.ALGORITHMS:  # the CLI's light copy of the names must agree
    raise ImportError("openspec_cli.algorithms is out of step with hashing.SPECS")
DEFAULT_ALGO = algorithms.DEFAULT_ALGO


def spec_for(algo: str) -> AlgoSpec:
    """The algorithm's spec; ValueError names the valid algorithms."""
    try:
        return SPECS[algo]
    except KeyError:
        raise ValueError(f"unknown algorithm {algo!r}; valid: {', '.join(ALGORITHMS)}") from None


def new_hasher(algo: str) -> Hasher:
    """A fresh streaming hasher; ValueError names the valid algorithms."""
    return spec_for(algo).factory()


class MultiHasher:
    """Several digests from one pass over the data. A sum line whose algorithm is only guessed
    (32 hex digits: xxh128 or md5) is checked with one read of the file, not one per guess;
    and standard input can be read only once."""

    def __init__(self, algos: tuple[str, ...], hashers: list[Hasher] | None = None) -> None:
        self.algos = algos
        self._hashers = hashers if hashers is not None else [new_hasher(a) for a in algos]

    def update(self, data: BytesLike, /) -> None:
        for hasher in self._hashers:
            hasher.update(data)

    def hexdigest(self) -> str:
        return self._hashers[0].hexdigest()

    def hexdigests(self) -> list[str]:
        return [hasher.hexdigest() for hasher in self._hashers]

    def copy(self) -> MultiHasher:
        return MultiHasher(self.algos, [hasher.copy() for hasher in self._hashers])


def digest_bytes(data: BytesLike, algo: str = DEFAULT_ALGO) -> str:
    """Hex digest of an in-memory buffer, for small inputs and tests."""
    hasher = new_hasher(algo)
    hasher.update(data)
    return hasher.hexdigest()


def hex_length(algo: str) -> int:
    """Number of hex digits the algorithm's digest has."""
    return spec_for(algo).hex_len


def display_name_for_stdin(algo: str) -> str:
    """GNU tools call stdin ``-`` in their output; the xxhsum family calls it ``stdin``."""
    return "stdin" if spec_for(algo).xxhsum else "-"


# --- names -------------------------------------------------------------------------------------


def _needs_escape(name: str) -> bool:
    return "\\" in name or "\n" in name or "\r" in name


def escape_name(name: str) -> str:
    """GNU sum-file escaping of one name (without the leading line marker)."""
    return name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


# --- formatting --------------------------------------------------------------------------------


def format_sum_line(algo: str, hexdigest: str, name: str, *, tag: bool = False) -> str:
    """One sum line exactly as the real tool prints it, without the newline."""
    spec = spec_for(algo)
    marker, shown = ("\\", escape_name(name)) if _needs_escape(name) else ("", name)
    if tag:
        return f"{marker}{spec.tag} ({shown}) = {hexdigest}"
    prefix = "XXH3_" if algo == "xxh3" else ""
    return f"{marker}{prefix}{hexdigest}  {shown}"
