"""The vocabulary shared by every part: degradations, the tasks that undo them, and their order.

Degradations are what the generator applies; tasks are what tools do. Each degradation is
undone by exactly one task.

Two orders, kept apart on purpose:

- :data:`DEGRADATIONS` / :data:`TASKS` is the *registration* order. A degradation's index there
  keys its random streams (:mod:`restoreagent.degradations.chain`), so new degradations are only
  ever appended: the same seed then gives the same bytes for every chain that existed before.
- :data:`PHYSICAL_ORDER` is the order in which degradations happen to a photo; chains are
  applied, and names are sorted, in this order (:func:`physical_order`).

:data:`CORE_DEGRADATIONS` are the ones random sampling draws from (``degrade --random``, the
benchmark's and the labeler's random combinations). Extensions such as ``snow`` are used only
where they are named (a chain, a combinations file, an explicit degradation list).
"""

from __future__ import annotations

from .errors import RestoreAgentError, UnknownNameError

# Registration order: append only (indices seed the random streams of each degradation).
DEGRADATIONS: tuple[str, ...] = (
    "haze",
    "rain",
    "low_light",
    "motion_blur",
    "defocus_blur",
    "low_resolution",
    "noise",
    "jpeg",
    "snow",
)

# The degradations random sampling draws from: the original eight, in their original order.
CORE_DEGRADATIONS: tuple[str, ...] = DEGRADATIONS[:8]

# Physically plausible order in which degradations happen to a photo:
# scene (haze, rain, snow) -> capture (low light, blur, low resolution, noise) -> compression (jpeg).
PHYSICAL_ORDER: tuple[str, ...] = (
    "haze",
    "rain",
    "snow",
    "low_light",
    "motion_blur",
    "defocus_blur",
    "low_resolution",
    "noise",
    "jpeg",
)

TASK_FOR_DEGRADATION: dict[str, str] = {
    "haze": "dehaze",
    "rain": "derain",
    "low_light": "brighten",
    "motion_blur": "motion_deblur",
    "defocus_blur": "defocus_deblur",
    "low_resolution": "super_resolve",
    "noise": "denoise",
    "jpeg": "dejpeg",
    "snow": "desnow",
}

DEGRADATION_FOR_TASK: dict[str, str] = {t: d for d, t in TASK_FOR_DEGRADATION.items()}

# Registration order of the tasks (append only, like DEGRADATIONS).
TASKS: tuple[str, ...] = tuple(TASK_FOR_DEGRADATION[d] for d in DEGRADATIONS)

CORE_TASKS: tuple[str, ...] = tuple(TASK_FOR_DEGRADATION[d] for d in CORE_DEGRADATIONS)

# The tasks in the physical order of the degradations they undo (a canonical order for task sets).
PHYSICAL_TASK_ORDER: tuple[str, ...] = tuple(TASK_FOR_DEGRADATION[d] for d in PHYSICAL_ORDER)

assert set(PHYSICAL_ORDER) == set(DEGRADATIONS) == set(TASK_FOR_DEGRADATION)
assert len(PHYSICAL_ORDER) == len(DEGRADATIONS)


def physical_order(degradations) -> list[str]:
    """Sort degradation names into the order they happen to a photo (:data:`PHYSICAL_ORDER`)."""
    names = list(degradations)
    unknown = [d for d in names if d not in TASK_FOR_DEGRADATION]
    if unknown:
        raise UnknownNameError(f"unknown degradation {unknown[0]!r}; known: {', '.join(PHYSICAL_ORDER)}")
    return sorted(names, key=PHYSICAL_ORDER.index)


def physical_task_order(tasks) -> list[str]:
    """Sort task names by the physical order of the degradations they undo."""
    return sorted(tasks, key=PHYSICAL_TASK_ORDER.index)


def tasks_for(degradations) -> list[str]:
    """Tasks that undo the given degradations, in physical order of the degradations."""
    return [TASK_FOR_DEGRADATION[d] for d in physical_order(degradations)]


def parse_combos(text: str, source: str = "combos") -> list[list[str]]:
    """One combination per line, written like ``noise + jpeg``; '#' starts a comment."""
    combos = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        names = [x.strip() for x in line.split("+")]
        try:
            names = physical_order(names)
        except RestoreAgentError as e:
            raise RestoreAgentError(f"{source}:{n}: {e}") from None
        if len(set(names)) != len(names):
            raise RestoreAgentError(f"{source}:{n}: a degradation appears twice in {line!r}")
        combos.append(names)
    if not combos:
        raise RestoreAgentError(f"{source}: no combinations in the file")
    return combos
