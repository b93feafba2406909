"""A tool's catalogue entry (:class:`ToolSpec`): what it is, how it is built, what it needs.

Data only: the registry (:mod:`restoreagent.tools.registry`) reads the catalogues into specs and
builds tools from them; the model zoo (:mod:`restoreagent.zoo`) contributes specs of its own.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

KINDS = ("classical", "learned", "hub")


@dataclass(frozen=True)
class ToolSpec:
    """One catalogue entry: everything needed to describe and build a tool.

    Exactly one of ``function`` (``"module:fn"``, called as ``fn(image, **params)``) or
    ``builder`` (``"module:fn"``, called as ``fn(**params)`` and returning ``image -> image``;
    used by learned tools that load weights once) is set.
    """

    name: str
    task: str
    kind: str
    description: str
    function: str | None = None
    builder: str | None = None
    params: dict = field(default_factory=dict)
    cost_s: float | None = None  # typical seconds on a 512x512 image on a 2-core CPU (docs/benchmarks.md)
    device: str = "cpu"
    requires: tuple[str, ...] = ()  # importable modules the tool needs
    weights: str | None = None  # weight file relative to the package (learned tools)
    # False: another tool of the task beats it at every measured severity (eval/tool_quality.py), so
    # the search, the labeler and the planners leave it out (RESTOREAGENT_ALL_TOOLS=1 brings it back);
    # it stays available to explicit plans (`run --plan`).
    candidate: bool = True

    @property
    def missing(self) -> list[str]:
        """Why the tool cannot be built here (empty when it can)."""
        why = [f"python module {m!r}" for m in self.requires if importlib.util.find_spec(m) is None]
        if self.weights and not weights_path(self.weights).exists():
            hint = f" (restoreagent zoo download {self.name})" if self.kind == "hub" else ""
            why.append(f"weight file {self.weights}{hint}")
        elif self.weights and self.params.get("sha256") and not verified_file(
            weights_path(self.weights), self.params["sha256"]
        ):  # a damaged or replaced download is not "available" (it would abort a label run)
            why.append(f"weight file {self.weights} does not match its sha256 (restoreagent zoo download {self.name})")
        return why

    @property
    def available(self) -> bool:
        return not self.missing

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "task": self.task,
            "kind": self.kind,
            "description": self.description,
            "cost_s": self.cost_s,
            "device": self.device,
            "available": self.available,
            "candidate": self.candidate,
            "missing": self.missing,
        }


def weights_path(rel: str) -> Path:
    """A catalogue ``weights`` entry as a path (relative ones: inside the installed package)."""
    p = Path(rel)
    return p if p.is_absolute() else Path(str(resources.files("restoreagent"))) / rel


def verified_file(path, sha256: str) -> bool:
    """Whether the file at ``path`` has the given SHA-256.

    Hashing a model file takes seconds, and ``tools`` asks about every tool, so a good result is
    remembered in ``FILE.verified`` (digest, size, modification time) and the file is re-hashed
    only when it changed since.
    """
    import hashlib
    import os

    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return False
    key = f"{sha256} {st.st_size} {st.st_mtime_ns}"
    stamp = path.with_name(path.name + ".verified")
    try:
        if stamp.read_text().strip() == key:
            return True
    except OSError:
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != sha256:
        return False
    try:  # best effort: a read-only cache just means hashing again next time
        tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
        tmp.write_text(key + "\n")
        os.replace(tmp, stamp)
    except OSError:
        pass
    return True
