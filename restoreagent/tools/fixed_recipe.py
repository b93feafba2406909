"""The fixed expert recipe (``restoreagent/catalog/fixed_recipe.yaml``): one documented order and
tool preference per task. The ``fixed`` planner plans with it; the labeler records it per sample."""

from __future__ import annotations

import functools
from importlib import resources

from ..catalog import load_yaml
from .registry import tools_for_task


@functools.cache
def _recipe() -> dict:
    return load_yaml(resources.files("restoreagent.catalog").joinpath("fixed_recipe.yaml").read_text())


def fixed_recipe(tasks, tools=None) -> list[tuple[str, str]]:
    """The fixed expert recipe's (task, tool) steps for these tasks, in the recipe's order.

    The tool is the first preferred name that is installed, else the first installed tool.
    ``tools`` (task -> names) replaces the registry's installed tools; tasks without one are skipped.
    """
    raw = _recipe()
    steps = []
    for task in raw["order"]:
        if task in tasks:
            installed = list(tools.get(task, ())) if tools is not None else tools_for_task(task)
            if not installed:
                continue
            preferred = [t for t in raw["tools"].get(task) or [] if t in installed]
            steps.append((task, (preferred or installed)[0]))
    return steps
