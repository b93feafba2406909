"""restoreagent: plan, execute and learn chains of image-restoration tools.

Importing the package is cheap on purpose: heavy modules (torch, pyiqa, tools) are imported
by the parts that need them, so one broken optional dependency cannot break the package, and
``restoreagent --help`` starts without torch (``tests/test_lean.py`` checks). Public names that
live in heavier modules are resolved on first access (module ``__getattr__``).
"""

__version__ = "0.1.0"

# name -> module that defines it, imported when the name is first used
_LAZY: dict[str, str] = {
    "Agent": ".api",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
