"""``restoreagent assess``: how good an image looks, by every measure that runs offline.

    from restoreagent.assess import assess_image
    report = assess_image(image)              # float32 RGB (H, W, 3) in [0, 1]
    report["no_reference"]["noise"]["value"]  # e.g. 6.3 (grey levels of noise; lower is better)
    report = assess_image(image, ref=clean)   # adds report["full_reference"]: psnr, ssim, ...

Three views of an image:

- **no-reference** measures: the noise and exposure estimators of :mod:`restoreagent.quality`
  (what the stepwise agent's quality check uses), pyiqa's PIQE and entropy, and NIQE and BRISQUE
  when their parameter files are already in pyiqa's cache (``~/.cache/torch/hub/pyiqa``);
- **full-reference** metrics when a clean reference is given: PSNR, SSIM, MS-SSIM, FSIM, VIF and
  GMSD (pyiqa, no weight files), LPIPS and DISTS when their weights are cached;
- **the detector's view**: which degradations the shipped detector sees, with probabilities.

Nothing is ever downloaded: a measure whose files are missing is reported as unavailable, with the
reason, and the others are still computed. Every measure says which way is better.
"""

from __future__ import annotations

import contextlib
import functools
import io
import threading

from .errors import RestoreAgentError

# name -> (pyiqa metric, what it measures); lower_better is read from pyiqa itself
NO_REFERENCE_PYIQA = {
    "piqe": "block-wise distortion and noise (0-100)",
    "niqe": "distance from natural-scene statistics",
    "brisque": "natural-scene statistics, SVM score (0-100)",
    "entropy": "information content of the grey levels (bits)",
}
FULL_REFERENCE_PYIQA = {
    "psnr": "peak signal-to-noise ratio (dB)",
    "ssim": "structural similarity",
    "ms_ssim": "multi-scale structural similarity",
    "fsim": "feature (phase congruency) similarity",
    "vif": "visual information fidelity",
    "gmsd": "gradient magnitude similarity deviation",
    "lpips": "learned perceptual distance (AlexNet)",
    "dists": "structure and texture distance (VGG)",
}
FAST_SCORER = ("psnr", "ssim")  # restoreagent.scoring computes these exactly as pyiqa does
DEFAULT_MIN_SIDE = 32  # PIQE and friends look at 16-px blocks; below this they say nothing useful


def assess_image(image, ref=None, detector=None) -> dict:
    """Score ``image`` (float32 RGB (H, W, 3) in [0, 1]); see the module doc.

    ``ref``: a clean reference of the same size (adds the full-reference metrics). ``detector``: a
    :class:`restoreagent.perception.Detector`, ``None`` for the shipped one, ``False`` to skip it.
    Returns ``{"size", "no_reference", "full_reference" (with ref), "detector"}``; each measure is
    ``{"value", "better", "about"}``, with ``value`` None and ``"unavailable"`` giving the reason
    when it cannot be computed here.
    """
    import numpy as np

    from . import quality

    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise RestoreAgentError(f"assess: expected an (H, W, 3) image, got shape {image.shape}")
    report: dict = {"size": [int(image.shape[0]), int(image.shape[1])]}
    nr = {
        "noise": _entry(quality.noise_level(image), "lower", "noise standard deviation (grey levels, 0-255)"),
        "exposure": _entry(quality.exposure_error(image), "lower", "distance of mean brightness from mid-grey"),
        "brightness": _entry(float(quality._luma(image).mean()), None, "mean luma (0-1)"),
    }
    for name, about in NO_REFERENCE_PYIQA.items():
        nr[name] = _pyiqa_entry(name, about, image)
    report["no_reference"] = nr
    if ref is not None:
        ref = np.ascontiguousarray(ref, dtype=np.float32)
        if ref.shape != image.shape:
            raise RestoreAgentError(
                f"assess: the reference is {ref.shape[1]}x{ref.shape[0]}, the image {image.shape[1]}x{image.shape[0]}; "
                "full-reference metrics need the same size"
            )
        report["full_reference"] = {
            name: _pyiqa_entry(name, about, image, ref) for name, about in FULL_REFERENCE_PYIQA.items()
        }
    report["detector"] = _detector_view(image, detector)
    return report


def _entry(value, better, about) -> dict:
    return {"value": None if value is None else round(float(value), 4), "better": better, "about": about}


