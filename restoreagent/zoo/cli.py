"""``restoreagent zoo list | download | verify | path`` (registered by restoreagent.cli)."""

from __future__ import annotations

import json
import sys

from ..errors import RestoreAgentError


def add_zoo_parser(sub) -> None:
    p = sub.add_parser(
        "zoo",
        help="published restoration models: list, download (checked), verify",
        description="Published models pinned by URL and SHA-256 (restoreagent/zoo/models.yaml). A downloaded "
        "model is a tool like any other (`restoreagent tools`). Cache: $RESTOREAGENT_CACHE or "
        "~/.cache/restoreagent/zoo; offline: RESTOREAGENT_OFFLINE=1 or HF_HUB_OFFLINE=1.",
    )
    zsub = p.add_subparsers(dest="zoo_command", required=True)

    q = zsub.add_parser("list", help="the model list and what is in the cache")
    q.add_argument("--task", help="only the models of this task")
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable list")
    fmt.add_argument("--markdown", action="store_true", help="the Markdown table of docs/model_zoo.md")
    q.set_defaults(func=cmd_list)

    q = zsub.add_parser("download", help="fetch models into the cache, checking their SHA-256")
    q.add_argument("names", nargs="+", metavar="NAME")
    q.add_argument(
        "--from",
        dest="source",
        metavar="FILE_OR_URL",
        help="use this file (or URL) instead of the model list's URL, e.g. one fetched on another machine",
    )
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_download)

    q = zsub.add_parser("verify", help="re-hash cached files against the model list (default: all models)")
    q.add_argument("names", nargs="*", metavar="NAME")
    q.set_defaults(func=cmd_verify)

    q = zsub.add_parser("path", help="the cache folder, or where a model's file goes")
    q.add_argument("name", nargs="?", metavar="NAME")
    q.set_defaults(func=cmd_path)


def _status(model) -> str:
    import importlib.util

    from .hub import is_cached
    from .models import LOADERS

    missing = [m for m in LOADERS[model.loader] + model.requires if importlib.util.find_spec(m) is None]
    from ..catalog.spec import verified_file
    from .hub import cached_path

    if not is_cached(model):
        state = "not downloaded"
    elif verified_file(cached_path(model), model.sha256):
        state = "cached"
    else:
        state = "damaged: sha256 mismatch (restoreagent zoo download again)"
    return state + (f"; needs {', '.join(missing)}" if missing else "")


def cmd_list(args) -> int:
    from ..tasks import TASKS
    from .models import load_models, markdown_table

    if args.task and args.task not in TASKS:
        raise RestoreAgentError(f"unknown task {args.task!r}; tasks: {', '.join(TASKS)}")
    models = [m for m in load_models() if not args.task or m.task == args.task]
    if args.markdown:
        print(markdown_table(models))
        return 0
    if args.json:
        print(json.dumps([{**m.to_dict(), "status": _status(m)} for m in models], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    from .hub import cache_dir

    table = Table(title=f"{len(models)} published models (cache: {cache_dir()})")
    for col in ("task", "name", "architecture", "scale", "MB", "licence", "status"):
        table.add_column(col)
    for m in models:
        mb = f"{m.size_bytes / 1e6:.0f}" if m.size_bytes else "?"
        table.add_row(m.task, m.name, m.architecture, f"x{m.scale}", mb, m.licence, _status(m))
    Console().print(table)
    return 0


def cmd_download(args) -> int:
    from .models import download, get_model

    if args.source and len(args.names) != 1:
        raise RestoreAgentError("--from takes exactly one NAME")
    for name in args.names:
        get_model(name)  # unknown names fail before anything is fetched
    for name in args.names:
        got = download(name, args.source, progress=not args.no_progress)
        mb = got.path.stat().st_size / 1e6
        what = {"cached": "already in the cache", "downloaded": "downloaded", "copied": "copied in"}[
            got.action
        ]
        print(f"{name}: {what}, sha256 ok ({mb:.1f} MB) -> {got.path}")
    return 0


def cmd_verify(args) -> int:
    from .models import verify

    results = verify(args.names or None)
    bad = 0
    for r in results:
        if r.status == "ok":
            print(f"{r.model.name}: ok ({r.path})")
        elif r.status == "missing":
            print(f"{r.model.name}: not downloaded")
            bad += bool(args.names)
        else:
            print(
                f"{r.model.name}: CHECKSUM MISMATCH: {r.path} has sha256 {r.digest}, the model list says {r.model.sha256}; "
                f"delete it or run `restoreagent zoo download {r.model.name}`"
            )
            bad += 1
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "missing", "mismatch")}
    print(
        f"{counts['ok']} verified, {counts['missing']} not downloaded, {counts['mismatch']} mismatched",
        file=sys.stderr,
    )
    if bad:
        raise RestoreAgentError(f"{bad} model(s) failed verification")
    return 0


def cmd_path(args) -> int:
    from .hub import cache_dir, cached_path
    from .models import get_model

    print(cached_path(get_model(args.name)) if args.name else cache_dir())
    return 0
