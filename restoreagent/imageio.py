"""Files in, files out: the only place images are decoded and encoded.

Inside the system an image is float32 RGB in [0, 1], shape (H, W, 3). Loading handles the
awkward real-world cases (grayscale, alpha, 16-bit, float TIFF, EXIF rotation, animated GIF) and
turns every other problem into an ImageError naming the file. Saving is atomic and never touches
the input.

Photo-grade files: :func:`load_photo` also returns a :class:`PhotoInfo` (bit depth, ICC profile,
EXIF with the orientation already applied and reset to 1), and :func:`save_image` given that info
writes a 16-bit PNG/TIFF for a 16-bit input and carries the ICC profile and EXIF to formats that
hold them (PNG, JPEG, WebP, TIFF of 8 or 16 bits; BMP holds neither).
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import warnings
import zlib
from dataclasses import dataclass
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


log = logging.getLogger("restoreagent")
_ORIENTATION = 0x0112  # the EXIF tag


def max_pixels() -> int:
    raw = os.environ.get("RESTOREAGENT_MAX_PIXELS")
    if raw is None:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise RestoreAgentError(f"RESTOREAGENT_MAX_PIXELS={raw!r} is not a positive whole number of pixels")
    return value


@dataclass(frozen=True)
class PhotoInfo:
    """What a photo file carries besides its pixels, to be written back with the result."""

    bit_depth: int = 8  # 16 for 16-bit PNG/TIFF (and 32-bit float TIFF): written back as 16-bit
    icc_profile: bytes | None = None
    exif: bytes | None = None  # orientation already applied to the pixels and reset to 1 here
    format: str | None = None
    frames: int = 1  # animated files: only the first frame is used


def load_image(path, limit: int | None = None) -> np.ndarray:
    """Decode an image file to float32 RGB in [0, 1], shape (H, W, 3)."""
    return load_photo(path, limit)[0]


def load_photo(path, limit: int | None = None) -> tuple[np.ndarray, PhotoInfo]:
    """:func:`load_image` plus the file's :class:`PhotoInfo` (bit depth, ICC profile, EXIF)."""
    path = Path(path)
    limit = max_pixels() if limit is None else limit
    if not path.exists():
        raise ImageError(path, "file not found")
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(path, "file is empty")
    # Pillow's own decompression-bomb limit (89 MP) would pre-empt ours: it follows ours instead
    # (Pillow warns above it and refuses above twice it; both become the error below)
    Image.MAX_IMAGE_PIXELS = limit
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
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    log.warning("%s: %d frames; only the first frame is used", path, frames)
                im.load()
                exif = im.getexif()
                orientation = exif.get(_ORIENTATION, 1)
                info = PhotoInfo(
                    bit_depth=16 if im.mode.startswith("I;16") or im.mode in ("I", "F") else 8,
                    icc_profile=im.info.get("icc_profile") or None,
                    exif=_upright_exif(exif),
                    format=im.format,
                    frames=frames,
                )
                if im.format in ("PNG", "TIFF") and im.mode in ("RGB", "RGBA"):
                    deep = _read_16bit_color(path)  # Pillow keeps only 8 of 16 bits per colour channel
                    if deep is not None:
                        info = PhotoInfo(16, info.icc_profile, info.exif, info.format, frames)
                        return _apply_orientation(deep, orientation), info
                im = ImageOps.exif_transpose(im)  # photos carry their rotation in EXIF
                return _to_float_rgb(im), info
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            path,
            f"image is above the limit of {limit / 1e6:.0f} megapixels (set RESTOREAGENT_MAX_PIXELS to raise it)",
        ) from None
    except UnidentifiedImageError:
        size = _png_header_size(path)
        if size is not None and 0 in size:
            raise ImageError(path, f"image has zero size ({size[0]}x{size[1]})") from None
        if path.suffix.lower() in (".tif", ".tiff"):  # Pillow opens no float RGB TIFF; OpenCV does
            float_tiff = _read_float_tiff(path, limit)
            if float_tiff is not None:
                return float_tiff, PhotoInfo(bit_depth=16, format="TIFF")
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


