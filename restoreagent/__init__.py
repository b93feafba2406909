"""restoreagent: plan, execute and learn chains of image-restoration tools.

    from restoreagent import Agent
    result = Agent().restore("photo.jpg")     # plan with the shipped planner, then execute
    result.save("restored.jpg")

Importing the package is cheap on purpose: :class:`Agent` and :class:`Result` are imported on
first access, and heavy modules (torch, pyiqa, tools) by the parts that need them, so one broken
optional dependency cannot break the package.
"""

__version__ = "0.1.0"
__all__ = ["Agent", "Result", "__version__"]


def __getattr__(name: str):
    if name in ("Agent", "Result"):  # lazy: the API module imports numpy and the plan language
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'restoreagent' has no attribute {name!r}")
