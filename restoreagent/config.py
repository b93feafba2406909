"""Typed job configurations: one dataclass per job is the only home of its defaults and help texts.

Everything else is derived from that dataclass:

- the command-line options of a ``restoreagent`` subcommand (:func:`add_arguments`, :func:`from_args`);
- the configuration of ``restoreagent job NAME``, of a script under ``train/`` and of a build stage
  (:func:`load`): the dataclass defaults, then YAML files that hold *overrides only*, then
  ``key=value`` overrides (OmegaConf dot-list syntax, e.g. ``train.max_steps=5``). A dataclass-typed
  field can also be set from a named file: ``planner=smolvlm_256m`` merges ``configs/planner/smolvlm_256m.yaml``.

A field declares itself with :func:`option`::

    @dataclass
    class BenchConfig:
        samples: int = option(50, "images x combinations measured")
        crop: int | None = option(128, "centre crop side (0: the whole image)", metavar="PX")

The jobs and their configs: :mod:`restoreagent.jobs` (``restoreagent job --list``); where the
defaults of job X are, and how to run it small: ``docs/architecture.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import RestoreAgentError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"  # the repository's configs/ (source checkouts)


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flags: Sequence[str] | None = None,
    positional: bool = False,
    metavar: str | None = None,
    choices: Sequence[str] | None = None,
    none_word: str | None = None,
    nargs: bool = False,
    cli: bool = True,
    factory: Callable[[], Any] | None = None,
):
    """A dataclass field with its help text and how it appears on the command line.

    ``flags``: the option strings (default ``--field-name``); ``positional``: an argument, not an
    option; ``none_word``: the word that means None (``auto``); ``nargs``: a sequence given as several
    words (default: one comma-separated word); ``cli=False``: not on the command line.
    """
    meta = {
        "help": help,
        "flags": tuple(flags) if flags else None,
        "positional": positional,
        "metavar": metavar,
        "choices": tuple(choices) if choices else None,
        "none_word": none_word,
        "nargs": nargs,
        "cli": cli,
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if isinstance(default, list | dict | set):
        raise TypeError("mutable default: use factory=")
    return dataclasses.field(default=default, metadata=meta)


def nested(cls: type, help: str = ""):
    """A field holding another config dataclass (its own defaults)."""
    return option(help=help, factory=cls, cli=False)


# ---- types ---------------------------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp) -> tuple[Any, bool]:
    """(the type without ``| None``, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), len(args) < len(typing.get_args(tp))
    return tp, False


