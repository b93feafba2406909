"""The list of published models (``restoreagent/zoo/models.yaml``) and its tool specs.

Each entry pins one weight file by URL and SHA-256 and says which task it serves and how it is
loaded. Extra model lists (your own pinned models, or test fixtures) are YAML files of the same
form listed in ``$RESTOREAGENT_ZOO_MODELS`` (separated by ``os.pathsep``); they may also use
``file://`` and ``http://`` URLs.

Every entry becomes a registry tool of kind ``hub`` (:func:`hub_tool_specs`), listed by
``restoreagent tools`` whether or not its file is downloaded, and available to the search and
the planners exactly when its file is in the cache (:mod:`.hub`).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

from ..catalog import load_yaml
from ..catalog.spec import ToolSpec
from ..errors import RestoreAgentError, by_name
from ..tasks import TASKS
from .hub import OFFLINE_ENVS, ZooError, cached_path, fetch_verified, offline, sha256_file

MODELS_ENV = "RESTOREAGENT_ZOO_MODELS"
OLD_MODELS_ENV = "RESTOREAGENT_ZOO_MODELS"  # its former name, still read
BUILDER = "restoreagent.zoo.loader:build_hub_tool"
# loader name -> python modules it needs (besides those an entry lists in `requires`)
LOADERS: dict[str, tuple[str, ...]] = {"spandrel": ("spandrel",), "dehazeformer_mct": ()}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelListError(RestoreAgentError, ValueError):
    """A model list file is malformed (unknown field, bad digest, duplicate name...)."""


@dataclass(frozen=True)
class ZooModel:
    """One published model: where its file is, how to check it, what it does and how to load it."""

    name: str  # tool name
    task: str
    title: str  # one line for people
    architecture: str  # spandrel architecture id (or the project's own loader's)
    loader: str  # key of LOADERS
    url: str  # the release asset
    sha256: str
    sha256_source: str  # where the digest was published
    licence: str
    source: str  # project / paper page
    input: str  # what the model expects
    scale: int = 1  # >1: super-resolution by this factor (used as a same-size tool)
    size_bytes: int | None = None
    filename: str | None = None  # cache file name (default: the URL's last path segment)
    paper: str | None = None
    mirror_of: str | None = None  # the authors' own location when `url` is a byte-identical mirror
    params: dict = field(default_factory=dict)  # loader options (tile, noise_level, size, ...)
    requires: tuple[str, ...] = ()  # extra python modules
    notes: str | None = None

    @property
    def file_name(self) -> str:
        return self.filename or Path(urllib.parse.urlparse(self.url).path).name

    def to_dict(self) -> dict:
        d = asdict(self)
        d["requires"] = list(self.requires)
        d["file_name"] = self.file_name
        return d


_FIELDS = {f.name for f in fields(ZooModel)}
_REQUIRED = (
    "name",
    "task",
    "title",
    "architecture",
    "loader",
    "url",
    "sha256",
    "sha256_source",
    "licence",
    "source",
    "input",
)


def _entry(raw: dict, origin: str, shipped: bool) -> ZooModel:
    where = f"{origin}: model {raw.get('name', '?')!r}"
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ModelListError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = sorted(k for k in _REQUIRED if not raw.get(k))
    if missing:
        raise ModelListError(f"{where}: missing {', '.join(missing)}")
    raw = dict(raw)
    raw["requires"] = tuple(raw.get("requires") or ())
    raw["params"] = dict(raw.get("params") or {})
    m = ZooModel(**raw)
    if not _NAME.match(m.name):
        raise ModelListError(f"{where}: names are lowercase letters, digits and '_'")
    if m.task not in TASKS:
        raise ModelListError(f"{where}: unknown task {m.task!r}; tasks: {', '.join(TASKS)}")
    if m.loader not in LOADERS:
        raise ModelListError(f"{where}: unknown loader {m.loader!r}; loaders: {', '.join(LOADERS)}")
    if not _SHA256.match(m.sha256):
        raise ModelListError(f"{where}: sha256 must be 64 lowercase hex digits")
    scheme = urllib.parse.urlparse(m.url).scheme
    if scheme not in (("https",) if shipped else ("https", "http", "file")):
        raise ModelListError(f"{where}: url must be https://" + ("" if shipped else ", http:// or file://"))
    if not isinstance(m.scale, int) or m.scale < 1:
        raise ModelListError(f"{where}: scale must be a positive integer")
    if not m.file_name or "/" in m.file_name or m.file_name.startswith("."):
        raise ModelListError(f"{where}: bad file name {m.file_name!r}")
    return m


def _read(text: str, origin: str, shipped: bool) -> list[ZooModel]:
    data = load_yaml(text) or []
    if not isinstance(data, list):
        raise ModelListError(f"{origin}: a model list is a YAML list of models")
    return [_entry(raw, origin, shipped) for raw in data]


def extra_model_lists() -> list[Path]:
    value = os.environ.get(MODELS_ENV, os.environ.get(OLD_MODELS_ENV, ""))
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def load_models() -> tuple[ZooModel, ...]:
    """The shipped model list plus those in ``$RESTOREAGENT_ZOO_MODELS``, validated."""
    models = _read(
        resources.files(__package__).joinpath("models.yaml").read_text(),
        "restoreagent/zoo/models.yaml",
        True,
    )
    for path in extra_model_lists():
        if not path.is_file():
            raise ModelListError(f"{MODELS_ENV}: {path} is not a file")
        models += _read(path.read_text(), str(path), False)
    names, files = set(), {}
    for m in models:
        if m.name in names:
            raise ModelListError(f"model zoo: duplicate name {m.name!r}")
        names.add(m.name)
        if files.setdefault(m.file_name, m.sha256) != m.sha256:
            raise ModelListError(f"model zoo: file {m.file_name!r} is listed with two different sha256")
    return tuple(models)


def get_model(name: str) -> ZooModel:
    return by_name(load_models(), name, "model", "models")


def hub_tool_specs() -> list:
    """One registry ToolSpec per listed model (weights: the absolute cache path)."""
    specs = []
    for m in load_models():
        params = {
            "loader": m.loader,
            "architecture": m.architecture,
            "scale": m.scale,
            "sha256": m.sha256,
            **m.params,
        }
        specs.append(
            ToolSpec(
                name=m.name,
                task=m.task,
                kind="hub",
                description=f"{m.title} [{m.architecture}, {m.licence}]",
                builder=BUILDER,
                params=params,
                requires=tuple(dict.fromkeys(LOADERS[m.loader] + m.requires)),
                weights=str(cached_path(m)),
            )
        )
    return specs


@dataclass(frozen=True)
class Fetched:
    model: object
    path: Path
    action: str  # "downloaded", "copied", "cached"


def download(name: str, source: str | None = None, *, progress: bool = True) -> Fetched:
    """Put listed model ``name``'s file in the cache, checked against its SHA-256.

    ``source`` (a path or URL) replaces the model list's URL, e.g. a file fetched on another
    machine; it is checked the same way. A file already in the cache is re-hashed and kept when
    it matches (replaced when it does not).
    """
    model = get_model(name)
    target = cached_path(model)
    if source is None and target.is_file() and sha256_file(target) == model.sha256:
        return Fetched(model, target, "cached")
    if source is None:
        if offline():
            raise ZooError(
                f"{model.name}: offline mode ({'/'.join(OFFLINE_ENVS)}) and {model.file_name} is not in the cache; "
                f"fetch {model.url} elsewhere, then `restoreagent zoo download {model.name} --from FILE` "
                f"(or copy it to {target})"
            )
        return Fetched(
            model, fetch_verified(model, model.url, allow_network=True, progress=progress), "downloaded"
        )
    path = fetch_verified(model, source, allow_network=not offline(), progress=progress)
    return Fetched(model, path, "copied")


@dataclass(frozen=True)
class Verified:
    model: object
    path: Path
    status: str  # "ok", "missing", "mismatch"
    digest: str | None = None


def verify(names=None) -> list[Verified]:
    """Re-hash the cached files of the named models (default: every listed model)."""
    models = [get_model(n) for n in names] if names else list(load_models())
    hashes: dict[Path, str] = {}
    out = []
    for m in models:
        path = cached_path(m)
        if not path.is_file():
            out.append(Verified(m, path, "missing"))
            continue
        if path not in hashes:
            hashes[path] = sha256_file(path)
        digest = hashes[path]
        out.append(Verified(m, path, "ok" if digest == m.sha256 else "mismatch", digest))
    return out


def markdown_table(models=None) -> str:
    """The model list as a Markdown table (docs/model_zoo.md is generated from it)."""
    rows = [
        "| name | task | architecture | scale | size | licence | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models if models is not None else load_models():
        size = f"{m.size_bytes / 1e6:.1f} MB" if m.size_bytes else "?"
        rows.append(
            f"| `{m.name}` | {m.task} | {m.architecture} | x{m.scale} | {size} | {m.licence} | [{_host(m.source)}]({m.source}) |"
        )
    return "\n".join(rows)


def _host(url: str) -> str:
    p = urllib.parse.urlparse(url)
    return (p.netloc + p.path).removeprefix("github.com/").removeprefix("huggingface.co/").rstrip("/")
