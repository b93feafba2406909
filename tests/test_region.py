"""Region-only restoration: context margin, feathered blend, untouched pixels byte-identical (in memory
and in the saved file, 8-bit and 16-bit), one-line errors, and the optional SAM's absence message."""

import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from restoreagent.cli import main
from restoreagent.errors import RestoreAgentError
from restoreagent.region import (
    SAM_MISSING,
    feather_weights,
    load_mask,
    parse_box,
    restore_region,
    segment_region,
)

PLAN = "denoise:unet_denoise_mid"


def _image(h=70, w=90, seed=0):
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


def test_outside_the_feather_is_the_input_bit_for_bit_and_inside_is_the_restoration():
    img = _image()
    seen = []

    def invert(crop):
        seen.append(crop.shape)
        return 1.0 - crop

    out, info = restore_region(img, invert, box=(30, 20, 25, 15), margin=10, feather=4)
    alpha = feather_weights(parse_box_mask((30, 20, 25, 15), img.shape), 4)
    assert np.array_equal(out[alpha == 0], img[alpha == 0])
    assert np.allclose(out[20:35, 30:55], 1.0 - img[20:35, 30:55])
    ring = (alpha > 0) & (alpha < 1)
    assert ring.any() and not np.array_equal(out[ring], img[ring])  # the feather blends
    # the tools saw the region, the feather and the margin: 25 + 2 * (4 + 10) wide, 15 + 2 * 14 high
    assert seen == [(15 + 28, 25 + 28, 3)] and info["crop"] == [30 - 14, 20 - 14, 53, 43]


def parse_box_mask(box, shape):
    x, y, w, h = box
    m = np.zeros(shape[:2], bool)
    m[y:y + h, x:x + w] = True
    return m


def test_context_is_clipped_at_the_image_border_and_masks_work_too():
    img = _image()
    mask = np.zeros(img.shape[:2], bool)
    mask[0:5, 0:5] = True
    mask[60:70, 80:90] = True
    out, info = restore_region(img, lambda c: np.zeros_like(c), mask=mask, margin=50, feather=0)
    assert info["crop"] == [0, 0, 90, 70]
    assert np.array_equal(out[~mask], img[~mask]) and not out[mask].any()


def test_bad_regions_are_errors():
    with pytest.raises(RestoreAgentError, match="four integers"):
        parse_box("1,2,3", (10, 10, 3))
    with pytest.raises(RestoreAgentError, match="outside"):
        parse_box("5,5,10,2", (10, 10, 3))
    with pytest.raises(RestoreAgentError, match="positive"):
        parse_box("1,1,0,2", (10, 10, 3))
    with pytest.raises(RestoreAgentError, match="empty"):
        restore_region(_image(), lambda c: c, mask=np.zeros((70, 90), bool))


def test_mask_files(tmp_path):
    m = np.zeros((20, 30), np.uint8)
    Image.fromarray(m).save(tmp_path / "black.png")
    with pytest.raises(RestoreAgentError, match="black.png: mask selects nothing"):
        load_mask(tmp_path / "black.png", (20, 30, 3))
    m[5:10, 5:10] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png", (20, 30, 3)).sum() == 25
    with pytest.raises(RestoreAgentError, match="m.png: mask is 30x20, the image is 40x20"):
        load_mask(tmp_path / "m.png", (20, 40, 3))


def _outside(shape, box, feather):
    return feather_weights(parse_box_mask(box, shape), feather) == 0


def test_saved_8bit_file_keeps_every_untouched_pixel(tmp_path, astronaut_small):
    noisy = np.clip(astronaut_small + np.random.default_rng(1).normal(0, 0.08, astronaut_small.shape), 0, 1)
    src = tmp_path / "in.png"
    Image.fromarray((noisy * 255 + 0.5).astype(np.uint8)).save(src)
    out = tmp_path / "out.png"
    assert main(["run", str(src), "-o", str(out), "--plan", PLAN, "--box", "30,40,50,30", "--feather", "6"]) == 0
    a, b = np.asarray(Image.open(src)), np.asarray(Image.open(out))
    keep = _outside(a.shape, (30, 40, 50, 30), 6)
    assert b.dtype == np.uint8 and np.array_equal(a[keep], b[keep])
    assert np.abs(a[40:70, 30:80].astype(int) - b[40:70, 30:80]).mean() > 2  # the box was denoised


def test_saved_16bit_file_stays_16bit_and_keeps_every_untouched_pixel(tmp_path):
    rng = np.random.default_rng(2)
    deep = rng.integers(0, 65536, (64, 80, 3), dtype=np.uint16)
    src = tmp_path / "in16.png"
    cv2.imwrite(str(src), deep)
    before = src.read_bytes()
    out = tmp_path / "out16.png"
    assert main(["run", str(src), "-o", str(out), "--plan", PLAN, "--box", "10,10,20,20"]) == 0
    b = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    keep = _outside(deep.shape, (10, 10, 20, 20), 8)
    assert b.dtype == np.uint16 and np.array_equal(deep[keep], b[keep]) and not np.array_equal(deep, b)
    assert src.read_bytes() == before  # the input is never touched


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--box", "1,2,3"], "--box must be four integers"),
        (["--box", "100,100,50,50"], "outside the 128x128 image"),
        (["--mask", "{small}"], "mask is 16x16, the image is 128x128"),
        (["--mask", "{missing}"], "file not found"),
        (["--point", "3,4"], "--sam-weights"),
        (["--fuse", "0"], "--fuse must be at least 1"),
    ],
)
def test_bad_region_arguments_one_line_error_nothing_written(tmp_path, astronaut_png, extra, needle, capsys):
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "small.png")
    extra = [e.format(small=tmp_path / "small.png", missing=tmp_path / "nope.png") for e in extra]
    out = tmp_path / "out.png"
    assert main(["run", str(astronaut_png), "-o", str(out), "--plan", PLAN, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and not out.exists()


def test_segmentation_absent_is_one_clear_message(monkeypatch, tmp_path, astronaut_png, capsys):
    monkeypatch.setitem(sys.modules, "segment_anything", None)  # import fails, as when not installed
    with pytest.raises(RestoreAgentError, match="segment-anything"):
        segment_region(_image(), tmp_path / "sam_vit_b.pth", point=(3, 4))
    out = tmp_path / "out.png"
    assert main(["run", str(astronaut_png), "-o", str(out), "--plan", PLAN, "--point", "5,5",
                 "--sam-weights", str(tmp_path / "sam.pth")]) == 2
    assert capsys.readouterr().err.strip() == f"restoreagent: error: {SAM_MISSING}" and not out.exists()
