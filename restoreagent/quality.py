"""No-reference quality checks: did a restoration step make the image worse?

The stepwise agent (:func:`restoreagent.agent.stepwise_restore`) scores the image before and after
each step with every selected check that judges the step's task, and rolls the step back when one
says the image got worse by more than its margin. No reference image exists at that point, so a
check can only use what the image itself shows, and no such measure judges every task: each check
names the tasks it judges and is skipped for the others, rather than roll back good steps.

Checks (``eval/quality_check.py`` measures them; numbers in ``docs/quality_check.md``):

``noise`` (default)
    Standard deviation of the image's noise on the 0-255 grey scale: Immerkær's fast estimator
    (the mean absolute response to the difference of two Laplacians, J. Immerkær, "Fast noise
    variance estimation", CVIU 1996) over the pixels outside the strongest 10% of Sobel gradients
    (S.-C. Tai and S.-M. Yang, "A fast method for image noise estimation using Laplacian operator
    and adaptive edge detection", 2008), so that edges a deblurring step sharpens do not count as
    noise. Lower is better; a step is rolled back when it adds more than 1 grey level. It catches
    what sharpening steps do to an image that did not need them: deconvolution ringing and
    amplified noise (motion/defocus deblurring, super-resolution back-projection). It judges
    denoise, dejpeg and derain as well, where a good tool never adds noise (it never rejected one
    on the test photos, but cannot see over-smoothing either). Skipped for ``brighten`` and
    ``dehaze``: stretching brightness or contrast scales the noise up with the signal, so it
    rejected 16 of 28 good brightening and 2 of 24 good dehazing steps (and caught 1 of 30
    harmful dehazing steps).
``exposure`` (default)
    Distance of the mean luma from mid-grey, ``|mean(Y) - 0.5|``. Lower is better; margin 0.01.
    Judges ``brighten`` only: brightening a dark image moves its mean towards mid-grey, brightening
    one that was not dark pushes it past (it rejected 0 of 28 good and 21 of 40 harmful brightening
    steps). Not used for dehaze, which rightly darkens hazy images.
``piqe``
    pyiqa's PIQE (block-wise distortion and noise detection, 0-100; runs offline on CPU, about
    25 ms at 512 px). Lower is better; margin 10. Judges super_resolve, brighten, dehaze and derain.
    Skipped for denoise, dejpeg, motion_deblur and defocus_deblur: it counts smooth 16-px blocks
    as distorted, so on the test photos it rejected steps that raised PSNR by 0.5 dB or more:
    15 of 37 denoising, 7 of 25 deJPEG, 8 of 16 motion and 1 of 12 defocus deblurring steps.

NIQE and BRISQUE (pyiqa) are not offered: they need weight files from the internet, and without
them no margin could be measured here. A check is a plain :class:`QualityCheck`, so another
measure can be passed to ``stepwise_restore`` directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .errors import RestoreAgentError, UnknownNameError
from .scoring import to_tensor
from .tasks import TASKS


@dataclass(frozen=True)
class QualityCheck:
    """A no-reference score, which way is better, how much worse is tolerated, and where it applies."""

    name: str
    score: Callable[[np.ndarray], float]  # float32 RGB (H, W, 3) in [0, 1] -> a number
    higher_is_better: bool
    margin: float  # roll back when the step makes the score worse by more than this
    tasks: frozenset[str] = frozenset(TASKS)  # the tasks whose steps it judges; others are skipped
    min_side: int = 8  # smaller images are not judged

    def judges(self, task: str, image: np.ndarray) -> bool:
        return task in self.tasks and min(image.shape[:2]) >= self.min_side

    def worse_by(self, before: float, after: float) -> float:
        """How much worse ``after`` is than ``before`` (negative: better)."""
        return before - after if self.higher_is_better else after - before

    def judge(self, before: float, after: float) -> dict:
        """The verdict on one step, as recorded in the stepwise run's step record."""
        worse = self.worse_by(before, after)
        return {
            "check": self.name,
            "before": round(float(before), 4),
            "after": round(float(after), 4),
            "worse_by": round(float(worse), 4),
            "margin": self.margin,
            "rejected": bool(worse > self.margin),
        }


