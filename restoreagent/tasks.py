"""The vocabulary shared by every part: degradations, the tasks that undo them, and their order.

Degradations are what the generator applies; tasks are what tools do. Each degradation is
undone by exactly one task.
"""

from __future__ import annotations

# Physically plausible order in which degradations happen to a photo:
# scene (haze, rain) -> capture (low light, blur, low resolution, noise) -> compression (jpeg).
DEGRADATIONS: tuple[str, ...] = (
    "haze",
    "rain",
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
}

DEGRADATION_FOR_TASK: dict[str, str] = {t: d for d, t in TASK_FOR_DEGRADATION.items()}

TASKS: tuple[str, ...] = tuple(TASK_FOR_DEGRADATION[d] for d in DEGRADATIONS)


def physical_order(degradations) -> list[str]:
    """Sort degradation names into the order they happen to a photo."""
    names = list(degradations)
    unknown = [d for d in names if d not in TASK_FOR_DEGRADATION]
    if unknown:
        from .errors import UnknownNameError

        raise UnknownNameError(f"unknown degradation {unknown[0]!r}; known: {', '.join(DEGRADATIONS)}")
    return sorted(names, key=DEGRADATIONS.index)


def tasks_for(degradations) -> list[str]:
    """Tasks that undo the given degradations, in physical order of the degradations."""
    return [TASK_FOR_DEGRADATION[d] for d in physical_order(degradations)]
