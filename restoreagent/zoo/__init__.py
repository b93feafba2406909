"""Published restoration models ("the zoo"): a pinned model list, a checked download cache, safe loading.

- :mod:`.models`   ``models.yaml``: name, task, architecture, URL, SHA-256 (and where it was
  published), licence, expected input; each entry is a registry tool of kind ``hub``
- :mod:`.hub`      the cache (``$RESTOREAGENT_CACHE`` or ``~/.cache/restoreagent/zoo``), downloads
  with checksum verification, offline mode (``RESTOREAGENT_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``)
- :mod:`.loader`   weights-only loading, spandrel architectures, same-size super-resolution
- :mod:`.cli`      ``restoreagent zoo list | download | verify | path``

A listed model becomes an available tool (``restoreagent tools``, the search, the planners)
as soon as its verified file is in the cache.
"""

from .hub import ChecksumError, ZooError, cache_dir, offline
from .models import ZooModel, download, get_model, hub_tool_specs, load_models, verify

__all__ = [
    "ChecksumError",
    "ZooError",
    "ZooModel",
    "cache_dir",
    "download",
    "get_model",
    "hub_tool_specs",
    "load_models",
    "offline",
    "verify",
]
