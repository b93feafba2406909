"""The model cache: download, copy in and verify the model list's weight files.

- **Cache folder**: ``$RESTOREAGENT_CACHE`` when set, else ``~/.cache/restoreagent/zoo``. One
  file per listed file name; a model is available exactly when its file is there (files only
  land there after their SHA-256 matched the model list, and the loader checks it again).
- **Downloads** stream to a temporary file inside the cache folder while hashing, then are
  renamed into place atomically; a checksum mismatch deletes the temporary file and is a
  one-line error. ``http(s)://`` and ``file://`` URLs are supported.
- **Offline mode** (``RESTOREAGENT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``): model list's URLs are never
  fetched; the error names the missing file and where it goes. A file fetched elsewhere is
  copied in with ``restoreagent zoo download NAME --from FILE`` (checked the same way).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import RestoreAgentError

CACHE_ENV = "RESTOREAGENT_CACHE"
OFFLINE_ENVS = ("RESTOREAGENT_OFFLINE", "HF_HUB_OFFLINE")
DEFAULT_CACHE = Path("~/.cache/restoreagent/zoo")
CHUNK = 1 << 20
USER_AGENT = "restoreagent-zoo"


class ZooError(RestoreAgentError):
    """A model cannot be fetched, copied in, verified or loaded; the message says what to do."""


class ChecksumError(ZooError):
    """A file's SHA-256 is not the model list's."""


def cache_dir() -> Path:
    """Where model files live (``$RESTOREAGENT_CACHE`` or ``~/.cache/restoreagent/zoo``)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def offline() -> bool:
    """True when ``RESTOREAGENT_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_ENVS)


def cached_path(model) -> Path:
    """The cache location of a listed model's file (it may not exist)."""
    return cache_dir() / model.file_name


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_cached(model) -> bool:
    return cached_path(model).is_file()


# ------------------------------------------------------------------ fetching


def _open_source(source: str, *, allow_network: bool):
    """(stream, total bytes or None, description) for a local path or a URL."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("", "file"):
        path = Path(urllib.request.url2pathname(parsed.path)) if parsed.scheme == "file" else Path(source)
        path = path.expanduser()
        if not path.is_file():
            raise ZooError(f"{source}: no such file")
        return open(path, "rb"), path.stat().st_size, str(path)
    if parsed.scheme not in ("http", "https"):
        raise ZooError(
            f"{source}: unsupported URL scheme {parsed.scheme!r} (use https://, file:// or a path)"
        )
    if not allow_network:
        raise ZooError(f"offline mode: not fetching {source}")
    request = urllib.request.Request(source, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - scheme checked above
    except urllib.error.HTTPError as e:
        raise ZooError(f"download failed: HTTP {e.code} {e.reason} for {source}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ZooError(f"download failed: {reason} ({source})") from None
    length = response.headers.get("Content-Length")
    return response, int(length) if length and length.isdigit() else None, source


def _progress(total, desc, enabled):
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        leave=False,
        disable=None if enabled else True,
    )


def fetch_verified(model, source: str, *, allow_network: bool, progress: bool) -> Path:
    """Stream ``source`` into the cache while hashing; keep it only if the SHA-256 matches."""
    target = cached_path(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    stream, total, what = _open_source(source, allow_network=allow_network)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    h = hashlib.sha256()
    written = 0
    try:
        with (
            stream,
            os.fdopen(fd, "wb") as out,
            _progress(total or model.size_bytes, model.name, progress) as bar,
        ):
            while chunk := stream.read(CHUNK):
                written += len(chunk)
                if model.size_bytes and written > model.size_bytes:
                    raise ChecksumError(
                        f"{model.name}: {what} is larger than the model list's {model.size_bytes} bytes; "
                        "not the published file (nothing was kept)"
                    )
                h.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
        digest = h.hexdigest()
        if digest != model.sha256:
            raise ChecksumError(
                f"{model.name}: checksum mismatch for {what}: expected sha256 {model.sha256}, got {digest} "
                "(nothing was kept)"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except (OSError, http.client.HTTPException) as e:
        raise ZooError(f"{model.name}: reading {what} failed: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
