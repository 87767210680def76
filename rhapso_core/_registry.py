"""A name -> entry table filled by the modules that define the entries (image formats, transform models).

The built-in modules are imported on the first lookup, not when the registry is imported:
a format's heavy reader (h5py, tensorstore) or a model's numerics load only where used.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Entries by name, in registration order; ``builtin_modules`` register theirs when imported."""

    def __init__(self, builtin_modules: Sequence[str]):
        self.builtin_modules = tuple(builtin_modules)
        self.entries: dict[str, T] = {}
        self._loaded = False
        self._lock = threading.Lock()  # tasks in threads may make their first lookup at the same time

    def register(self, name: str, entry: T) -> T:
        """Add (or replace, for the same name) an entry; returns it so modules can keep a handle."""
        self.entries[name] = entry
        return entry

    def ensure_loaded(self) -> dict[str, T]:
        """Import the built-in modules once; returns the entries."""
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    for name in self.builtin_modules:
                        importlib.import_module(name)
                    self._loaded = True
        return self.entries
