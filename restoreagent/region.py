"""Restoring one region of an image: a box, a mask, or (optionally) what a click or box selects.

The region's tools see it with ``margin`` px of context around it (a denoiser or a deblurrer at a
crop's edge sees only half its window), the result is blended in over a ``feather`` px ramp
outside the region, and every pixel farther away is copied from the input untouched: once saved
losslessly (PNG, TIFF; ``run`` writes a 16-bit input as a 16-bit file) those pixels are the
input's, byte for byte.

Promptable segmentation (``segment_anything`` with weights given by path) is optional:
:func:`segment_region` says so in one line when it is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .errors import RestoreAgentError
from .imageio import load_image

MARGIN = 32  # px of context the tools see around the region
FEATHER = 8  # px over which the restored region fades into the input


def parse_box(text: str, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``"x,y,w,h"`` (pixels, top-left corner and size) -> a box inside an image of ``shape``."""
    try:
        x, y, w, h = (int(v) for v in str(text).split(","))
    except ValueError:
        raise RestoreAgentError(f"--box must be four integers x,y,w,h, got {text!r}") from None
    H, W = shape[:2]
    if w <= 0 or h <= 0:
        raise RestoreAgentError(f"--box {text}: width and height must be positive")
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise RestoreAgentError(f"--box {text}: outside the {W}x{H} image (x + w <= {W}, y + h <= {H})")
    return x, y, w, h


def parse_point(text: str, shape: tuple[int, ...]) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in str(text).split(","))
    except ValueError:
        raise RestoreAgentError(f"--point must be two integers x,y, got {text!r}") from None
    if not (0 <= x < shape[1] and 0 <= y < shape[0]):
        raise RestoreAgentError(f"--point {text}: outside the {shape[1]}x{shape[0]} image")
    return x, y


def load_mask(path, shape: tuple[int, ...]) -> np.ndarray:
    """A mask image (white = restore; grey above half counts as white) of the image's size -> bool (H, W)."""
    mask = load_image(path).mean(axis=2) > 0.5  # a missing, empty or unreadable file: one-line error
    if mask.shape != tuple(shape[:2]):
        raise RestoreAgentError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, the image is {shape[1]}x{shape[0]}; they must match"
        )
    if not mask.any():
        raise RestoreAgentError(f"{path}: mask selects nothing (no pixel brighter than mid-grey)")
    return mask


def box_mask(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    x, y, w, h = box
    mask = np.zeros(shape[:2], bool)
    mask[y:y + h, x:x + w] = True
    return mask


def feather_weights(mask: np.ndarray, feather: int) -> np.ndarray:
    """1 on the mask, falling linearly to 0 at ``feather`` px from it, exactly 0 beyond (float32 (H, W))."""
    if feather <= 0:
        return mask.astype(np.float32)
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.clip(1.0 - dist / np.float32(feather + 1), 0.0, 1.0).astype(np.float32)


def restore_region(
    image: np.ndarray,
    restore_fn: Callable[[np.ndarray], np.ndarray],
    mask: np.ndarray | None = None,
    box: tuple[int, int, int, int] | None = None,
    margin: int = MARGIN,
    feather: int = FEATHER,
) -> tuple[np.ndarray, dict]:
    """Restore only the region (``mask``: bool (H, W), or ``box``: x, y, w, h) of ``image``.

    ``restore_fn`` gets the region's bounding box widened by the feather and ``margin`` px (clipped
    to the image) and returns an image of the same size. Returns (image, info: the crop it saw).
    Pixels farther than ``feather`` px from the region are the input's, bit for bit.
    """
    if (mask is None) == (box is None):
        raise ValueError("give exactly one of mask and box")
    if margin < 0 or feather < 0:
        raise RestoreAgentError(f"margin and feather must be >= 0, got {margin} and {feather}")
    mask = box_mask(box, image.shape) if box is not None else np.asarray(mask, bool)
    if mask.shape != image.shape[:2]:
        raise RestoreAgentError(f"mask shape {mask.shape} does not match the image's {image.shape[:2]}")
    if not mask.any():
        raise RestoreAgentError("the region is empty")
    alpha = feather_weights(mask, feather)
    ys, xs = np.nonzero(alpha > 0)
    H, W = mask.shape
    y0, y1 = max(0, ys.min() - margin), min(H, ys.max() + 1 + margin)
    x0, x1 = max(0, xs.min() - margin), min(W, xs.max() + 1 + margin)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    restored = np.asarray(restore_fn(crop), np.float32)
    if restored.shape != crop.shape:
        raise RuntimeError(f"the restoration returned shape {restored.shape} for a crop of {crop.shape}")
    out = image.copy()
    a = alpha[y0:y1, x0:x1, None]
    blended = a * restored + (1.0 - a) * crop
    out[y0:y1, x0:x1] = np.where(a > 0, blended, crop)  # where a = 0 the input, exactly (even NaN-proof)
    return out, {"crop": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)], "region_pixels": int(mask.sum()),
                 "margin": margin, "feather": feather}


# --- optional promptable segmentation ---------------------------------------------------------------

SAM_MISSING = (
    "selecting a region by a click or a box prompt needs the optional package segment-anything "
    "(pip install 'restoreagent[segment]') and its weights file given with --sam-weights PATH; "
    "segment_anything is not installed (use --box x,y,w,h or --mask MASK.png instead)"
)


def segment_region(image: np.ndarray, weights, point=None, box=None) -> np.ndarray:
    """A bool (H, W) mask of what a click ``point`` (x, y) or a ``box`` (x, y, w, h) selects, by SAM."""
    try:
        from segment_anything import SamPredictor, sam_model_registry
    except ImportError:
        raise RestoreAgentError(SAM_MISSING) from None
    weights = Path(weights) if weights else None
    if weights is None or not weights.is_file():
        raise RestoreAgentError(f"{weights}: SAM weights file not found (give one with --sam-weights PATH)")
    if point is None and box is None:
        raise RestoreAgentError("a SAM prompt needs --point x,y or --box x,y,w,h")
    # the checkpoint names carry the model type (sam_vit_b_01ec64.pth, ...); vit_h is SAM's default
    kind = next((k for k in ("vit_b", "vit_l", "vit_h") if k in weights.name), "vit_h")
    predictor = SamPredictor(sam_model_registry[kind](checkpoint=str(weights)))
    predictor.set_image((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
    kwargs = {}
    if point is not None:
        kwargs |= {"point_coords": np.array([point], np.float32), "point_labels": np.array([1])}
    if box is not None:
        x, y, w, h = box
        kwargs["box"] = np.array([x, y, x + w, y + h], np.float32)
    masks, scores, _ = predictor.predict(multimask_output=True, **kwargs)
    mask = masks[int(np.argmax(scores))].astype(bool)
    if not mask.any():
        raise RestoreAgentError("SAM selected nothing at that prompt")
    return mask
