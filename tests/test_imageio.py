"""Real-world input files: awkward formats are handled, broken ones give a one-line error."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from restoreagent.errors import ImageError, RestoreAgentError
from restoreagent.imageio import check_output_path, load_image, save_image


def _png_with_header_size(path, width, height):
    """A tiny valid PNG whose IHDR claims another size (zero or huge)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # 'IHDR' + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_rgb_png_round_trip(tmp_path, astronaut_small):
    p = save_image(astronaut_small, tmp_path / "a.png")
    back = load_image(p)
    assert back.dtype == np.float32 and back.shape == astronaut_small.shape
    assert np.abs(back - astronaut_small).max() <= 0.5 / 255 + 1e-6


def test_grayscale_becomes_rgb(tmp_path):
    Image.fromarray(np.full((5, 7), 128, np.uint8), "L").save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.shape == (5, 7, 3) and np.allclose(img, 128 / 255)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top half opaque red, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert np.allclose(img[0, 0], [1, 0, 0]) and np.allclose(img[3, 3], [1, 1, 1])


def test_16bit_png_keeps_precision(tmp_path):
    import cv2

    gray = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    cv2.imwrite(str(tmp_path / "g16.png"), gray)
    img = load_image(tmp_path / "g16.png")
    assert np.allclose(img[..., 0], gray / 65535.0, atol=1e-6)
    rgb = np.stack([gray, gray[::-1], np.full_like(gray, 1000)], axis=2)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[:, :, ::-1])  # OpenCV writes BGR
    img = load_image(tmp_path / "c16.png")
    assert np.allclose(img, rgb / 65535.0, atol=1e-6)


def test_exif_rotation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    img = load_image(tmp_path / "r.jpg")
    assert img.shape == (20, 10, 3)  # displayed upright: portrait
    assert img[2, 5].mean() > 0.8 and img[18, 5].mean() < 0.2  # the white half is now on top


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p, "file not found"),
        (lambda p: (p.write_bytes(b""), p)[1], "file is empty"),
        (lambda p: (p.write_text("hello, not an image"), p)[1], "not a readable image"),
        (lambda p: _png_with_header_size(p, 0, 5), "zero size"),
        (lambda p: _png_with_header_size(p, 200_000, 200_000), "above the limit"),
    ],
    ids=["missing", "empty", "text", "zero-size", "huge"],
)
def test_bad_files_raise_image_error(tmp_path, make, problem):
    path = make(tmp_path / "bad.png")
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert problem in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_truncated_files(tmp_path, astronaut_small):
    for ext in ("png", "jpg"):
        full = save_image(astronaut_small, tmp_path / f"full.{ext}")
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        with pytest.raises(ImageError, match="truncated or corrupt"):
            load_image(cut)


def test_output_may_not_be_the_input(tmp_path, astronaut_png):
    with pytest.raises(ImageError, match="refusing to overwrite the input"):
        check_output_path(astronaut_png, astronaut_png)
    with pytest.raises(ImageError, match="refusing to overwrite the input"):
        check_output_path(tmp_path / "." / astronaut_png.name, astronaut_png)
    with pytest.raises(ImageError, match="unknown output extension"):
        check_output_path(tmp_path / "out.xyz", astronaut_png)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, astronaut_small):
    save_image(astronaut_small, tmp_path / "o.png")
    save_image(astronaut_small * 0.5, tmp_path / "o.png")  # overwrite an older output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


# --- photo-grade files: bit depth, ICC profile, EXIF, JPEG quality (issue 13) ---------------------


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_16bit_png_in_gives_16bit_png_out_with_its_icc_profile(tmp_path):
    import cv2

    from restoreagent.imageio import PhotoInfo, load_photo

    rgb = (np.random.default_rng(0).random((12, 17, 3)) * 65535).astype(np.uint16)
    icc = _srgb_profile()
    src = save_image(rgb / 65535.0, tmp_path / "in.png", info=PhotoInfo(bit_depth=16, icc_profile=icc))
    image, info = load_photo(src)
    assert info.bit_depth == 16 and info.icc_profile == icc
    out = save_image(image, tmp_path / "out.png", info=info)
    raw = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and np.array_equal(raw[:, :, ::-1], rgb)  # every one of the 16 bits
    with Image.open(out) as im:
        assert im.info["icc_profile"] == icc


