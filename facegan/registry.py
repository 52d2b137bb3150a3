"""`Registry`: named entries of one kind (architectures, losses), each joining in one place.

A dict from name to entry whose `add` refuses a name twice and whose `get` answers an unknown name with
one line naming the registered ones, as every user-facing mistake is (facegan.errors)."""

from __future__ import annotations

from typing import TypeVar

from facegan.errors import FaceganError

T = TypeVar("T")


class Registry(dict[str, T]):
    """Entries by name; `flag` is the option that names one (e.g. "--arch"), for the error line."""

    def __init__(self, flag: str) -> None:
        super().__init__()
        self.flag = flag

    def add(self, name: str, entry: T) -> T:
        """File `entry` under `name`; a second entry of the same name is a programming error."""
        if name in self:
            raise ValueError(f"{self.flag} {name!r} is registered twice")
        self[name] = entry
        return entry

    def get_entry(self, name: str) -> T:
        """The entry `name`, or one FaceganError line naming the registered ones."""
        try:
            return self[name]
        except KeyError:
            raise FaceganError(f"unknown {self.flag} {name!r}; choose one of {', '.join(self)}") from None
