"""A base for small value objects: a readable repr, equality by value, and ``replace``.

dataclasses would give the same, but importing it costs ~20 ms (it imports inspect), paid by
every command on the paths that use these classes; that was a tenth of ``openspec verify`` and
of ``openspec copy``'s start-up.
"""

from __future__ import annotations

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    R = TypeVar("R", bound="Record")


class Record:
    """Subclasses list their fields in ``__slots__`` and take them all in ``__init__``, by name."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, in declaration order (a shallow copy)."""
        return {name: getattr(self, name) for name in self.__slots__}

    def replace(self: R, **changes: Any) -> R:
        """A copy with ``changes`` applied, like ``dataclasses.replace``."""
        return type(self)(**{**self.as_dict(), **changes})

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())