def _convert(tp, value):
    """A plain value (from YAML, OmegaConf or JSON) as the annotated type: nested dataclasses built,
    lists made tuples where the field is a tuple."""
    tp, _ = _strip_optional(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build(tp, value)
    origin = typing.get_origin(tp)
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_convert(inner, v) for v in value)
    if origin is list and isinstance(value, list | tuple):
        inner = (typing.get_args(tp) or (Any,))[0]
        return [_convert(inner, v) for v in value]
    if origin is dict and isinstance(value, dict):
        inner = (typing.get_args(tp) or (Any, Any))[1]
        return {k: _convert(inner, v) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def build(cls: type, values: dict | Any):
    """``cls`` from a mapping of field values (unknown keys are an error naming the known ones)."""
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise RestoreAgentError(f"{cls.__name__}: expected a mapping of settings, got {values!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise RestoreAgentError(f"{cls.__name__}: unknown setting {unknown[0]!r}; settings: {', '.join(names)}")
    return cls(**{k: _convert(hints[k], v) for k, v in values.items()})


def to_dict(cfg) -> dict:
    """A config as plain JSON/YAML data (tuples as lists)."""

    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [plain(v) for v in x]
        return x

    return plain(dataclasses.asdict(cfg))


# ---- the command line ----------------------------------------------------------------------------


def _parse_word(field: dataclasses.Field, tp):
    meta = field.metadata
    base, _ = _strip_optional(tp)
    seq = typing.get_origin(base) in (tuple, list)
    inner = (typing.get_args(base) or (str,))[0] if seq else base
    inner = str if inner is Any or inner is Ellipsis else inner

    def parse(text: str):
        if meta.get("none_word") is not None and text == meta["none_word"]:
            return None
        if seq and not meta.get("nargs"):
            return tuple(inner(x.strip()) for x in text.split(",") if x.strip())
        return inner(text)

    return parse, seq


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one command-line option per field of ``cls`` (help texts and defaults from the dataclass)."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        tp = hints[f.name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        kw: dict[str, Any] = {"help": meta.get("help", "")}
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        if _strip_optional(tp)[0] is bool:  # --flag, or --flag / --no-flag when it is on by default
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(*(meta.get("flags") or [f"--{f.name.replace('_', '-')}"]), dest=f.name,
                                action=action, default=bool(default), **kw)
            continue
        parse, seq = _parse_word(f, tp)
        kw["type"] = parse
        if seq and meta.get("nargs"):
            kw.update(nargs="+", action="extend")
        if meta.get("positional"):
            parser.add_argument(f.name, **kw)
            continue
        shown = default
        if default is None and meta.get("none_word"):
            shown = meta["none_word"]
        elif isinstance(default, tuple):
            shown = ",".join(map(str, default))
        if not required and shown is not None and "default" not in kw["help"]:
            kw["help"] = f"{kw['help']} (default: {shown})".strip()
        # a word list (action extend) would extend its default: it starts empty and from_args fills the default in
        parser.add_argument(*(meta.get("flags") or [f"--{f.name.replace('_', '-')}"]), dest=f.name,
                            required=required, default=None if required or meta.get("nargs") else default, **kw)


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def from_args(cls: type, args: argparse.Namespace):
    """The config a parsed command line describes (fields off the command line keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values = {k: v for k, v in values.items() if v is not None or not _field(cls, k).metadata.get("nargs")}
    return build(cls, values)


# ---- YAML files and key=value overrides ----------------------------------------------------------


def _field_type(cls: type, dotted: str):
    """The annotated type at a dotted path of ``cls`` (None when the path is not a field)."""
    tp: Any = cls
    for part in dotted.split("."):
        tp = _strip_optional(tp)[0]
        if not (dataclasses.is_dataclass(tp) and isinstance(tp, type)):
            return None
        hints = _hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return _strip_optional(tp)[0]


def read_yaml(path) -> dict:
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RestoreAgentError(f"{p}: cannot read the config ({e})") from None
    if not isinstance(data, dict):
        raise RestoreAgentError(f"{p}: a config file is a mapping of settings")
    return data


def load(cls: type, files: Sequence[str | Path] = (), overrides: Sequence[str] = (), *, values: dict | None = None,
         config_dir: Path = CONFIGS):
    """The config of a job: ``cls`` defaults < each YAML file < ``values`` (a mapping) < each ``key=value`` override.

    ``group=name`` where ``group`` is a dataclass-typed field merges ``config_dir/group/name.yaml``
    into it (e.g. ``planner=smolvlm_256m``). A config class with a static ``layers(cfg)`` gets those
    mappings merged right after its defaults (settings that depend on another setting).
    """
    layers = getattr(cls, "layers", None)
    cfg = _load(cls, [], files, values, overrides, config_dir)
    if layers is not None:  # defaults that depend on a setting (e.g. the declaration of the tool to train)
        cfg = _load(cls, layers(cfg), files, values, overrides, config_dir)
    return cfg


def _writable(node):
    from omegaconf import DictConfig, ListConfig, OmegaConf

    OmegaConf.set_readonly(node, False)
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node)) if isinstance(node, ListConfig) else ()
    for key in keys:
        child = node._get_node(key)  # the node itself: reading the value would fail on a missing (???) one
        if isinstance(child, DictConfig | ListConfig):
            _writable(child)
    return node


def _load(cls: type, layers: Sequence[dict], files, values: dict | None, overrides, config_dir: Path):
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = _writable(OmegaConf.structured(cls))  # frozen dataclasses too: the result is built frozen again
        for layer in [*layers, *(read_yaml(f) for f in files), *([values] if values else [])]:
            merged = OmegaConf.merge(merged, layer)
        for o in overrides:
            key, sep, value = o.partition("=")
            if not sep:
                raise RestoreAgentError(f"override {o!r}: expected key=value")
            tp = _field_type(cls, key)
            if dataclasses.is_dataclass(tp) and value and "{" not in value:
                group = config_dir / key.replace(".", "/") / f"{value}.yaml"
                if not group.is_file():
                    there = sorted(p.stem for p in group.parent.glob("*.yaml"))
                    raise RestoreAgentError(f"{key}={value}: no {group}; choices: {', '.join(there) or 'none'}")
                update = read_yaml(group)
                for part in reversed(key.split(".")):
                    update = {part: update}
                merged = OmegaConf.merge(merged, update)
            else:
                merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([o]))
        values = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        raise RestoreAgentError(f"{cls.__name__}: {str(e).splitlines()[0]}") from None
    return build(cls, values)
