"""The public Python API: one :class:`Agent` that loads its planner, detector and tools once.

    >>> from restoreagent import Agent
    >>> agent = Agent(planner="fixed+detect")          # nothing is loaded yet
    >>> result = agent.restore(image)                  # a path or a float32 RGB array  # doctest: +SKIP
    >>> result.plan.text(), result.image.shape         # doctest: +SKIP
    ('dejpeg:unet_dejpeg_mild, denoise:unet_denoise_mid', (256, 256, 3))
    >>> result.save("out.jpg", quality=90)              # doctest: +SKIP

The command line (``restoreagent run / plan / detect``) is a thin layer over this module.
Messages go to the ``restoreagent`` logger (``logging``), never to stdout.

**Threads.** An Agent may be shared between threads: its model calls (planning, detection,
tools) hold one lock, so calls from several threads run one after another (torch already uses
every core for one call). Run one Agent per process for parallel work.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dialogue import Answer
from .errors import RestoreAgentError
from .imageio import PhotoInfo, load_photo, save_image
from .plan import Plan, parse_plan

log = logging.getLogger("restoreagent")

DEFAULT_PLANNER = "default"  # the shipped VLM planner (restoreagent/assets/planner)
# planners that are told the true degradations in the benchmark; for a user's photo the Agent
# tells them the detector's set instead
_NEEDS_DEGRADATIONS = ("fixed", "random")


@dataclass
class Result:
    """One restored image: the pixels, the plan that made them, and what happened.

    ``image``: float32 RGB (H, W, 3) in [0, 1]. ``plan``: the executed plan (for a stepwise run,
    the kept steps). ``steps``: one dict per executed step (task, tool, seconds, kept).
    ``report``: everything as JSON-ready data (the ``run --json`` report).
    """

    image: np.ndarray
    plan: Plan
    steps: list[dict] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    source: str | None = None  # the input file, when one was given
    # what the input file carried besides pixels (bit depth, ICC profile, EXIF): written back by save
    info: PhotoInfo | None = None

    def save(self, path, quality: int = 95) -> Path:
        """Write the image atomically (format from the extension; ``quality`` for JPEG/WebP).

        A 16-bit input gives a 16-bit PNG/TIFF; the input's ICC profile and EXIF are carried."""
        if self.source is not None:
            from .imageio import check_output_path

            check_output_path(path, self.source)  # never overwrite the input
        return save_image(self.image, path, quality=quality, info=self.info)


