"""Grow a trained planner's vocabulary to new tools (and a new task's words) without retraining it.

The default planner (:mod:`.build_default`) has a word-level tokenizer: every ``task:tool`` step is
one token, so a tool catalogued after the planner was built has no token and can never be planned.
:func:`extend_vocabulary` appends the missing words -- exactly those :func:`.build_default.vocabulary_words`
would make for the tools -- after the existing ones, so every old token keeps its id and the
trained weights stay valid, and grows the input embeddings and the output head to match. A new
row starts from the mean of the rows of its kind: a ``task:tool`` atom from the atoms of the same
task with the same separator ("", " ", ", "), falling back to those of any task, then to every
tool atom; a degradation name from the other degradation names; any other word from the mean of
all words. Old tokens' logits are unchanged; fine-tuning (train/train_planner.py, which extends a
starting planner by itself) then teaches the new rows.

Real pretrained VLMs (SmolVLM, Qwen2-VL, ...) have subword tokenizers (byte-level BPE,
sentencepiece) that spell any new name from pieces: for them this is a no-op. The test is the
tokenizer's own model: only a ``tokenizers`` WordLevel model is extended.

    restoreagent planner extend SRC -o DST [--tools JSON] [--force]
    python -m restoreagent.planners.vlm.extend SRC DST
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...errors import RestoreAgentError
from ...jobs.build import MergeConfig
from ...tasks import DEGRADATIONS, TASKS
from .build_default import META_VERSION, PLANNER_META, catalogue_tools, read_meta, vocabulary_words
from .planner import load_model_and_processor, processor_source, resolve_model

log = logging.getLogger(__name__)

# The planner meta's record of the extensions made to a folder (a list, oldest first).
EXTENSIONS = "vocabulary_extensions"


def tokenizer_of(processor_or_tokenizer):
    return getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)


def is_word_level(tokenizer) -> bool:
    """True for a word-level vocabulary (the default planner's), whose words must be added by name.

    Decided by the fast tokenizer's backend model: ``tokenizers.models.WordLevel``. BPE, Unigram and
    WordPiece vocabularies (every real pretrained VLM) spell new tool names from existing pieces.
    """
    from tokenizers import models

    backend = getattr(tokenizer_of(tokenizer), "backend_tokenizer", None)
    return backend is not None and isinstance(backend.model, models.WordLevel)


def merged_tools(*tool_sets: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """Task -> tool names of all the given sets, each name once, in first-seen order."""
    out: dict[str, list[str]] = {}
    for tools in tool_sets:
        for task, names in (tools or {}).items():
            have = out.setdefault(task, [])
            have += [n for n in names if n not in have]
    order = {t: i for i, t in enumerate(TASKS)}
    return {t: out[t] for t in sorted(out, key=lambda t: order.get(t, len(order)))}


def missing_words(tokenizer, tools: Mapping[str, Sequence[str]]) -> list[str]:
    """The words a word-level planner vocabulary lacks to read and write ``tools`` (in id order)."""
    tok = tokenizer_of(tokenizer)
    tools = {t: list(v) for t, v in tools.items()}
    if not is_word_level(tok) or not any(tools.values()):
        return []
    vocab = tok.get_vocab()
    return [w for w in vocabulary_words(tools, tok.backend_tokenizer.pre_tokenizer) if w not in vocab]


def _split(word: str) -> tuple[str, str]:
    """(separator, the rest) of a vocabulary word."""
    for sep in (", ", " "):
        if word.startswith(sep) and len(word) > len(sep):
            return sep, word[len(sep) :]
    return "", word


def _kind(word: str, tasks) -> tuple:
    sep, core = _split(word)
    task, colon, tool = core.partition(":")
    if colon and tool and task in tasks:
        return ("tool", sep, task)
    if core in DEGRADATIONS:
        return ("degradation", sep)
    return ("other",)


def _fallbacks(kind: tuple) -> list[tuple]:
    if kind[0] == "tool":
        return [kind, ("tool", kind[1]), ("tool",), ("all",)]
    if kind[0] == "degradation":
        return [kind, ("all",)]
    return [("all",)]


def _init_new_rows(weight, old_tokens: Sequence[str | None], new_words: Sequence[str], tasks) -> list[str]:
    """Set rows ``len(old_tokens):`` of ``weight`` (rows or a bias) to means of old rows of their kind.

    ``old_tokens[i]`` is None for special tokens (never averaged). Returns, per new word, the group it
    was initialised from (for the log).
    """
    import torch

    groups: dict[tuple, list[int]] = {}
    for i, w in enumerate(old_tokens):
        if w is None:
            continue
        k = _kind(w, tasks)
        keys = [k, ("all",)]
        if k[0] == "tool":
            keys += [("tool", k[1]), ("tool",)]
        for key in keys:
            groups.setdefault(key, []).append(i)
    n = len(old_tokens)
    used = []
    with torch.no_grad():
        for j, w in enumerate(new_words):
            key = next((g for g in _fallbacks(_kind(w, tasks)) if groups.get(g)), None)
            if key is None:  # no word at all to average: leave the framework's initialisation
                used.append("none")
                continue
            weight[n + j] = weight[groups[key]].mean(dim=0)
            used.append(":".join(p.strip() or repr(p) for p in key))
    return used


def extend_vocabulary(model, processor_or_tokenizer, tools: Mapping[str, Sequence[str]]) -> list[str]:
    """Add the words ``tools`` need to a word-level planner; returns them (empty: nothing to do).

    The tokenizer (a processor's, or the one given) is changed in place: the words are appended to
    its WordLevel model, so old ids are kept. ``model``'s input embeddings and output head (tied or
    not) grow by as many rows, initialised as the module docstring says, and its config's
    ``vocab_size`` follows. A no-op for subword tokenizers (see :func:`is_word_level`).
    """
    from tokenizers import models

    tok = tokenizer_of(processor_or_tokenizer)
    words = missing_words(tok, tools)
    if not words:
        return []
    if hasattr(model, "peft_config"):
        raise RestoreAgentError(
            "extend the planner's vocabulary before adding a LoRA adapter (or merge it first)"
        )
    backend = tok.backend_tokenizer
    spec = json.loads(backend.to_str())["model"]
    vocab = dict(spec["vocab"])
    old_n = len(tok)
    emb = model.get_input_embeddings()
    if len(vocab) != old_n or emb.weight.shape[0] != old_n:
        raise RestoreAgentError(
            f"cannot extend this planner: its tokenizer has {old_n} tokens ({len(vocab)} in its word list) "
            f"and its model {emb.weight.shape[0]} embedding rows; they must all be equal"
        )
    special = set(tok.all_special_ids)
    old_tokens = [None if i in special else backend.id_to_token(i) for i in range(old_n)]
    for j, w in enumerate(words):
        vocab[w] = old_n + j
    backend.model = models.WordLevel(vocab=vocab, unk_token=spec.get("unk_token") or tok.unk_token)
    if len(tok) != old_n + len(words) or tok.convert_tokens_to_ids(words[-1]) != old_n + len(words) - 1:
        raise RuntimeError("the extended tokenizer does not give the new words the ids after the old ones")

    tasks = set(TASKS) | set(tools)
    model.resize_token_embeddings(old_n + len(words), mean_resizing=False)
    emb = model.get_input_embeddings()
    used = _init_new_rows(emb.weight, old_tokens, words, tasks)
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != emb.weight.data_ptr():  # untied head
        _init_new_rows(head.weight, old_tokens, words, tasks)
        if getattr(head, "bias", None) is not None:
            _init_new_rows(head.bias, old_tokens, words, tasks)
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    text_config.vocab_size = old_n + len(words)
    if getattr(model.config, "vocab_size", None) is not None:
        model.config.vocab_size = old_n + len(words)
    for w, g in zip(words, used):
        log.debug("new token %r (id %d) initialised from the mean of %s", w, tok.convert_tokens_to_ids(w), g)
    return words


def extension_token_ids(meta: Mapping, tokenizer) -> list[int]:
    """Ids of every token added by the extensions a planner folder's meta records."""
    tok = tokenizer_of(tokenizer)
    vocab = tok.get_vocab()
    words = [w for ext in meta.get(EXTENSIONS, []) or [] for w in ext.get("words", [])]
    return sorted({vocab[w] for w in words if w in vocab})


def unnameable_steps(words: Sequence[str], tools: Mapping[str, Sequence[str]]) -> list[str]:
    """The ``task:tool`` steps whose own atom is among ``words`` (those the planner could not name)."""
    added = set(words)
    return [f"{t}:{x}" for t, xs in tools.items() for x in xs if f" {t}:{x}" in added]


def _check_destination(src_p: Path, dst_p: Path, what: str, overwrite: bool) -> None:
    """``dst`` may be neither ``src`` nor inside it; an existing non-empty ``dst`` needs ``overwrite``."""
    s, d = src_p.resolve(), dst_p.resolve()
    if d == s or s in d.parents:
        raise RestoreAgentError(f"{dst_p}: the {what} planner must go to another folder than {src_p} (and not inside it)")
    if dst_p.exists() and (not dst_p.is_dir() or any(dst_p.iterdir())) and not overwrite:
        raise RestoreAgentError(f"{dst_p} already exists; pick another folder or replace it (--force)")


def _write_folder(dst_p: Path, fill) -> None:
    """``fill(tmp)`` writes a folder next to ``dst``, which then replaces ``dst`` in one rename: an
    interrupted write never leaves a half-written planner at ``dst``."""
    tmp = dst_p.with_name(dst_p.name + ".writing")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        fill(tmp)
        if dst_p.exists():
            shutil.rmtree(dst_p) if dst_p.is_dir() else dst_p.unlink()
        tmp.rename(dst_p)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def extend_planner(src, dst, tools: Mapping[str, Sequence[str]] | None = None, overwrite: bool = False):
    """Write to ``dst`` a copy of the planner folder ``src`` whose vocabulary covers ``tools``.

    ``tools``: task -> names (default: every catalogued tool, installed or not). A folder trained
    with LoRA (base files + ``adapter/``) is written merged, as full weights. When nothing is missing
    (or the tokenizer is a subword one) ``dst`` is a plain copy. ``src`` is never modified; ``dst``
    may not be ``src`` nor inside it, and an existing non-empty ``dst`` is replaced only with
    ``overwrite``. The planner meta (``restoreagent_planner.json``) gets ``tools_at_build`` covering
    the new tools and a ``vocabulary_extensions`` record. Returns (dst, the added words).
    """
    from transformers import AutoTokenizer

    src_p, dst_p = Path(src).expanduser(), Path(dst).expanduser()
    if not (src_p / "config.json").is_file():
        raise RestoreAgentError(f"{src}: not a planner model folder (no config.json)")
    _check_destination(src_p, dst_p, "extended", overwrite)
    tools = merged_tools(catalogue_tools() if tools is None else tools)
    base, adapter = resolve_model(str(src_p))
    meta = (read_meta(adapter) if adapter else {}) or read_meta(src_p)
    tok = AutoTokenizer.from_pretrained(processor_source(base, adapter))
    words = missing_words(tok, tools)

    def fill(tmp: Path) -> None:
        if not words:
            shutil.copytree(src_p, tmp)
            return
        net, processor = load_model_and_processor(base, adapter, merge=True)
        old_n = len(tokenizer_of(processor))
        added = extend_vocabulary(net, processor, tools)
        if added != words:
            raise RuntimeError(f"extension added {added}, expected {words}")
        net.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        record = {
            "source": str(src),
            "vocab_size_before": old_n,
            "vocab_size_after": old_n + len(words),
            "tools": merged_tools(
                *({t: [x]} for t, x in (st.split(":", 1) for st in unnameable_steps(words, tools)))
            ),
            "words": words,
        }
        out = {"version": META_VERSION, **{k: v for k, v in meta.items() if k != "version"}}
        out["tools_at_build"] = merged_tools(out.get("tools_at_build"), tools)
        out[EXTENSIONS] = [*(out.get(EXTENSIONS) or []), record]
        (tmp / PLANNER_META).write_text(json.dumps(out, indent=2) + "\n")

    _write_folder(dst_p, fill)
    return dst_p, words


def merge_planner(src, dst, overwrite: bool = False) -> Path:
    """Write to ``dst`` the planner folder ``src`` (base files + LoRA ``adapter/``) as full weights.

    What ships as a default, or what a later fine-tune starts from, is a plain folder; the
    planner meta (view, tools, vocabulary extensions, training record) comes along.
    """
    src_p, dst_p = Path(src).expanduser(), Path(dst).expanduser()
    if not src_p.is_dir():
        raise RestoreAgentError(f"{src}: not a planner folder")
    base, adapter = resolve_model(str(src_p))
    if adapter is None:
        raise RestoreAgentError(f"{src}: has no LoRA adapter to merge (it is already a full planner)")
    _check_destination(src_p, dst_p, "merged", overwrite)
    meta = read_meta(adapter) or read_meta(src_p)

    def fill(tmp: Path) -> None:
        net, processor = load_model_and_processor(base, adapter, merge=True)
        net.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        out = {"version": META_VERSION, **{k: v for k, v in meta.items() if k != "version"}, "merged_from": str(src)}
        (tmp / PLANNER_META).write_text(json.dumps(out, indent=2) + "\n")

    _write_folder(dst_p, fill)
    return dst_p


# --------------------------------------------------------------------------------------------
# command line: `restoreagent planner extend` and `python -m restoreagent.planners.vlm.extend`
# --------------------------------------------------------------------------------------------
def _parse_tools(text: str | None):
    if text is None:
        return None
    p = Path(text)
    raw = p.read_text() if p.is_file() else text
    try:
        tools = json.loads(raw)
    except json.JSONDecodeError as e:
        raise RestoreAgentError(
            f"--tools: not JSON (task -> list of tool names) nor a JSON file: {e}"
        ) from None
    if not isinstance(tools, dict) or not all(isinstance(v, list) for v in tools.values()):
        raise RestoreAgentError(
            '--tools must map a task to a list of tool names, e.g. {"denoise": ["unet_denoise_mid"]}'
        )
    return tools


def _add_extend_arguments(p):
    p.add_argument("source", metavar="SRC", help="planner folder to extend (never modified)")
    p.add_argument(
        "--tools",
        help="JSON (or a JSON file) task -> tool names to cover; default: every catalogued tool "
        "(`restoreagent tools`), installed or not",
    )
    p.add_argument("--force", action="store_true", help="replace DST when it exists")


def cmd_extend(args) -> int:
    tools = _parse_tools(args.tools)
    dst, words = extend_planner(args.source, args.output, tools, overwrite=args.force)
    if not words:
        print(f"{args.source}: its vocabulary already names every tool (or spells any name); copied to {dst}")
        return 0
    steps = unnameable_steps(words, merged_tools(catalogue_tools() if tools is None else tools))
    print(f"wrote {dst}: {len(words)} new words; it can now name {', '.join(steps) or 'the new words'}")
    print(
        "  fine-tune it so it learns when to use them: python train/train_planner.py planner.build=null "
        f"planner.model={dst} data.source=disk data.path=..."
    )
    return 0


def add_planner_parser(sub) -> None:
    """``restoreagent planner extend SRC -o DST``."""
    p = sub.add_parser("planner", help="manage VLM planner folders")
    psub = p.add_subparsers(dest="planner_command", required=True)
    e = psub.add_parser(
        "extend",
        help="copy a planner folder, adding the tools it cannot name yet to its vocabulary (no retraining)",
    )
    _add_extend_arguments(e)
    e.add_argument("-o", "--output", required=True, metavar="DST", help="where to write the extended planner")
    e.set_defaults(func=cmd_extend)
    m = psub.add_parser("merge", help="write a LoRA-trained planner folder (base + adapter/) as full weights")
    m.add_argument("source", metavar="SRC", help="planner folder with an adapter/ (never modified)")
    m.add_argument("-o", "--output", required=True, metavar="DST", help="where to write the merged planner")
    m.add_argument("--force", action="store_true", help="replace DST when it exists")
    m.set_defaults(func=cmd_merge)


def run_merge(cfg: MergeConfig) -> dict:
    """The planner-merge job (= ``restoreagent planner merge``)."""
    return {"out": str(merge_planner(cfg.source, cfg.output, overwrite=cfg.force))}


def cmd_merge(args) -> int:
    dst = merge_planner(args.source, args.output, overwrite=args.force)
    print(f"wrote {dst}: {args.source} with its LoRA adapter merged into the weights")
    return 0


def main(argv=None) -> int:
    import sys

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _add_extend_arguments(ap)
    ap.add_argument("output", metavar="DST", help="where to write the extended planner")
    args = ap.parse_args(argv)
    try:
        return cmd_extend(args)
    except RestoreAgentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
