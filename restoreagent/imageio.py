"""Files in, files out: the only place images are decoded and encoded.

Inside the system an image is float32 RGB in [0, 1], shape (H, W, 3). Loading handles the
awkward real-world cases (grayscale, alpha, 16-bit, EXIF rotation) and turns every other
problem into an ImageError naming the file. Saving is atomic and never touches the input.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, RestoreAgentError

# 64 megapixels: a float32 RGB copy is 768 MB and tools make several; beyond that we refuse
# rather than let the machine swap. Override with RESTOREAGENT_MAX_PIXELS.
DEFAULT_MAX_PIXELS = 64_000_000
# Files the folder-reading commands (bench, label, planner training) pick up.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


def max_pixels() -> int:
    return int(os.environ.get("RESTOREAGENT_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def load_image(path, limit: int | None = None) -> np.ndarray:
    """Decode an image file to float32 RGB in [0, 1], shape (H, W, 3)."""
    path = Path(path)
    limit = max_pixels() if limit is None else limit
    if not path.exists():
        raise ImageError(path, "file not found")
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(path, "file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size  # read from the header, before any pixel is decoded
                if w == 0 or h == 0:
                    raise ImageError(path, f"image has zero size ({w}x{h})")
                if w * h > limit:
                    raise ImageError(
                        path,
                        f"image is {w}x{h} = {w * h / 1e6:.0f} megapixels, above the limit of "
                        f"{limit / 1e6:.0f} (set RESTOREAGENT_MAX_PIXELS to raise it)",
                    )
                im.load()
                if im.format in ("PNG", "TIFF") and im.mode in ("RGB", "RGBA"):
                    deep = _read_16bit_color(path)  # Pillow keeps only 8 of 16 bits per colour channel
                    if deep is not None:
                        return deep
                im = ImageOps.exif_transpose(im)  # photos carry their rotation in EXIF
                return _to_float_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(path, f"image is above the limit of what can be decoded safely ({e})") from None
    except UnidentifiedImageError:
        size = _png_header_size(path)
        if size is not None and 0 in size:
            raise ImageError(path, f"image has zero size ({size[0]}x{size[1]})") from None
        raise ImageError(path, "not a readable image (unknown format or not an image file)") from None
    except (OSError, SyntaxError, ValueError) as e:
        # Pillow reports truncated or corrupt data as OSError / SyntaxError.
        raise ImageError(path, f"image data is truncated or corrupt ({e})") from None


def _png_header_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG header (Pillow refuses to open a zero-sized PNG at all)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None


def _read_16bit_color(path: Path) -> np.ndarray | None:
    """Full-precision decode of a 16-bit colour PNG/TIFF (None when the file is 8-bit)."""
    import cv2

    arr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        return None
    rgb = arr[:, :, 2::-1].astype(np.float32) / 65535.0
    if arr.shape[2] == 4:  # composite on white, as for 8-bit RGBA
        alpha = arr[:, :, 3:4].astype(np.float32) / 65535.0
        rgb = rgb * alpha + (1.0 - alpha)
    return np.ascontiguousarray(rgb)


def _to_float_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit (or 32-bit int) grayscale
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 or im.mode.startswith("I;16") else 255.0
        arr = np.clip(arr / peak, 0, 1).astype(np.float32)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if im.mode == "F":
        arr = np.clip(np.asarray(im, dtype=np.float32), 0, 1)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite on white: transparent regions of photos/logos are meant to be seen on a page.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def quantize(image: np.ndarray) -> np.ndarray:
    """What the image becomes once stored as an 8-bit PNG and decoded again."""
    return to_uint8(image).astype(np.float32) / np.float32(255.0)


def png_bytes(image: np.ndarray, compress_level: int = 6) -> bytes:
    """An 8-bit RGB PNG of a float image (the bytes datasets store; 6 is PIL's default level)."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image), "RGB").save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> float32 RGB, exactly as :func:`quantize` produced it."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).astype(np.float32) / np.float32(255.0)


def check_output_path(out, *inputs) -> Path:
    """Refuse an output that would overwrite an input or has an unknown extension."""
    out = Path(out)
    if out.suffix.lower() not in SAVE_FORMATS:
        raise ImageError(
            out, f"unknown output extension {out.suffix!r}; use one of {', '.join(sorted(SAVE_FORMATS))}"
        )
    for inp in inputs:
        if inp is None:
            continue
        inp = Path(inp)
        if out.resolve() == inp.resolve() or (out.exists() and inp.exists() and os.path.samefile(out, inp)):
            raise ImageError(out, "output path is the input file; refusing to overwrite the input")
    return out


def atomic_write_bytes(path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_image(image: np.ndarray, path, quality: int = 95) -> Path:
    """Encode float RGB [0, 1] to ``path`` atomically (format from the extension)."""
    import io

    path = check_output_path(path)
    fmt = SAVE_FORMATS[path.suffix.lower()]
    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(to_uint8(image), "RGB").save(buf, format=fmt, **kwargs)
    atomic_write_bytes(path, buf.getvalue())
    return path


def center_crop(image: np.ndarray, size: int | None) -> np.ndarray:
    """Centre crop to size x size (or the whole image when it is smaller / size is None)."""
    if not size:
        return image
    h, w = image.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw].copy()


def list_images(folders, recursive: bool = True) -> list[Path]:
    """Image files in the given folders (sorted; recursive by default); a file path is taken as is.

    Raises :class:`RestoreAgentError` naming the folder when one does not exist or when none of
    them holds an image.
    """
    if isinstance(folders, str | Path):
        folders = [folders]
    out: list[Path] = []
    for f in folders or []:
        p = Path(f).expanduser()
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            found = p.rglob("*") if recursive else p.iterdir()
            out += sorted(q for q in found if q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise RestoreAgentError(f"{p}: image folder does not exist")
    if not out:
        names = ", ".join(str(f) for f in folders or []) or "(no folders given)"
        raise RestoreAgentError(f"{names}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return out
