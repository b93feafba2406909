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
