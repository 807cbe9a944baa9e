"""A base for small result objects: a readable repr and equality by value.

dataclasses would give the same, but importing it costs ~20 ms (it imports inspect), paid by
every command on the paths that use these classes; that was a tenth of ``openspec verify``.
"""

from __future__ import annotations


class Record:
    """Subclasses list their fields in ``__slots__`` and set them all in ``__init__``."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())