class Agent:
    """Plans and restores images; loads the planner, detector and tools once, on first use.

    ``planner``: ``"default"`` (the shipped VLM planner), a trained planner folder, or a planner
    name: ``"fixed+detect"`` (the fixed recipe on the detector's set, tools matched to its
    severities), ``"fixed"`` / ``"random"`` (told the detector's set), ``"vlm"``.
    ``device``: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, for the
    planner, the detector and the learned tools. ``tile``: learned tools' tile size in pixels
    (``0``: no tiling; ``None``: each tool's own). ``half``: float16 on CUDA, bfloat16
    on a CPU with native bfloat16 (AMX / AVX-512 BF16), float32 elsewhere.
    The ``RESTOREAGENT_DEVICE``, ``RESTOREAGENT_TILE`` and ``RESTOREAGENT_HALF`` environment
    variables, when set, still win inside the learned tools (one switch for every tool).

    >>> agent = Agent(planner="fixed+detect", device="cpu")
    >>> agent.planner_name
    'fixed+detect'
    """

    def __init__(
        self,
        planner: str | Path = DEFAULT_PLANNER,
        device: str = "auto",
        tile: int | None = None,
        half: bool = False,
        detector: str | Path | None = None,
    ):
        self.planner_name = str(planner)
        self.device_name = device
        self.tile = tile
        self.half = bool(half)
        self.detector_folder = detector
        if tile is not None and tile < 0:
            raise RestoreAgentError(f"tile must be 0 (no tiling) or a size in pixels, got {tile}")
        self._check_planner_name(self.planner_name)
        self._lock = threading.RLock()
        self._planner = None
        self._detector = None
        self._tools: dict[str, Any] = {}

    # --- what is loaded once ------------------------------------------------------------------
    @staticmethod
    def _check_planner_name(name: str) -> None:
        from .planners import planner_names

        if name in (DEFAULT_PLANNER, *planner_names()) or Path(name).expanduser().is_dir():
            if name == "oracle":
                raise RestoreAgentError("the oracle planner needs the clean image's search; it cannot plan a photo")
            return
        raise RestoreAgentError(
            f"unknown planner {name!r}: give a trained planner folder or one of "
            f"{', '.join(n for n in (DEFAULT_PLANNER, *planner_names()) if n != 'oracle')}"
        )

    @property
    def device(self) -> str:
        """The resolved device (``"auto"`` becomes ``"cuda"`` or ``"cpu"``; imports torch)."""
        if self.device_name != "auto":
            return self.device_name
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def detector(self):
        """The degradation detector (:class:`restoreagent.perception.Detector`), loaded on first use."""
        with self._lock:
            if self._detector is None:
                from .perception import default_detector

                self._detector = default_detector(self.detector_folder, device=self.device)
            return self._detector

    @property
    def planner(self):
        """The planner (loaded on first use)."""
        with self._lock:
            if self._planner is None:
                t0 = time.perf_counter()
                self._planner = self._load_planner()
                log.debug("planner %s loaded in %.2f s", self.planner_name, time.perf_counter() - t0)
            return self._planner

    def _load_planner(self):
        from .planners import get_planner

        name = self.planner_name
        if name in (DEFAULT_PLANNER, "vlm") or Path(name).expanduser().is_dir():
            from .planners.vlm import VLMPlanner

            model = None if name in (DEFAULT_PLANNER, "vlm") else str(Path(name).expanduser())
            dtype = "float16" if self.half and self.device.startswith("cuda") else None
            return VLMPlanner(model, device=self.device, dtype=dtype)
        if name in ("fixed+detect", "ranker"):
            return get_planner(name, detector=self.detector)
        if name == "verify":  # it runs candidates: with this Agent's tools (device, tiling)
            return get_planner(name, detector=self.detector, step_runner=self._run_step)
        return get_planner(name)

    def tool(self, name: str):
        """The tool called ``name``, built once with this Agent's device, tile and precision."""
        with self._lock:
            if name not in self._tools:
                self._tools[name] = self._build_tool(name)
            return self._tools[name]

    def _build_tool(self, name: str):
        from .tools.registry import Tool, get_tool, import_ref, spec

        s = spec(name)
        default = self.device_name == "auto" and self.tile is None and not self.half
        if default or s.builder is None or s.missing:  # classical tools have no device; the registry's cache
            return get_tool(name)
        from .catalog.spec import weights_path

        params = dict(s.params)
        if s.weights:
            params["weights"] = str(weights_path(s.weights))
        params["device"] = self.device
        params["half"] = self.half
        if self.tile is not None:
            params["tile"] = self.tile
        return Tool(s, import_ref(s.builder)(**params))

    # --- the verbs ----------------------------------------------------------------------------
    def detect(self, image):
        """Which degradations ``image`` (a path or an array) carries: a
        :class:`restoreagent.perception.Detection` (degradations, probabilities, severity, params)."""
        image = _as_image(image)[0]
        with self._lock:
            return self.detector.detect(image)

    def plan(self, image, history=None) -> Answer:
        """What the planner sees and would do: an :class:`restoreagent.dialogue.Answer`
        (``.degradations``, ``.plan``, ``.text()``)."""

        image = _as_image(image)[0]
        with self._lock:
            return self.planner.plan(self._request(image, history))

    def _request(self, image: np.ndarray, history=None):
        from .planners import PlanRequest

        degradations = None
        if self.planner_name in _NEEDS_DEGRADATIONS:  # a baseline told the detector's set
            degradations = tuple(self.detector.detect(image).degradations)
        return PlanRequest(image=image, history=history, degradations=degradations)

    def plans(self, image, k: int = 4) -> list[Answer]:
        """Up to ``k`` answers with distinct plans: the planner's own answer, then its beam search's
        next best (the VLM planners), with the ``fixed+detect`` recipe's plan in second place when
        it is not among them."""
        image = _as_image(image)[0]
        if k < 1:
            raise RestoreAgentError(f"k must be at least 1, got {k}")
        with self._lock:
            planner = self.planner
            request = self._request(image)
            answers = [planner.plan(request)]  # the planner's own answer comes first
            if hasattr(planner, "plan_candidates") and k > 1:
                for a in planner.plan_candidates(request, k + 1):
                    if all(a.plan != b.plan for b in answers):
                        answers.append(a)
            if self.planner_name != "fixed+detect":
                from .planners import get_planner

                recipe = get_planner("fixed+detect", detector=self.detector).plan(request)
                if all(a.plan != recipe.plan for a in answers):
                    # second place: the user sees it beside the planner's first choice
                    answers = [*answers[:1], recipe, *answers[1:]]
        return answers[:k]

    def restore(
        self,
        image,
        plan: str | Plan | None = None,
        stepwise: bool = False,
        save_steps=None,
        quality_check=None,
        box: tuple[int, int, int, int] | None = None,
        mask: np.ndarray | None = None,
        margin: int | None = None,
        feather: int | None = None,
        fuse: int | None = None,
    ) -> Result:
        """Restore ``image`` (a path or a float32 RGB array in [0, 1]).

        ``plan``: ``None`` or ``"auto"`` (the planner decides), or a plan (``"denoise:dct_mid,
        dejpeg:dejpeg_severe"`` or a :class:`restoreagent.plan.Plan`). ``stepwise``: re-plan after
        every step and roll back harmful steps (``quality_check``: as ``run --quality-check``).
        An automatic run is :func:`restoreagent.agent.restore_auto` with this Agent's planner and tools.
        ``save_steps``: a folder that keeps every intermediate image.

        Only a region: ``box`` (x, y, w, h) or ``mask`` (bool, the image's size). The tools see the
        region plus ``margin`` px of context and the result fades in over ``feather`` px; pixels
        farther out are the input's, bit for bit (:func:`restoreagent.region.restore_region`).
        ``fuse=K``: run the plan and K-1 variants (strength brackets, another order) and blend them with the learned fusion network
        (:func:`restoreagent.fusion.fuse_plan`; docs/fusion.md says where it helps and where not).

        >>> import numpy as np
        >>> from restoreagent import Agent
        >>> photo = np.full((64, 64, 3), 0.5, np.float32)
        >>> r = Agent(planner="fixed+detect").restore(photo, plan="denoise:dct_low", box=(8, 8, 16, 16))
        >>> bool((r.image[40:, 40:] == photo[40:, 40:]).all())
        True
        """
        if box is not None or mask is not None:
            return self._restore_region(image, plan, stepwise, save_steps, quality_check, box, mask, margin, feather, fuse)
        if fuse is not None:
            return self._restore_fused(image, plan, fuse)
        image, source, info = _as_image(image)
        auto = plan is None or (isinstance(plan, str) and plan.strip() == "auto")
        if auto:
            self.planner  # noqa: B018 - loaded before the clock starts: "seconds" is the work on this image
        t0 = time.perf_counter()
        if stepwise and not auto:
            raise RestoreAgentError("stepwise restoration plans itself: give no plan")
        with self._lock:
            if auto:  # the agent loop (restoreagent.agent), with this Agent's planner and tools
                from .agent import restore_auto
                from .quality import DEFAULT_QUALITY_CHECK

                restored, report = restore_auto(
                    image,
                    planner=_RequestPlanner(self),
                    stepwise=stepwise,
                    save_steps=save_steps,
                    verbose=True,
                    quality_check=DEFAULT_QUALITY_CHECK if quality_check is None else quality_check,
                    step_runner=self._run_step,
                )
                kept = Plan.of((s["task"], s["tool"]) for s in report["steps"] if s["kept"])
                return self._result(restored, kept, report, source, t0, info)
            if isinstance(plan, str):
                plan = parse_plan(plan)
            restored, report = self._execute(plan, image, save_steps)
        return self._result(restored, plan, {"mode": "plan", **report}, source, t0, info)

    def alternatives(self, image, k: int = 4, only: int | None = None) -> list[Result]:
        """The ``k`` best distinct plans (:meth:`plans`), each executed, best first.

        Each result's ``report["scores"]`` holds no-reference scores of the output (``noise``: the
        noise level in grey levels, ``exposure``: the mean luma's distance from mid-grey; lower is
        better; :mod:`restoreagent.quality`). Plans that share their first steps share that work.
        ``only=N`` executes only the Nth plan (the one a user picked) and returns it alone.
        """
        image, source, info = _as_image(image)
        t0 = time.perf_counter()
        answers = self.plans(image, k)
        if only is not None:
            if not 1 <= only <= len(answers):
                raise RestoreAgentError(f"plan {only} does not exist: {len(answers)} distinct plans were found")
            chosen = [(only, answers[only - 1])]
        else:
            chosen = list(enumerate(answers, 1))
        done: dict[tuple, np.ndarray] = {(): image}  # executed plan prefix -> image
        results = []
        with self._lock:
            for rank, answer in chosen:
                t1 = time.perf_counter()
                steps, current = [], image
                for i, step in enumerate(answer.plan, 1):
                    key = answer.plan.steps[:i]
                    seconds = 0.0  # 0: shared with an earlier alternative
                    if key not in done:
                        done[key], seconds = self._run_step(current, step)
                    current = done[key]
                    steps.append({"index": i, "task": step.task, "tool": step.tool, "seconds": round(seconds, 4), "kept": True})
                scores = no_reference_scores(current)
                report = {"mode": "alternative", "rank": rank, "answers": [answer.text()], "plan": answer.plan.to_json(), "steps": steps, "scores": scores}
                log.info("alternative %d: %s (noise %.2f, exposure %.3f)", rank, answer.plan.text(), scores["noise"], scores["exposure"])
                results.append(self._result(current, answer.plan, report, source, t1, info))
        for r in results:
            r.report["alternatives_seconds"] = round(time.perf_counter() - t0, 4)
        return results

    def assess(self, image, ref=None) -> dict:
        """No-reference quality scores of ``image`` (and full-reference ones against ``ref``):
        :func:`restoreagent.assess.assess_image`, with this Agent's detector."""
        try:
            from .assess import assess_image
        except ImportError:
            raise RestoreAgentError("assess is not available in this version (restoreagent.assess is missing)") from None
        image = _as_image(image)[0]
        ref = None if ref is None else _as_image(ref)[0]
        with self._lock:
            return assess_image(image, ref=ref, detector=self.detector)

    # --- helpers ------------------------------------------------------------------------------
    def _restore_region(self, image, plan, stepwise, save_steps, quality_check, box, mask, margin, feather, fuse) -> Result:
        from .region import FEATHER, MARGIN, restore_region

        if box is not None and mask is not None:
            raise RestoreAgentError("give a box or a mask, not both")
        image, source, info = _as_image(image)
        t0 = time.perf_counter()
        reports: list[Result] = []

        def restore_crop(crop):  # the region's crop with its context, through the same paths
            if fuse is not None:
                reports.append(self._restore_fused(crop, plan, fuse))
            else:
                reports.append(self.restore(crop, plan=plan, stepwise=stepwise, save_steps=save_steps, quality_check=quality_check))
            return reports[-1].image

        restored, region = restore_region(
            image,
            restore_crop,
            mask=mask,
            box=None if box is None else tuple(int(v) for v in box),
            margin=MARGIN if margin is None else margin,
            feather=FEATHER if feather is None else feather,
        )
        inner = reports[-1]
        report = {**inner.report, "region": region}
        report.pop("input", None)
        report.pop("seconds", None)
        return self._result(restored, inner.plan, report, source, t0, info)

    def _restore_fused(self, image, plan, k: int) -> Result:
        from .fusion import fuse_plan

        if k < 1:
            raise RestoreAgentError(f"fuse must be at least 1, got {k}")
        image, source, info = _as_image(image)
        t0 = time.perf_counter()
        if plan is None or (isinstance(plan, str) and plan.strip() == "auto"):
            plan = self.plan(image).plan  # the planner's plan, then its neighbours
        elif isinstance(plan, str):
            plan = parse_plan(plan)
        with self._lock:
            fused, report = fuse_plan(image, plan, k)
        return self._result(fused, plan, {"mode": "fused", **report}, source, t0, info)

    def _run_step(self, image: np.ndarray, step) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        out = self.tool(step.tool)(image)
        return out, time.perf_counter() - t0

    def _execute(self, plan: Plan, image: np.ndarray, save_steps=None) -> tuple[np.ndarray, dict]:
        from .executor import execute

        def show(rep):
            log.info("step %d: %-15s %-22s %8.1f ms", rep.index, rep.step.task, rep.step.tool, rep.seconds * 1000)

        restored, report = execute(plan, image, save_steps=save_steps, on_step=show, step_runner=self._run_step)
        return restored, report.to_json()

    @staticmethod
    def _result(image, plan: Plan, report: dict, source, t0, info=None) -> Result:
        report = {**({"input": source} if source else {}), **report, "seconds": round(time.perf_counter() - t0, 4)}
        steps = list(report.get("steps", []))
        return Result(image=image, plan=plan, steps=steps, report=report, source=source, info=info)


