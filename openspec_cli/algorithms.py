"""The digest algorithms' names, without importing any hashing code.

Kept apart from ``hashing`` so that building the command line (help texts, option checks) does
not load xxhash and OpenSSL: ``openspec --version`` stays fast. ``hashing`` checks at import
that its registry matches this list.
"""

ALGORITHMS: tuple[str, ...] = (
    "xxh128",
    "xxh3",
    "xxh64",
    "xxh32",
    "sha256",
    "sha1",
    "md5",
    "blake2b",
    "sha224",
    "sha384",
    "sha512",
    "blake2b-256",
)
DEFAULT_ALGO = "xxh128"
