"""What tests need to know when callsd.core is compiled by mypyc (``CALLSD_MYPYC=1`` at build time, docs/adr/0053).

A compiled class keeps its attributes in a C struct: it has no ``__slots__`` to list them by (mypyc lists them in
``__mypyc_attrs__``), no ``__dict__``, and it cannot be subclassed by Python code. The module's source is the
reference either way; these helpers let a test read the same state from both builds."""

from __future__ import annotations

import importlib.machinery
from typing import Any


def is_compiled(module: Any) -> bool:
    """Whether ``module`` was loaded from a C extension (a mypyc build) rather than its ``.py`` source."""
    return isinstance(getattr(module, "__spec__", None) and module.__spec__.loader,
                      importlib.machinery.ExtensionFileLoader)


def state_names(cls: type) -> tuple[str, ...]:
    """The instance attributes a slotted class declares, in order: ``__slots__`` in Python, ``__mypyc_attrs__``
    compiled (the same names, in the same order)."""
    names = cls.__dict__.get("__slots__")
    if names is None:
        names = cls.__dict__["__mypyc_attrs__"]
    return tuple(names)