class _RequestPlanner:
    """The Agent's planner as the stepwise loop sees it (adds the detector's set for baselines)."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.name = agent.planner_name

    def plan(self, request):
        if request.degradations is None and self.agent.planner_name in _NEEDS_DEGRADATIONS:
            request.degradations = tuple(self.agent.detector.detect(request.image).degradations)
        return self.agent.planner.plan(request)


def _as_image(image) -> tuple[np.ndarray, str | None, PhotoInfo | None]:
    """(float32 RGB array, source path or None, the file's PhotoInfo or None) from a path or an array."""
    if isinstance(image, str | Path):
        pixels, info = load_photo(image)
        return pixels, str(image), info
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise RestoreAgentError(f"expected an (H, W, 3) RGB image or (H, W) grey image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    elif not np.issubdtype(arr.dtype, np.floating):
        raise RestoreAgentError(f"expected a float image in [0, 1] or uint8/uint16, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32), None, None


def no_reference_scores(image: np.ndarray) -> dict[str, float]:
    """The cheap no-reference scores (under 10 ms at 512 px) shown beside each alternative."""
    from .quality import exposure_error, noise_level

    return {"noise": round(noise_level(image), 3), "exposure": round(exposure_error(image), 4)}


def contact_sheet(image: np.ndarray, results: list[Result], path, width: int = 320) -> Path:
    """A PNG of the input and each result side by side, each captioned with its plan and scores."""
    from PIL import Image, ImageDraw, ImageFont

    from .imageio import atomic_write_bytes, to_uint8

    font = ImageFont.load_default(size=13)
    h, w = image.shape[:2]
    th = max(1, round(h * width / w))
    cap = 5 * 17 + 8  # caption lines: title, plan wrapped on up to three lines, scores
    panels = [("input", "", no_reference_scores(image), image)]
    panels += [(f"{i}. {r.report.get('answers', [''])[0].split('|')[0].strip()}", r.plan.text(), r.report.get("scores", {}), r.image) for i, r in enumerate(results, 1)]
    sheet = Image.new("RGB", (len(panels) * (width + 8) + 8, th + cap + 16), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (title, plan, scores, img) in enumerate(panels):
        x = 8 + j * (width + 8)
        thumb = Image.fromarray(to_uint8(img)).resize((width, th), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x, 8))
        lines = [title, *_wrap(draw, plan, font, width)[:3]]
        lines.append("  ".join(f"{k} {v:.3g}" for k, v in scores.items()))
        for n, line in enumerate(lines):
            draw.text((x, th + 14 + 17 * n), line, fill="black", font=font)
    import io

    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """``text`` cut at ", " into lines no wider than ``width`` pixels."""
    lines, line = [], ""
    for part in text.split(", "):
        cand = f"{line}, {part}" if line else part
        if line and draw.textlength(cand, font=font) > width:
            lines.append(line + ",")
            line = part
        else:
            line = cand
    return [*lines, line] if line else lines
