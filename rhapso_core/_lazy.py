"""Lazy package exports (PEP 562), so that importing one light submodule (a stage's
parameters) does not pull in numba, zarr or scipy through its package's ``__init__``.

The command line validates parameters before anything heavy is imported; a bad
``--set`` must answer in well under a second.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping


class _LazyPackage(types.ModuleType):
    """A package whose exported function may share its submodule's name (``solver.solve``):
    the import system's binding of the submodule as the package attribute is ignored for
    those names, so the function wins, as it did with eager imports."""

    _shadowed: frozenset = frozenset()

    def __setattr__(self, name, value):
        if (name in type(self)._shadowed and isinstance(value, types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}"):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, table: Mapping[str, tuple[str, ...]]) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``table`` maps submodule -> names it exports.

    A name is imported from its submodule on first access and then cached on the package.
    A name equal to its submodule's name (``solve`` in ``solver.solve``) stays the function.
    """
    where = {name: module for module, names in table.items() for name in names}
    shadowed = frozenset(n for n, m in where.items() if m.rsplit(".", 1)[-1] == n)
    if shadowed:
        pkg = sys.modules[package]
        pkg.__class__ = type("LazyPackage", (_LazyPackage,), {"_shadowed": shadowed})
        for name in shadowed:  # a submodule bound before this call
            if isinstance(vars(pkg).get(name), types.ModuleType):
                del vars(pkg)[name]

    def __getattr__(name: str):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module if "." in module else f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
