"""restoreagent: plan, execute and learn chains of image-restoration tools.

Importing the package is cheap on purpose: heavy modules (torch, pyiqa, tools) are imported
by the parts that need them, so one broken optional dependency cannot break the package.
"""

__version__ = "0.1.0"
