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

Rules on top of the checks, found on real photos (docs/real_photos.md), their thresholds chosen on
synthetic photos (``eval/quality_rules.py``); both agents apply them whenever checks are on:

- **haze pre-check** (:func:`precheck`): a dehazing step does not run on a photo whose dark-channel
  floor (:func:`haze_level`) is under :data:`HAZE_FLOOR`: dehazing a photo with no haze only
  darkens it, which no after-the-step check can say.
- **faint noise** (:func:`judge_step`): with the noise check on, PIQE judges a denoising step when
  the photo measured faint noise (under :data:`FAINT_NOISE`), where the denoiser's gain is small and
  the texture it removes dominates (not with a deJPEG step, nor after a brightening step).
- **revealed noise** (:func:`execute_checked`, one-shot): a brightening step that reveals noise is
  followed by the matched denoiser, and by stronger ones while the photo stays noisier than before
  the brightening by more than the noise margin, unless PIQE says the stronger one lost texture.
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


def haze_level(image: np.ndarray, patch: int = 15, percentile: float = 1.0) -> float:
    """The floor of the dark channel (He, Sun and Tang, "Single image haze removal using dark
    channel prior", CVPR 2009): each channel smoothed over 5 px (so that noise does not pull it
    down), the minimum over the colour channels, then over a ``patch`` px square, and the
    ``percentile`` of that. Haze adds airlight A(1 - t) to every pixel, so nothing in a hazy photo
    stays black and the floor rises; a photo without haze has a shadow somewhere, and its floor is
    near 0 (a grey photo too, where the dark channel's median is high)."""
    import cv2

    image = np.asarray(image, dtype=np.float32)
    if min(image.shape[:2]) < 3:
        return float(image.min())
    dark = np.ascontiguousarray(cv2.blur(image, (5, 5)).min(axis=2))
    k = max(1, min(patch, *dark.shape))
    dark = cv2.erode(dark, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    return float(np.percentile(dark, percentile))


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


# --- rules on top of the checks (one-shot and stepwise) -------------------------------------------
#
# Thresholds chosen on synthetic photos of the train folders (eval/quality_rules.py,
# docs/real_photos.md), never on the real photos they are then verified on.

# PIQE judges a denoising step when the noise its input measures is below this (grey levels). There
# the denoiser's benefit is small and the texture it removes dominates: on 24 synthetic photos with
# noise of sigma 0-20 and the matched denoiser (unet_denoise_low), PIQE with its margin of 10
# rejected no step that raised PSNR by 0.5 dB (40 dB cap) among those whose input measured under 2.0,
# and 3 good ones between 2.0 and 2.25, 17 under 3.0. Above it PIQE is not trusted for denoising.
FAINT_NOISE = 2.0
FAINT_PIQE_TASKS = frozenset({"denoise"})
# ... but not when the plan removes JPEG artefacts: compression smooths the noise away from the
# measure's reach (it reads a noisy JPEG as faint), and on synthetic noisy JPEGs the rule then
# dropped denoising steps that raised PSNR (docs/real_photos.md). Nor after a brightening step was
# kept: the noise the denoiser then meets is the noise the brightening revealed, not the photo's.
FAINT_NOT_WITH = frozenset({"dejpeg"})

# A dehazing step runs only when the photo's dark-channel floor (haze_level) reaches this: the
# lowest floor of a synthetic hazy photo (generator's lowest haze, beta 0.6, alone or with rain,
# noise and JPEG) was 0.095; half of it leaves a margin for real haze thinner than the generator's.
HAZE_FLOOR = 0.05
HAZE_TASKS = frozenset({"dehaze"})


def precheck(checks, task: str, image: np.ndarray) -> dict | None:
    """A verdict on a step before it runs, or None when no rule applies; ``rejected``: do not run
    it. Only with quality checks on (``checks`` not empty). The one rule: dehazing a photo with no
    haze (its dark-channel floor under :data:`HAZE_FLOOR`) only darkens it, and no after-the-step
    check can say so (the exposure check rejects good dehazing steps too)."""
    if not checks or task not in HAZE_TASKS or min(image.shape[:2]) < 8:
        return None
    level = haze_level(image)
    return {
        "check": "haze",
        "before": round(level, 4),
        "threshold": HAZE_FLOOR,
        "rejected": bool(level < HAZE_FLOOR),
    }


def judge_step(
    checks, task: str, before: np.ndarray, after: np.ndarray, before_scores: dict, noise_of_photo: float | None = None
) -> tuple[list[dict], dict]:
    """The verdicts of the ``checks`` that judge ``task`` on one step (``before`` -> ``after``), and
    the scores of ``after`` (check name -> score). ``before_scores`` caches the scores of ``before``
    (filled here when missing), so a chain of steps scores each image once.

    ``noise_of_photo``: the noise the photo measured before the plan ran (:func:`photo_noise`). When it
    is faint (under :data:`FAINT_NOISE`), a denoising step is judged by PIQE as well (verdict
    ``rule: "faint noise"``). It is the photo's noise, not the step's input's, because an earlier
    step (deJPEG) lowers the measure without removing the noise: judged on the step's input, the rule
    dropped good denoising steps after deJPEG on synthetic photos (docs/real_photos.md)."""
    verdicts, after_scores = [], {}
    for check in checks:
        if check.judges(task, before):
            if check.name not in before_scores:
                before_scores[check.name] = check.score(before)
            after_scores[check.name] = check.score(after)
            verdicts.append(check.judge(before_scores[check.name], after_scores[check.name]))
    faint = QUALITY_CHECKS["piqe"]
    if (
        noise_of_photo is not None
        and noise_of_photo < FAINT_NOISE
        and task in FAINT_PIQE_TASKS
        and min(before.shape[:2]) >= faint.min_side
    ):
        if "piqe" not in before_scores:
            before_scores["piqe"] = faint.score(before)
        after_scores["piqe"] = faint.score(after)
        verdicts.append({**faint.judge(before_scores["piqe"], after_scores["piqe"]), "rule": "faint noise"})
    return verdicts, after_scores


def photo_noise(checks, image: np.ndarray) -> float | None:
    """The photo's noise for the faint-noise rule of :func:`judge_step`: measured only when the noise
    check is on (the rule refines it), else None (no rule)."""
    return noise_level(image) if any(c.name == "noise" for c in checks) else None


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
# the plan has no denoising step, a denoiser follows it: the one matched to the noise now measured
# (the same severity rule the planner's training targets use, restoreagent.catalog.learned
# .severity_ranges), then, while the photo is still noisier than before the brightening by more
# than the noise check's margin, the next stronger one, run on the brightened image in its place.
# Each is judged by the noise check like any other step; the faint-noise rule (PIQE) does not judge
# it: the photo's faint noise says nothing of the noise the brightening revealed.

REVEALS_NOISE = frozenset({"brighten"})


def denoisers_by_strength() -> list[str]:
    """The available denoisers, weakest first (by the start of their severity range)."""
    from .catalog.learned import severity_ranges
    from .tools.registry import tools_for_task

    rule = severity_ranges().get("denoise") or {}
    installed = tools_for_task("denoise")
    ranges = rule.get("tools", {})
    return sorted(installed, key=lambda t: (ranges.get(t, (float("inf"),))[0], t))


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


def execute_checked(
    plan, image: np.ndarray, quality_check=DEFAULT_QUALITY_CHECK, save_steps=None, on_step=None, step_runner=None
):
    """Run ``plan`` step by step, skipping the steps a check judges harmful (see above).

    Returns ``(image, steps)``: every executed step as a record (index, task, tool, seconds, kept;
    ``rolled_back_by: "quality"`` and the verdicts under ``quality`` as in the stepwise agent; a
    step a pre-check kept from running has ``skipped: true``; a denoising step added after a
    brightening step has ``added_by: "noise revealed by brighten"``).
    ``step_runner(image, step) -> (image, seconds)`` runs one step (default: the registry's tools).
    """
    from pathlib import Path

    from .executor import run_step
    from .imageio import save_image
    from .plan import Step

    checks = resolve_quality_checks(quality_check)
    noise_check, piqe_check = QUALITY_CHECKS["noise"], QUALITY_CHECKS["piqe"]
    runner = step_runner or run_step
    if save_steps is not None:
        Path(save_steps).mkdir(parents=True, exist_ok=True)
        save_image(image, Path(save_steps) / "step0_input.png")
    steps: list[dict] = []

    def emit(rec, out):  # records are final when emitted (on_step logs them)
        rec = {"index": len(steps) + 1, **rec}
        if save_steps is not None:
            rec["saved_to"] = str(save_image(out, Path(save_steps) / f"step{rec['index']}_{rec['task']}_{rec['tool']}.png"))
        steps.append(rec)
        if on_step is not None:
            on_step(rec)

    def follow_up(brightened, b_scores, noise_before, tool, added_by):
        """The follow-up denoiser (see above): the matched one, then stronger ones in its place while
        the photo stays noisier than before the brightening by more than the margin. A stronger one
        is kept only if PIQE does not say it lost texture against the weaker one's output (by more
        than PIQE's margin): the noise it has left to remove is small, and there texture loss
        dominates (the faint-noise rule's reason). Returns (record, image, scores) of the kept one
        or None, and every record, in the order run."""
        order = denoisers_by_strength()
        tools = [tool, *(order[order.index(tool) + 1:] if tool in order else [])]
        best, tried = None, []
        for t in tools:
            out, seconds = runner(brightened, Step("denoise", t))
            rec = {"task": "denoise", "tool": t, "seconds": round(seconds, 4), "kept": False, "added_by": added_by}
            verdicts, out_scores = judge_step(checks, "denoise", brightened, out, b_scores)
            if best is not None and min(out.shape[:2]) >= piqe_check.min_side:
                prev = best[2].setdefault("piqe", piqe_check.score(best[1]))
                out_scores["piqe"] = piqe_check.score(out)
                verdicts.append({**piqe_check.judge(prev, out_scores["piqe"]), "rule": "stronger denoiser lost texture"})
            rec["quality"] = verdicts
            tried.append((rec, out))
            if any(v["rejected"] for v in verdicts):
                rec["rolled_back_by"] = "quality"
                break
            best = (rec, out, out_scores)
            still = out_scores.get("noise", noise_level(out)) - noise_before
            if still <= noise_check.margin:
                break
            verdicts.append({  # still too noisy: the next stronger one is tried in its place
                "check": "noise", "rule": "revealed noise", "before": round(noise_before, 4),
                "after": round(still + noise_before, 4), "worse_by": round(still, 4), "margin": noise_check.margin,
                "rejected": t != tools[-1],
            })
        if best is not None:
            best[0]["kept"] = True
            best[0].pop("rolled_back_by", None)
            for v in best[0]["quality"]:
                if v.get("rule") == "revealed noise":
                    v["rejected"] = False  # no stronger one was kept: this one stays
        for rec, _ in tried:
            if not rec["kept"]:
                rec["rolled_back_by"] = "quality"
        return best, tried

    current, scores = image, {}
    noise0 = photo_noise(checks, image)
    if noise0 is not None:
        scores["noise"] = noise0
    if any(s.task in FAINT_NOT_WITH for s in plan):
        noise0 = None  # JPEG hides noise from the measure: a faint reading is not to be trusted
    planned = {s.task for s in plan}
    last_denoise = None  # (record, input image) of the last kept denoising step
    for step in plan:
        rec = {"task": step.task, "tool": step.tool}
        pre = precheck(checks, step.task, current)
        if pre is not None and pre["rejected"]:
            rec.update(seconds=0.0, kept=False, rolled_back_by="quality", skipped=True, quality=[pre])
            emit(rec, current)
            continue
        out, seconds = runner(current, step)
        rec.update(seconds=round(seconds, 4), kept=True)
        verdicts, out_scores = judge_step(checks, step.task, current, out, scores, noise0)
        if pre is not None:
            verdicts.insert(0, pre)
        if verdicts:
            rec["quality"] = verdicts
        if any(v["rejected"] for v in verdicts):
            rec["kept"] = False
            rec["rolled_back_by"] = "quality"
            emit(rec, out)
            continue
        follow = None
        if step.task in REVEALS_NOISE and "denoise" not in planned and noise_check.judges("denoise", out):
            before, after = scores.get("noise", noise_level(current)), out_scores.get("noise", noise_level(out))
            tool = denoiser_for(after) if after - before > noise_check.margin else None
            if tool is not None:
                rec["noise_revealed"] = {"before": round(before, 3), "after": round(after, 3)}
                out_scores["noise"] = after
                follow = (before, tool, f"noise revealed by {step.task}")
        emit(rec, out)
        last_denoise = (steps[-1], current) if step.task == "denoise" else None
        current, scores = out, out_scores
        if step.task in REVEALS_NOISE:
            noise0 = None  # the noise a later denoiser meets is no longer the photo's (faint) noise
        if follow is not None:
            best, tried = follow_up(current, scores, *follow)
            for r, o in tried:
                emit(r, o)
            if best is not None:
                last_denoise = (next(r for r in reversed(steps) if r["kept"]), current)
                current, scores = best[1], best[2]
    if last_denoise is not None and next((r for r in reversed(steps) if r["kept"]), None) is last_denoise[0]:
        current = soften_denoising(checks, image, *reversed(last_denoise), current)
    return current, steps


# --- texture: how much of the final denoising to keep -----------------------------------------------
#
# Denoising a lightly noisy photo removes fine texture with the noise; PIQE (which counts flat 16 px
# blocks as distorted) sees it. Judging every denoising step by PIQE and dropping the ones it
# rejects would drop good steps (docs/quality_check.md), so the judgement here is of the finished
# result against the photo itself, and its remedy is partial: when the plan ends with a denoising
# step and the output's PIQE is worse than the photo's by more than PIQE's margin, as much of that
# step is kept as leaves PIQE within the margin (3/4, 1/2, then 1/4 of the change it made), provided
# the noise stays within the noise check's margin of the photo's. Heavily noisy photos are not
# touched by it (their PIQE falls with the noise).
SOFTEN_SHARES = (0.75, 0.5, 0.25)
# ... only on photos whose noise is light (grey levels): on heavier noise, noise is what PIQE reads as
# distortion, and denoising lowers it; skipping those also spares PIQE's cost (pyiqa's import takes
# seconds) on the noisy photos `run --auto` sees most.
SOFTEN_BELOW_NOISE = 6.0


def soften_denoising(checks, photo: np.ndarray, before: np.ndarray, record: dict, after: np.ndarray) -> np.ndarray:
    """The final denoising step's output, or a share of its change (``before + k * (after - before)``)
    when PIQE says the whole of it lost the photo's texture (see above); the record gets
    ``softened: {kept_share, piqe, noise}``. Only with the noise check on (it bounds the noise
    left)."""
    piqe_check, noise_check = QUALITY_CHECKS["piqe"], QUALITY_CHECKS["noise"]
    if not any(c.name == "noise" for c in checks) or min(photo.shape[:2]) < piqe_check.min_side or before.shape != after.shape:
        return after
    n_photo = noise_level(photo)
    if n_photo >= SOFTEN_BELOW_NOISE:
        return after
    p_photo, p_after = piqe_check.score(photo), piqe_check.score(after)
    if p_after - p_photo <= piqe_check.margin:
        return after
    for share in SOFTEN_SHARES:
        out = (before + share * (after - before)).astype(after.dtype)
        p, n = piqe_check.score(out), noise_level(out)
        if p - p_photo <= piqe_check.margin and n - n_photo <= noise_check.margin:
            record["softened"] = {
                "kept_share": share, "rule": "texture (PIQE) against the photo",
                "piqe": {"photo": round(p_photo, 2), "whole_step": round(p_after, 2), "kept": round(p, 2)},
                "noise": {"photo": round(n_photo, 3), "kept": round(n, 3)},
            }
            return out
    return after