def _read_float_tiff(path: Path, limit: int) -> np.ndarray | None:
    """A 32-bit float RGB TIFF (values taken as [0, 1]), or None when OpenCV cannot read it either."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if arr is None or arr.dtype not in (np.float32, np.float64):
        return None
    if arr.shape[0] * arr.shape[1] > limit:
        raise ImageError(path, f"image is above the limit of {limit / 1e6:.0f} megapixels")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    rgb = arr[:, :, 2::-1] if arr.shape[2] >= 3 else np.repeat(arr[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(np.clip(np.nan_to_num(rgb), 0, 1), dtype=np.float32)


def _upright_exif(exif: Image.Exif) -> bytes | None:
    """The EXIF bytes with the orientation set to 1 (the pixels are turned upright on loading)."""
    if not len(exif):
        return None
    orientation = exif.get(_ORIENTATION)
    if orientation is None:
        return exif.tobytes()
    exif[_ORIENTATION] = 1
    try:
        return exif.tobytes()
    finally:
        exif[_ORIENTATION] = orientation  # exif_transpose still reads it from this object


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W, C) array upright as Pillow's ``exif_transpose`` turns an image."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(arr)) if op else arr


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


def check_output_path(out, *inputs, writable: bool = False) -> Path:
    """Refuse an output that would overwrite an input or has an unknown extension; with
    ``writable``, also one that cannot be written (checked before any work is done)."""
    out = Path(out)
    if out.suffix.lower() not in SAVE_FORMATS:
        raise ImageError(
            out, f"unknown output extension {out.suffix!r}; use one of {', '.join(sorted(SAVE_FORMATS))}"
        )
    for inp in inputs:
        if inp is not None and _same_file(out, inp):
            raise ImageError(out, "output path is the input file; refusing to overwrite the input")
    if writable:
        check_writable_file(out)
    return out


def _same_file(a, b) -> bool:
    a, b = Path(a), Path(b)
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))


def _check_parent(path: Path) -> None:
    """The folder ``path`` goes in exists and is writable, or can be created."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RestoreAgentError(f"{path}: cannot write here: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RestoreAgentError(f"{path}: cannot write here: folder {parent} is not writable")


def check_writable_file(path) -> Path:
    """Fail now, with one line, when a file cannot be written at ``path`` later."""
    path = Path(path)
    if path.is_dir():
        raise RestoreAgentError(f"{path}: is an existing folder; give a file name")
    _check_parent(path)
    return path


STEP_FILE = re.compile(r"step\d+_.+\.png$")  # the names --save-steps writes