def _luma(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114


_LAPLACE_DIFF = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def noise_level(image: np.ndarray) -> float:
    """Estimated standard deviation of white noise, in grey levels of 0-255 (see the module doc)."""
    import cv2

    g = np.ascontiguousarray(_luma(image) * 255.0, dtype=np.float32)
    if min(g.shape) < 3:
        return 0.0
    response = np.abs(cv2.filter2D(g, -1, _LAPLACE_DIFF))[1:-1, 1:-1]
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    edges = cv2.magnitude(gx, gy)[1:-1, 1:-1]
    flat = edges <= np.percentile(edges, 90)
    return float(np.sqrt(np.pi / 2) / 6 * response[flat].mean())


def exposure_error(image: np.ndarray) -> float:
    """Distance of the mean luma (0-1) from mid-grey."""
    return abs(float(_luma(image).mean()) - 0.5)


def piqe(image: np.ndarray) -> float:
    """pyiqa's PIQE (0-100, lower is better); needs no weight file."""
    import torch

    with torch.inference_mode():
        return float(_piqe_metric()(to_tensor(image)).item())


@functools.cache
def _piqe_metric():
    try:
        import pyiqa
    except ImportError as e:  # pragma: no cover - install problem
        raise UnknownNameError("the piqe check needs pyiqa: run scripts/setup.sh") from e
    return pyiqa.create_metric("piqe", device="cpu", as_loss=False)


QUALITY_CHECKS: dict[str, QualityCheck] = {
    c.name: c
    for c in (
        QualityCheck(
            "noise",
            noise_level,
            higher_is_better=False,
            margin=1.0,
            tasks=frozenset(TASKS) - {"brighten", "dehaze"},
        ),
        QualityCheck(
            "exposure", exposure_error, higher_is_better=False, margin=0.01, tasks=frozenset({"brighten"})
        ),
        QualityCheck(
            "piqe",
            piqe,
            higher_is_better=False,
            margin=10.0,
            tasks=frozenset({"super_resolve", "brighten", "dehaze", "derain"}),
            min_side=64,  # PIQE judges 16-px blocks: fewer than 16 of them say little
        ),
    )
}
# What `restoreagent run --auto --stepwise` and the bench's vlm_stepwise use: the two cheap checks
# (under 10 ms at 512 px) that rejected no step that raised PSNR on the test photos.
DEFAULT_QUALITY_CHECK = "noise,exposure"


def resolve_quality_checks(spec) -> tuple[QualityCheck, ...]:
    """The checks a spec names: ``None`` or ``"none"`` (no check), a comma list of names
    (:data:`QUALITY_CHECKS`), a :class:`QualityCheck`, or an iterable of names and checks."""
    if spec is None:
        return ()
    if isinstance(spec, QualityCheck):
        return (spec,)
    items: Iterable = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else spec
    checks = []
    for item in items:
        if isinstance(item, QualityCheck):
            checks.append(item)
        elif item == "none":
            continue
        elif item in QUALITY_CHECKS:
            checks.append(QUALITY_CHECKS[item])
        else:
            raise UnknownNameError(
                f"unknown quality check {item!r}; quality checks: {', '.join([*QUALITY_CHECKS, 'none'])}"
            )
    if len({c.name for c in checks}) != len(checks):
        raise RestoreAgentError(f"a quality check is named twice in {spec!r}")
    return tuple(checks)


# --- checked execution of a whole plan (one-shot `run --auto`) ------------------------------------
#
# The one-shot agent executes the planner's plan without re-planning, so the same checks judge each
# step as it runs: a step judged harmful is skipped (the next step runs on the image before it).
# On real photos (docs/real_photos.md) one-shot `run --auto` without this brightened a photo that
# was not dark (exposure worse), which the exposure check rejects.
#
# Brightening a dark photo also scales up the noise the darkness hid (the noise check does not judge
# brightening for that reason: the noise grows with the signal). On real low-light photos that noise
# is then plainly visible, so when a brightening step adds more than the noise check's margin and
# the plan has no denoising step, the denoiser matched to the noise now measured follows it (the
# same severity rule the planner's training targets use, restoreagent.catalog.learned
# .severity_ranges); that step is judged by the noise check like any other.

REVEALS_NOISE = frozenset({"brighten"})


def denoiser_for(sigma: float) -> str | None:
    """The available denoiser whose severity range holds ``sigma`` (grey levels), or the nearest."""
    from .catalog.learned import severity_ranges
    from .tools.registry import tools_for_task

    rule = severity_ranges().get("denoise")
    installed = tools_for_task("denoise")
    if not installed:
        return None
    options = {t: r for t, r in (rule or {}).get("tools", {}).items() if t in installed}
    if not options:
        return installed[0]
    return min(options, key=lambda t: 0 if options[t][0] <= sigma < options[t][1] else min(abs(sigma - options[t][0]), abs(sigma - options[t][1])))


def judge_step(checks, task: str, before: np.ndarray, after: np.ndarray, before_scores: dict) -> tuple[list[dict], dict]:
    """The verdicts of the ``checks`` that judge ``task`` on one step (``before`` -> ``after``), and
    the scores of ``after`` (check name -> score). ``before_scores`` caches the scores of ``before``
    (filled here when missing), so a chain of steps scores each image once."""
    verdicts, after_scores = [], {}
    for check in checks:
        if check.judges(task, before):
            if check.name not in before_scores:
                before_scores[check.name] = check.score(before)
            after_scores[check.name] = check.score(after)
            verdicts.append(check.judge(before_scores[check.name], after_scores[check.name]))
    return verdicts, after_scores


def execute_checked(
    plan, image: np.ndarray, quality_check=DEFAULT_QUALITY_CHECK, save_steps=None, on_step=None, step_runner=None
):
    """Run ``plan`` step by step, skipping the steps a check judges harmful (see above).

    Returns ``(image, steps)``: every executed step as a record (index, task, tool, seconds, kept;
    ``rolled_back_by: "quality"`` and the verdicts under ``quality`` as in the stepwise agent; a
    denoising step added after a brightening step has ``added_by: "noise revealed by brighten"``).
    ``step_runner(image, step) -> (image, seconds)`` runs one step (default: the registry's tools).
    """
    from pathlib import Path

    from .executor import run_step
    from .imageio import save_image
    from .plan import Step

    checks = resolve_quality_checks(quality_check)
    noise_check = QUALITY_CHECKS["noise"]
    if save_steps is not None:
        Path(save_steps).mkdir(parents=True, exist_ok=True)
        save_image(image, Path(save_steps) / "step0_input.png")
    current, scores, steps = image, {}, []
    queue = [(step, None) for step in plan]
    while queue:
        step, added_by = queue.pop(0)
        out, seconds = (step_runner or run_step)(current, step)
        rec = {"index": len(steps) + 1, "task": step.task, "tool": step.tool, "seconds": round(seconds, 4), "kept": True}
        if added_by:
            rec["added_by"] = added_by
        verdicts, out_scores = judge_step(checks, step.task, current, out, scores)
        if verdicts:
            rec["quality"] = verdicts
        if any(v["rejected"] for v in verdicts):
            rec["kept"] = False
            rec["rolled_back_by"] = "quality"
        else:
            planned = {s.task for s in plan}
            if step.task in REVEALS_NOISE and "denoise" not in planned and noise_check.judges("denoise", out):
                before, after = scores.get("noise", noise_level(current)), out_scores.get("noise", noise_level(out))
                tool = denoiser_for(after) if after - before > noise_check.margin else None
                if tool is not None:
                    rec["noise_revealed"] = {"before": round(before, 3), "after": round(after, 3)}
                    queue.insert(0, (Step("denoise", tool), f"noise revealed by {step.task}"))
                    out_scores["noise"] = after
            current, scores = out, out_scores
        if save_steps is not None:
            rec["saved_to"] = str(save_image(out, Path(save_steps) / f"step{rec['index']}_{step.task}_{step.tool}.png"))
        steps.append(rec)
        if on_step is not None:
            on_step(rec)
    return current, steps
