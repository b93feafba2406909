"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class RestoreAgentError(Exception):
    """Base class: the message is complete and shown to the user as is."""


class ImageError(RestoreAgentError):
    """An input or output image cannot be used (missing, not an image, truncated, too large...)."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class PlanError(RestoreAgentError):
    """A plan names a task or tool that does not exist, or is malformed."""


class UnknownNameError(RestoreAgentError):
    """A name (degradation, tool, planner, metric) is not known; the message lists what exists."""


def by_name(items, name: str, what: str, listing: str):
    """The item of ``items`` whose ``.name`` is ``name``; else an UnknownNameError listing them all."""
    items = list(items)
    for item in items:
        if item.name == name:
            return item
    raise UnknownNameError(f"unknown {what} {name!r}; {listing}: {', '.join(i.name for i in items)}")