def check_output_dir(folder, *inputs, what: str = "output folder") -> Path:
    """Fail now when ``folder`` cannot hold written files, or when an input sits in it under the
    name of a step file (``--save-steps`` would overwrite it)."""
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise RestoreAgentError(f"{folder}: {what} is an existing file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise RestoreAgentError(f"{folder}: {what} is not writable")
    else:
        _check_parent(folder / "x")
    for inp in inputs:
        if inp is None:
            continue
        inp = Path(inp)
        if STEP_FILE.match(inp.name) and inp.exists() and folder.exists() and _same_file(inp.parent, folder):
            raise RestoreAgentError(
                f"{inp}: the input is in the {what} {folder} under a step file's name, where it would be "
                "overwritten; choose another folder"
            )
    return folder


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


def save_image(image: np.ndarray, path, quality: int = 95, info: PhotoInfo | None = None) -> Path:
    """Encode float RGB [0, 1] to ``path`` atomically (format from the extension).

    ``quality``: JPEG/WebP quality (1-100). ``info`` (from :func:`load_photo`): a 16-bit source
    gives a 16-bit PNG/TIFF, and its ICC profile and EXIF are carried where the format holds them.
    """
    path = check_output_path(path)
    atomic_write_bytes(path, encode_image(image, SAVE_FORMATS[path.suffix.lower()], quality, info))
    return path


def encode_image(image: np.ndarray, fmt: str, quality: int = 95, info: PhotoInfo | None = None) -> bytes:
    """The bytes of ``image`` in ``fmt`` (a :data:`SAVE_FORMATS` value); see :func:`save_image`."""
    if not 1 <= int(quality) <= 100:
        raise RestoreAgentError(f"JPEG quality must be between 1 and 100, got {quality}")
    info = info or PhotoInfo()
    if info.bit_depth == 16 and fmt == "PNG":
        return _png16_bytes(image, info)
    if info.bit_depth == 16 and fmt == "TIFF":
        return _tiff16_bytes(image, info)
    kwargs: dict = {"quality": int(quality)} if fmt in ("JPEG", "WEBP") else {}
    if fmt != "BMP":
        if info.icc_profile:
            kwargs["icc_profile"] = info.icc_profile
        if info.exif:
            kwargs["exif"] = info.exif
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image), "RGB").save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def to_uint16(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


def _png16_bytes(image: np.ndarray, info: PhotoInfo) -> bytes:
    """A 16-bit RGB PNG (Pillow writes only 8-bit colour PNGs) with the ICC profile and EXIF
    added as iCCP and eXIf chunks right after the header, where the PNG standard puts them."""
    import cv2

    ok, enc = cv2.imencode(".png", np.ascontiguousarray(to_uint16(image)[:, :, ::-1]))
    if not ok:  # pragma: no cover - OpenCV failure
        raise RestoreAgentError("could not encode a 16-bit PNG")
    data = enc.tobytes()
    chunks = b""
    if info.icc_profile:
        chunks += _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(info.icc_profile))
    if info.exif:
        exif = info.exif[6:] if info.exif.startswith(b"Exif\0\0") else info.exif
        chunks += _png_chunk(b"eXIf", exif)
    end_of_header = 8 + 4 + 4 + 13 + 4  # signature, IHDR length, type, data, CRC
    return data[:end_of_header] + chunks + data[end_of_header:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import struct

    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# EXIF fields a 16-bit TIFF carries in its first IFD (the descriptive ones: the structural tags of
# the source, such as its strip offsets and sample format, describe the source file, not this one)
_TIFF_TEXT_TAGS = (269, 270, 271, 272, 306, 315, 316, 33432)  # DocumentName ... Copyright (305: software=)
# EXIF sub-IFDs (tag -> the private placeholder tifffile writes in its place, the tag just before it,
# so the IFD stays sorted when the placeholder is renamed): tifffile refuses to write these pointers
_TIFF_SUB_IFDS = {0x8769: 0x8768, 0x8825: 0x8824}  # ExifIFD (camera settings, dates), GPS IFD


def _tiff16_bytes(image: np.ndarray, info: PhotoInfo) -> bytes:
    """A 16-bit RGB TIFF (tifffile; Pillow writes only 8-bit colour TIFFs) with the ICC profile
    (tag 34675) and the EXIF: its descriptive first-IFD fields (make, model, date, orientation 1,
    resolution, ...) as tags of the image's IFD, and its EXIF and GPS sub-IFDs appended after the
    image and pointed to by tags 34665 and 34853, as a camera's TIFF holds them."""
    import struct

    import tifffile
    from PIL import TiffImagePlugin

    exif = Image.Exif()
    if info.exif:
        exif.load(info.exif)
    extratags, kwargs = [], {}
    for tag in _TIFF_TEXT_TAGS:
        value = exif.get(tag)
        if isinstance(value, str) and value.isascii() and not (tag == 270 and value.startswith('{"shape"')):
            extratags.append((tag, "s", 0, value, True))
    if exif:
        extratags.append((274, "H", 1, 1, True))  # the pixels were turned upright on loading
    try:
        if 282 in exif and 283 in exif:
            kwargs["resolution"] = (float(exif[282]), float(exif[283]))
            kwargs["resolutionunit"] = int(exif.get(296, 2))
    except (TypeError, ValueError, ZeroDivisionError):
        kwargs.pop("resolution", None)
    subs = {}
    for tag, placeholder in _TIFF_SUB_IFDS.items():
        try:
            fields = {k: v for k, v in exif.get_ifd(tag).items() if k != 0xA005}  # no interop pointer
        except Exception:  # noqa: BLE001 - a damaged sub-IFD is left out, not fatal
            fields = {}
        if fields:
            subs[tag] = fields
            extratags.append((placeholder, "I", 1, 0, True))
    buf = io.BytesIO()
    tifffile.imwrite(
        buf, to_uint16(image), photometric="rgb", compression="zlib", iccprofile=info.icc_profile,
        byteorder="<", metadata=None, software=exif.get(305) if isinstance(exif.get(305), str) else False,
        extratags=extratags, **kwargs,
    )
    data = bytearray(buf.getvalue())
    if subs:
        with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
            tags = tif.pages[0].tags
            where = {tag: (tags[ph].offset, tags[ph].valueoffset) for tag, ph in _TIFF_SUB_IFDS.items() if tag in subs}
        for tag, fields in subs.items():
            ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=b"II\x2a\x00\x00\x00\x00\x00")
            for k, v in fields.items():
                ifd[k] = v
            data += b"\0" * (len(data) % 2)  # IFDs start on a word boundary
            offset = len(data)
            try:
                data += ifd.tobytes(offset)
            except Exception:  # noqa: BLE001 - a field Pillow cannot write back: leave the sub-IFD out
                del data[offset:]
                continue
            entry, value = where[tag]
            struct.pack_into("<H", data, entry, tag)  # the placeholder becomes the real pointer
            struct.pack_into("<I", data, value, offset)
    return bytes(data)


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


