"""One registry style for methods, benchmarks and model adapters: a name -> item mapping whose
``register`` refuses a name twice (a programming error, raised at import)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Registry(dict[str, T]):
    """``REG.register("name")`` decorates a class (or ``REG.add("name", item)`` adds an object)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(self, name: str, item: T) -> T:
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({self[name]!r} and {item!r})")
        self[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(item: T) -> T:
            if isinstance(item, type) and hasattr(item, "name"):
                item.name = name  # type: ignore[attr-defined]  # the class knows its registry name
            return self.add(name, item)

        return decorate