def _pyiqa_entry(name: str, about: str, image, ref=None) -> dict:
    import torch

    from .scoring import to_tensor

    metric = _pyiqa_metric(name)
    if isinstance(metric, _Unavailable):
        return {**_entry(None, None, about), "unavailable": str(metric)}
    better = "lower" if metric.lower_better else "higher"
    if min(image.shape[:2]) < DEFAULT_MIN_SIDE:
        return {**_entry(None, better, about), "unavailable": f"image smaller than {DEFAULT_MIN_SIDE} px"}
    try:
        if name in FAST_SCORER:  # the project's exact re-implementation of pyiqa's, several times faster
            from .scoring import Scorer

            value = Scorer((name,))(image, ref)[name]
        else:
            with torch.inference_mode():
                args = (to_tensor(image),) if ref is None else (to_tensor(image), to_tensor(ref))
                value = float(metric(*args).item())
    except (RuntimeError, ValueError, IndexError) as e:  # e.g. too small for MS-SSIM's five scales
        return {**_entry(None, better, about), "unavailable": f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"}
    return _entry(value, better, about)


class _Unavailable(Exception):
    """A measure that cannot be computed here (no pyiqa, or a file that would have to be downloaded)."""


_OFFLINE_LOCK = threading.Lock()


@contextlib.contextmanager
def _no_downloads():
    """pyiqa and torchvision fetch missing weight files from the internet; here that is an error.

    Both go through ``download_url_to_file`` (pyiqa's download_util imports torch.hub's), so
    replacing it for the duration of building a metric catches every download they would start.
    """
    import torch.hub
    from pyiqa.utils import download_util

    def refuse(url, dst, *args, **kwargs):
        raise _Unavailable(f"needs {url.rsplit('/', 1)[-1]} (not downloaded; nothing is fetched)")

    with _OFFLINE_LOCK:
        saved = torch.hub.download_url_to_file, download_util.download_url_to_file
        torch.hub.download_url_to_file = download_util.download_url_to_file = refuse
        try:
            yield
        finally:
            torch.hub.download_url_to_file, download_util.download_url_to_file = saved


@functools.cache
def _pyiqa_metric(name: str):
    """The pyiqa metric, or the :class:`_Unavailable` saying why not (kept: building fails slowly)."""
    try:
        return _build_pyiqa_metric(name)
    except _Unavailable as e:
        return e


def _build_pyiqa_metric(name: str):
    try:
        import pyiqa
    except ImportError:
        raise _Unavailable("needs pyiqa (scripts/setup.sh installs it)") from None
    # pyiqa prints "Downloading: URL" before it starts one: not true here, and it would spoil --json
    with _no_downloads(), contextlib.redirect_stdout(io.StringIO()):
        try:
            return pyiqa.create_metric(name, device="cpu", as_loss=False)
        except _Unavailable:
            raise
        except Exception as e:  # pyiqa wraps loading failures in many types
            cause = e.__cause__ or e.__context__
            if isinstance(cause, _Unavailable):
                raise cause from None
            raise _Unavailable(f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}") from None


def _detector_view(image, detector) -> dict:
    if detector is False:
        return {"unavailable": "not asked"}
    try:
        if detector is None:
            from .perception import default_detector

            detector = default_detector()
        return detector.detect(image).to_json()
    except RestoreAgentError as e:
        return {"unavailable": str(e)}


# --- the command ---------------------------------------------------------------------------------


def add_assess_parser(sub) -> None:
    p = sub.add_parser(
        "assess",
        help="score images: no-reference quality, full-reference metrics with --ref, the detector's view",
        description="Every measure runs offline; one whose files are not downloaded is shown as unavailable "
        "(nothing is fetched). A file that cannot be read gets one error line; the others are still scored, "
        "and the exit status is 2 if any failed.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--ref", metavar="CLEAN", help="a clean reference of the same size: adds PSNR, SSIM, ...")
    p.add_argument("--json", action="store_true", help="a JSON list of reports, one per image")
    p.add_argument("--no-detector", action="store_true", help="skip the detector's view")
    p.set_defaults(func=cmd_assess)


def cmd_assess(args) -> int:
    import json
    import sys

    from .imageio import load_image

    ref = load_image(args.ref) if args.ref else None
    detector = False if args.no_detector else None
    reports, failed = [], 0
    for path in args.images:
        try:
            report = {"image": str(path), **assess_image(load_image(path), ref, detector)}
        except RestoreAgentError as e:
            failed += 1
            msg = str(e) if str(path) in str(e) else f"{path}: {e}"
            print(f"restoreagent: error: {msg}", file=sys.stderr)
            continue
        if args.ref:
            report["ref"] = str(args.ref)
        reports.append(report)
        if not args.json:
            print_report(report)
    if args.json:
        print(json.dumps(reports, indent=2))
    return 2 if failed else 0


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    h, w = report["size"]
    table = Table(title=f"{report['image']} ({w}x{h})", title_justify="left")
    for col in ("kind", "measure", "value", "better", "what it measures"):
        table.add_column(col)
    for kind, key in (("no-ref", "no_reference"), ("full-ref", "full_reference")):
        for name, e in report.get(key, {}).items():
            value = f"{e['value']:.4g}" if e["value"] is not None else f"unavailable: {e['unavailable']}"
            table.add_row(kind, name, value, e["better"] or "", e["about"])
    console = Console()
    console.print(table)
    det = report["detector"]
    if "unavailable" in det:
        console.print(f"detector: unavailable ({det['unavailable']})")
    else:
        seen = ", ".join(f"{d} ({det['probabilities'][d]:.2f})" for d in det["degradations"]) or "nothing"
        console.print(f"detector sees: {seen}")