# --- an image and its JSON record, written as one unit ------------------------------------------


def check_record_output(out, *inputs) -> Path:
    """The ``OUT.json`` record beside ``out`` can be written and is not an input (checked first)."""
    record = Path(f"{out}.json")
    for inp in inputs:
        if inp is not None and _same_file(record, inp):
            raise ImageError(record, "the record OUT.json would overwrite the input; choose another -o")
    if record.is_dir():
        raise RestoreAgentError(f"{record}: the record's path is an existing folder; choose another -o")
    return record


def save_image_with_record(
    image: np.ndarray, path, record: dict, quality: int = 95, info: PhotoInfo | None = None
) -> Path:
    """Write ``path`` and its record ``path.json`` so that they always come from the same run.

    Two files cannot be renamed into place in one step, so: (1) both are fully written to temporary
    files first, (2) the two renames happen under an exclusive lock on the folder, so that two runs
    writing the same output cannot interleave their renames, and (3) the record carries the SHA-256
    of the image bytes (``image_sha256``), so that a reader can tell a stale record left by a kill
    between the two renames (:func:`read_record` checks it). A folder renamed into place would
    change the layout users see (OUT and OUT.json side by side), hence this.
    """
    import hashlib
    import json

    path = check_output_path(path)
    data = encode_image(image, SAVE_FORMATS[path.suffix.lower()], quality, info)
    record = {**record, "image_sha256": hashlib.sha256(data).hexdigest()}
    record_path = Path(f"{path}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_image = _temp_copy(path, data)
    try:
        tmp_record = _temp_copy(record_path, (json.dumps(record, indent=2) + "\n").encode())
        try:
            with _folder_lock(path.parent):
                os.replace(tmp_record, record_path)  # record first: a kill here leaves a detectably stale pair
                os.replace(tmp_image, path)
        finally:
            Path(tmp_record).unlink(missing_ok=True)
    finally:
        Path(tmp_image).unlink(missing_ok=True)
    return path


def read_record(path) -> dict:
    """The record of an image written by :func:`save_image_with_record`, checked against the image."""
    import hashlib
    import json

    path = Path(path)
    record_path = Path(f"{path}.json")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as e:
        raise RestoreAgentError(f"{record_path}: cannot read the record ({e})") from None
    want = record.get("image_sha256")
    if want is not None and want != hashlib.sha256(path.read_bytes()).hexdigest():
        raise RestoreAgentError(f"{record_path}: the record is not the image's (written by another run)")
    return record


def _temp_copy(path: Path, data: bytes) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


class _folder_lock:
    """An exclusive advisory lock on a folder (flock on its descriptor; a no-op where there is none)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self.fd = os.open(self.folder, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
        return False