def test_16bit_tiff_in_gives_16bit_tiff_out(tmp_path):
    import cv2

    from restoreagent.imageio import load_photo

    rgb = (np.random.default_rng(1).random((9, 11, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "in.tif"), rgb[:, :, ::-1])
    image, info = load_photo(tmp_path / "in.tif")
    assert info.bit_depth == 16
    out = save_image(image, tmp_path / "out.tiff", info=info)
    raw = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and np.array_equal(raw[:, :, ::-1], rgb)


def test_8bit_input_stays_8bit(tmp_path, astronaut_small):
    from restoreagent.imageio import load_photo

    image, info = load_photo(save_image(astronaut_small, tmp_path / "a.png"))
    assert info.bit_depth == 8
    with Image.open(save_image(image, tmp_path / "b.png", info=info)) as im:
        assert im.mode == "RGB"


def test_jpeg_with_exif_gives_jpeg_with_exif_orientation_reset(tmp_path):
    from restoreagent.imageio import load_photo

    arr = np.zeros((4, 8, 3), np.uint8)
    arr[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    exif[0x010F] = "TestCam"  # Make
    icc = _srgb_profile()
    Image.fromarray(arr).save(tmp_path / "in.jpg", exif=exif.tobytes(), icc_profile=icc, quality=95)
    image, info = load_photo(tmp_path / "in.jpg")
    assert image.shape == (8, 4, 3)  # turned upright
    out = save_image(image, tmp_path / "out.jpg", info=info)
    with Image.open(out) as im:
        got = im.getexif()
        assert got[0x010F] == "TestCam" and got[0x0112] == 1  # carried, orientation reset
        assert im.info["icc_profile"] == icc
        assert im.size == (4, 8)


def test_jpeg_quality_changes_the_file(tmp_path, astronaut_small):
    low = save_image(astronaut_small, tmp_path / "low.jpg", quality=20).stat().st_size
    high = save_image(astronaut_small, tmp_path / "high.jpg", quality=98).stat().st_size
    assert low < high / 2
    with pytest.raises(RestoreAgentError, match="quality"):
        save_image(astronaut_small, tmp_path / "bad.jpg", quality=0)


def test_float32_rgb_tiff_loads(tmp_path):
    import cv2

    rgb = np.random.default_rng(2).random((6, 5, 3)).astype(np.float32)
    cv2.imwrite(str(tmp_path / "f.tif"), rgb[:, :, ::-1])
    assert np.allclose(load_image(tmp_path / "f.tif"), rgb, atol=1e-6)


def test_animated_gif_says_first_frame_is_used(tmp_path, caplog):
    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with caplog.at_level("WARNING", logger="restoreagent"):
        img = load_image(tmp_path / "a.gif")
    assert "only the first frame" in caplog.text
    assert img[0, 0, 0] > 0.9 and img[0, 0, 2] < 0.1


def test_pixel_limit_follows_the_environment_not_pillows(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "p.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # Pillow's own limit must not pre-empt ours
    assert load_image(tmp_path / "p.png").shape == (100, 100, 3)
    monkeypatch.setenv("RESTOREAGENT_MAX_PIXELS", "5000")
    with pytest.raises(ImageError, match="RESTOREAGENT_MAX_PIXELS"):
        load_image(tmp_path / "p.png")
    monkeypatch.setenv("RESTOREAGENT_MAX_PIXELS", "abc")
    with pytest.raises(RestoreAgentError, match="RESTOREAGENT_MAX_PIXELS='abc'"):
        load_image(tmp_path / "p.png")


def test_run_command_keeps_16_bits_icc_and_exif(tmp_path):
    import cv2

    from restoreagent.cli import main
    from restoreagent.imageio import PhotoInfo

    rgb = (np.random.default_rng(3).random((40, 48, 3)) * 65535).astype(np.uint16)
    icc = _srgb_profile()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    src = save_image(rgb / 65535.0, tmp_path / "in.png", info=PhotoInfo(16, icc, exif.tobytes()))
    out = tmp_path / "out.png"
    assert main(["run", str(src), "-o", str(out), "--plan", "brighten:gamma_mild"]) == 0
    raw = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and len(np.unique(raw)) > 256  # not 8 bits in a 16-bit file
    with Image.open(out) as im:
        assert im.info["icc_profile"] == icc and im.getexif()[0x010F] == "TestCam"
    jpg = tmp_path / "out.jpg"
    assert main(["run", str(src), "-o", str(jpg), "--plan", "none", "--jpeg-quality", "40"]) == 0
    with Image.open(jpg) as im:
        assert im.info["icc_profile"] == icc and im.getexif()[0x010F] == "TestCam"


def test_16bit_tiff_with_exif_and_icc_gives_16bit_tiff_with_both(tmp_path):
    import tifffile

    from restoreagent.imageio import PhotoInfo, load_photo

    rgb = (np.random.default_rng(3).random((6, 10, 3)) * 65535).astype(np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    exif[0x010F] = "TestCam"  # Make
    exif[0x0110] = "T-1"  # Model
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"  # DateTimeOriginal, in the EXIF sub-IFD
    exif.get_ifd(0x8769)[0x829A] = (1, 250)  # ExposureTime
    exif.get_ifd(0x8825)[1] = "N"  # GPSLatitudeRef, in the GPS sub-IFD
    icc = _srgb_profile()
    src = save_image(rgb / 65535.0, tmp_path / "in.tif", info=PhotoInfo(16, icc, exif.tobytes(), "TIFF"))
    with tifffile.TiffFile(src) as tif:  # an independent reader sees a 16-bit TIFF with the tags
        page = tif.pages[0]
        assert page.dtype == np.uint16 and page.shape == (6, 10, 3)
        assert page.tags[34665].value["DateTimeOriginal"] == "2020:01:02 03:04:05"
        assert page.tags[34675].value == icc and page.tags[271].value == "TestCam"
        assert page.tags[274].value == 1  # written as given upright
    image, info = load_photo(src)
    assert info.bit_depth == 16 and info.icc_profile == icc
    out = save_image(image, tmp_path / "out.tiff", info=info)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].dtype == np.uint16 and np.array_equal(tif.pages[0].asarray(), rgb)
    with Image.open(out) as im:
        got = im.getexif()
        assert got[0x010F] == "TestCam" and got[0x0110] == "T-1" and got[0x0112] == 1
        assert got.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05"
        exposure = got.get_ifd(0x8769)[0x829A]
        assert (exposure[0] / exposure[1] if isinstance(exposure, tuple) else float(exposure)) == pytest.approx(1 / 250)
        assert got.get_ifd(0x8825)[1] == "N"
        assert im.info["icc_profile"] == icc
        assert 0x8768 not in got and 0x8824 not in got  # no placeholder left behind


def test_16bit_tiff_orientation_reset_after_turning_upright(tmp_path):
    import tifffile

    from restoreagent.imageio import load_photo

    rgb = (np.random.default_rng(4).random((4, 8, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", rgb, photometric="rgb", extratags=[(274, "H", 1, 6, True), (271, "s", 0, "Cam", True)])
    image, info = load_photo(tmp_path / "in.tif")
    assert image.shape == (8, 4, 3)  # turned upright
    out = save_image(image, tmp_path / "out.tif", info=info)
    with Image.open(out) as im:
        assert im.getexif()[0x0112] == 1 and im.getexif()[0x010F] == "Cam"
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].shape == (8, 4, 3) and tif.pages[0].dtype == np.uint16
