"""Growing a trained planner's vocabulary to new tools (restoreagent.planners.vlm.extend).

Tiny random planners built offline in temporary folders; a toy tool registered at run time plays
the tool catalogued after the planner was built.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from restoreagent.plan import Step  # noqa: E402
from restoreagent.planners.base import PlanRequest  # noqa: E402
from restoreagent.planners.vlm.build_default import PLANNER_META, read_meta  # noqa: E402
from restoreagent.planners.vlm.extend import (  # noqa: E402
    EXTENSIONS,
    extend_planner,
    extend_vocabulary,
    extension_token_ids,
    is_word_level,
    missing_words,
)
from restoreagent.tools.registry import ToolSpec, register  # noqa: E402

# The toolbox the base planner was built with (made up, as in test_vlm_planner).
TOOLS = {
    "denoise": ["nlm_mid", "dncnn_s"],
    "dejpeg": ["deblock_mild", "deblock_strong"],
    "dehaze": ["dcp"],
}
SIZES = {"view_size": 64, "vision_hidden": 32, "text_hidden": 32, "vision_mlp": 64, "text_mlp": 64}
TOY = "toy_extend_gain"  # a denoise tool registered after the planner was built
NEW_TOOLS = {
    **TOOLS,
    "denoise": [*TOOLS["denoise"], TOY],
    "derain": ["rain_new"],
}  # derain: a task it never saw
TARGET = f"saw: noise | plan: denoise:{TOY}"


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def toy_tool():
    from restoreagent.tools import registry

    register(
        ToolSpec(
            name=TOY,
            task="denoise",
            kind="classical",
            description="t",
            function="toytools:gain",
            params={"g": 1.0},
        )
    )
    yield TOY
    registry._EXTRA_SPECS.pop(TOY, None)
    registry._EXTRA_SPECS.pop(TOY + "_2", None)
    registry.get_tool.cache_clear()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    from restoreagent.planners.vlm.build_default import build_default

    return build_default(tmp_path_factory.mktemp("base"), tools=TOOLS, sizes=SIZES, layout="mosaic")


@pytest.fixture(scope="module")
def examples():
    """Six examples whose answer names the toy tool (the targets of a fine-tuning set)."""
    from restoreagent.planners.vlm.train_data import skimage_images, stage1_dataset

    ds = stage1_dataset(skimage_images()[:3], 6, seed=2, crop=64, tools=TOOLS)
    return ds.map(lambda ex: {"target": TARGET})


def _load(folder, **kw):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(folder, **kw).eval(), AutoProcessor.from_pretrained(
        folder
    )


def _batch(processor, exs):
    from restoreagent.planners.vlm.collator import PlannerCollator
    from restoreagent.planners.vlm.view import ViewConfig

    return PlannerCollator(processor, ViewConfig("mosaic", 64))(exs)


def _digest(folder) -> dict:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# --- the tokenizer and the new rows --------------------------------------------------------------
def test_extension_appends_words_keeps_old_ids_and_starts_rows_from_their_group(base_dir):
    net, processor = _load(base_dir)
    tok = processor.tokenizer
    old_vocab, old_n = tok.get_vocab(), len(tok)
    old_emb = net.get_input_embeddings().weight.detach().clone()

    words = extend_vocabulary(net, processor, NEW_TOOLS)
    assert {f"{sep}denoise:{TOY}" for sep in ("", " ", ", ")} <= set(words)
    assert {f"{sep}derain:rain_new" for sep in ("", " ", ", ")} <= set(words)
    assert not any("nlm_mid" in w for w in words)  # only what is missing
    vocab = tok.get_vocab()
    assert all(vocab[w] == i for w, i in old_vocab.items())  # every old token keeps its id
    assert [vocab[w] for w in words] == list(range(old_n, old_n + len(words)))  # appended
    ids = tok(f"saw: noise | plan: denoise:{TOY}, derain:rain_new", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == 5
    assert tok.decode(ids) == f"saw: noise | plan: denoise:{TOY}, derain:rain_new"

    emb = net.get_input_embeddings().weight.detach()
    assert emb.shape[0] == old_n + len(words) == net.config.text_config.vocab_size
    assert net.get_output_embeddings().weight.data_ptr() == emb.data_ptr()  # still tied
    assert torch.equal(emb[:old_n], old_emb)
    same_task = [vocab[f" denoise:{x}"] for x in TOOLS["denoise"]]
    assert torch.allclose(emb[vocab[f" denoise:{TOY}"]], old_emb[same_task].mean(0))
    any_task = [vocab[f", {t}:{x}"] for t, xs in TOOLS.items() for x in xs]  # derain had no atoms
    assert torch.allclose(emb[vocab[", derain:rain_new"]], old_emb[any_task].mean(0))
    assert extend_vocabulary(net, processor, NEW_TOOLS) == []  # nothing left to add


def test_an_untied_head_gets_its_own_group_means(base_dir):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(base_dir)
    cfg.tie_word_embeddings = cfg.text_config.tie_word_embeddings = False
    net, processor = _load(base_dir, config=cfg)
    head = net.get_output_embeddings().weight
    assert head.data_ptr() != net.get_input_embeddings().weight.data_ptr()
    old_head, old_n = head.detach().clone(), len(processor.tokenizer)
    extend_vocabulary(net, processor, NEW_TOOLS)
    vocab = processor.tokenizer.get_vocab()
    head = net.get_output_embeddings().weight.detach()
    assert head.shape[0] == net.get_input_embeddings().weight.shape[0] > old_n
    assert torch.equal(head[:old_n], old_head)
    rows = [vocab[f", denoise:{x}"] for x in TOOLS["denoise"]]
    assert torch.allclose(head[vocab[f", denoise:{TOY}"]], old_head[rows].mean(0))


def test_old_words_get_the_same_logits_after_extension(base_dir, examples):
    net, processor = _load(base_dir)
    old_n = len(processor.tokenizer)
    old_example = {**examples[0], "target": "saw: noise | plan: denoise:nlm_mid"}  # old words only
    batch = _batch(processor, [old_example])
    with torch.no_grad():
        ref = net(**batch).logits
    extend_vocabulary(net, processor, NEW_TOOLS)
    batch2 = _batch(processor, [old_example])
    assert torch.equal(batch2["input_ids"], batch["input_ids"])
    with torch.no_grad():
        got = net(**batch2).logits
    assert got.shape[-1] > old_n
    assert torch.allclose(got[..., :old_n], ref, atol=1e-6)


def test_subword_tokenizers_are_left_alone(tmp_path):
    from restoreagent.planners.vlm.tiny import build_tiny_idefics3

    net, processor = _load(build_tiny_idefics3(tmp_path / "idefics3"))
    n = net.get_input_embeddings().weight.shape[0]
    assert not is_word_level(processor.tokenizer) and missing_words(processor, NEW_TOOLS) == []
    assert extend_vocabulary(net, processor, NEW_TOOLS) == []
    assert net.get_input_embeddings().weight.shape[0] == n


# --- the folder, the grammar and the command ----------------------------------------------------
def test_extended_folder_lets_the_grammar_name_a_registered_tool(base_dir, toy_tool, tmp_path, caplog):
    from restoreagent.planners.vlm import VLMPlanner

    installed = {**TOOLS, "denoise": ["nlm_mid", toy_tool]}
    old = VLMPlanner(str(base_dir), tools=installed)
    with caplog.at_level("WARNING"):
        assert old.constraint(old.grammar(None)).unnameable_tools() == [f"denoise:{toy_tool}"]
    assert "restoreagent planner extend" in caplog.text

    dst, words = extend_planner(base_dir, tmp_path / "ext")  # default: the catalogue, toy tool included
    assert f" denoise:{toy_tool}" in words
    meta = read_meta(dst)
    assert toy_tool in meta["tools_at_build"]["denoise"] and "nlm_mid" in meta["tools_at_build"]["denoise"]
    ext = meta[EXTENSIONS][-1]
    assert ext["words"] == words and toy_tool in ext["tools"]["denoise"]
    assert (
        ext["vocab_size_after"] == json.loads((dst / "config.json").read_text())["text_config"]["vocab_size"]
    )
    assert meta["view"] == read_meta(base_dir)["view"]

    new = VLMPlanner(str(dst), tools=installed)
    assert len(new.tokenizer) == ext["vocab_size_after"]
    grammar = new.grammar(None)
    con = new.constraint(grammar)
    assert con.unnameable_tools() == []
    state = grammar.advance(grammar.start(), "saw: noise | plan:")
    allowed = set(con.allowed(state))
    assert new.tokenizer.convert_tokens_to_ids(f" denoise:{toy_tool}") in allowed
    assert new.tokenizer.convert_tokens_to_ids(" denoise:nlm_mid") in allowed
    # random weights (varied answers): the extended planner plans the new tool, the old one never can
    named = {"extended": 0, "old": 0}
    for which, folder in (("extended", dst), ("old", base_dir)):
        planner = VLMPlanner(str(folder), tools={"denoise": [toy_tool], "dehaze": ["dcp"]})
        for seed in range(6):
            torch.manual_seed(seed)
            with torch.no_grad():
                for p in planner.net.parameters():
                    if p.dim() > 1:
                        p.normal_(0.0, 1.0)
            image = np.random.default_rng(seed).random((40, 40, 3), dtype=np.float32)
            named[which] += Step("denoise", toy_tool) in planner.plan(PlanRequest(image=image)).plan
    assert named["extended"] > 0 and named["old"] == 0


def test_cli_writes_an_extended_copy_and_refuses_src_as_dst(base_dir, tmp_path, capsys):
    from restoreagent.cli import main
    from restoreagent.planners.vlm.extend import main as module_main

    before = _digest(base_dir)
    tools = json.dumps({"denoise": ["nlm_mid", "cli_new"]})
    dst = tmp_path / "out"
    assert main(["planner", "extend", str(base_dir), "-o", str(dst), "--tools", tools]) == 0
    assert "denoise:cli_new" in capsys.readouterr().out
    assert (dst / "model.safetensors").is_file() and (dst / "tokenizer.json").is_file()
    assert " denoise:cli_new" in json.loads((dst / "tokenizer.json").read_text())["model"]["vocab"]
    assert read_meta(dst)[EXTENSIONS][-1]["tools"] == {"denoise": ["cli_new"]}

    assert main(["planner", "extend", str(base_dir), "-o", str(base_dir), "--tools", tools]) == 2
    assert "another folder" in capsys.readouterr().err
    assert main(["planner", "extend", str(base_dir), "-o", str(base_dir / "inside"), "--tools", tools]) == 2
    assert main(["planner", "extend", str(base_dir), "-o", str(dst), "--tools", tools]) == 2  # exists
    assert "--force" in capsys.readouterr().err
    assert module_main([str(base_dir), str(dst), "--tools", tools, "--force"]) == 0
    assert _digest(base_dir) == before  # the source is never touched
    # a second extension of the extended copy: nothing missing -> a plain copy, history kept
    assert main(["planner", "extend", str(dst), "-o", str(tmp_path / "again"), "--tools", tools]) == 0
    assert _digest(tmp_path / "again") == _digest(dst)


# --- training from an existing planner ----------------------------------------------------------
def _train_cfg(tmp_path, base_dir, data, finetune, steps, **train):
    return {
        "output_dir": str(tmp_path / "run"),
        "resume": False,
        "planner": {
            "build": None,
            "model": str(base_dir),
            "view": {"layout": "mosaic", "size": 64},
            "tools": {**TOOLS, "denoise": ["nlm_mid", TOY]},
            "finetune": finetune,
        },
        "data": {"source": "disk", "path": str(data), "val_fraction": 0.0, "augment": False},
        "train": {
            "max_steps": steps,
            "batch_size": 3,
            "lr": 3e-3,
            "warmup_steps": 0,
            "log_every": 5,
            "eval_every": 0,
            "save_every": 0,
            "device": "cpu",
            **train,
        },
        "wandb": {"enabled": False},
    }


def test_training_from_a_planner_extends_it_and_learns_the_new_tool(
    base_dir, toy_tool, examples, tmp_path, caplog
):
    from restoreagent.planners.vlm import VLMPlanner
    from restoreagent.planners.vlm.training import train

    data = tmp_path / "data"
    examples.save_to_disk(str(data))
    before = _digest(base_dir)
    with caplog.at_level("INFO", logger="restoreagent"):
        summary = train(_train_cfg(tmp_path, base_dir, data, {"mode": "full"}, 60, lr=1e-2))
    logged = [r.getMessage() for r in caplog.records if "cannot name" in r.getMessage()]
    assert len(logged) == 1 and f"denoise:{toy_tool}" in logged[0] and "denoise:nlm_mid" not in logged[0]
    assert _digest(base_dir) == before
    losses = [h["loss"] for h in summary["history"] if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]
    final = tmp_path / "run" / "final"
    assert toy_tool in read_meta(final)["tools_at_build"]["denoise"]
    planner = VLMPlanner(str(final), tools={**TOOLS, "denoise": ["nlm_mid", toy_tool]})
    answer = planner.plan(PlanRequest(image=examples[5]["image"]))
    assert Step("denoise", toy_tool) in answer.plan, planner.last_text


@pytest.mark.parametrize("new_tokens", ["trainable_tokens", "modules_to_save"])
def test_lora_trains_the_new_rows_and_the_adapter_round_trips(
    base_dir, toy_tool, examples, tmp_path, new_tokens
):
    from peft import PeftModel

    from restoreagent.planners.vlm import VLMPlanner
    from restoreagent.planners.vlm.finetune import apply_finetune_mode
    from restoreagent.planners.vlm.training import save_final
    from restoreagent.planners.vlm.view import ViewConfig

    ext, _ = extend_planner(base_dir, tmp_path / "ext", {**TOOLS, "denoise": ["nlm_mid", toy_tool]})
    net, processor = _load(ext)
    new_ids = extension_token_ids(read_meta(ext), processor.tokenizer)
    toy_id = processor.tokenizer.convert_tokens_to_ids(f" denoise:{toy_tool}")
    assert toy_id in new_ids and min(new_ids) == len(processor.tokenizer) - len(new_ids)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "new_tokens": new_tokens}
    net = apply_finetune_mode(net, {"mode": "lora", "lora": lora}, new_ids)
    batch = _batch(processor, [examples[0], examples[1]])
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net.train()
    for _ in range(3):
        net(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    net.eval()
    with torch.no_grad():
        ref = net(**batch).logits
    final = save_final(
        net, processor, str(ext), tmp_path / "final", ViewConfig("mosaic", 64), {"planner": {}}, []
    )
    saved = json.loads((final / "adapter" / "adapter_config.json").read_text())
    if new_tokens == "trainable_tokens":
        assert saved["trainable_token_indices"] == new_ids
    else:
        assert "embed_tokens" in saved["modules_to_save"]  # peft keeps lm_head tied to it
    assert read_meta(final)[EXTENSIONS]  # the extension record travels with the trained folder

    planner = VLMPlanner(str(final))  # merged, the HF way: base files next to adapter/
    with torch.no_grad():
        assert torch.allclose(planner.net(**batch).logits, ref, atol=1e-4)
    base_net, _ = _load(ext)
    unmerged = PeftModel.from_pretrained(base_net, str(final / "adapter")).eval()
    with torch.no_grad():
        assert torch.allclose(unmerged(**batch).logits, ref, atol=1e-4)
    trained = planner.net.get_input_embeddings().weight.detach()
    base_rows = _load(ext)[0].get_input_embeddings().weight.detach()
    assert not torch.allclose(trained[toy_id], base_rows[toy_id])  # the new row learned
    # trainable_tokens moves only the new rows; modules_to_save trains the whole embedding
    moved_old = not torch.equal(trained[: min(new_ids)], base_rows[: min(new_ids)])
    assert moved_old == (new_tokens == "modules_to_save")
    # `restoreagent planner merge`: full weights, no adapter, same logits, the meta kept
    from restoreagent.cli import main as cli_main

    assert cli_main(["planner", "merge", str(final), "-o", str(tmp_path / "merged")]) == 0
    merged = tmp_path / "merged"
    assert not (merged / "adapter").exists() and read_meta(merged)[EXTENSIONS] == read_meta(final)[EXTENSIONS]
    net_m, processor_m = _load(merged)
    with torch.no_grad():
        assert torch.allclose(net_m(**_batch(processor_m, [examples[0], examples[1]])).logits, ref, atol=1e-4)
    assert cli_main(["planner", "merge", str(merged), "-o", str(tmp_path / "m2")]) == 2  # nothing to merge
    # a LoRA-trained folder extends again: written merged (full weights), same logits on its words
    again, words = extend_planner(final, tmp_path / "again", {"denoise": ["nlm_mid", toy_tool, "later"]})
    assert words and not (again / "adapter").exists() and len(read_meta(again)[EXTENSIONS]) == 2
    net2, processor2 = _load(again)
    with torch.no_grad():
        got = net2(**_batch(processor2, [examples[0], examples[1]])).logits
    assert torch.allclose(got[..., : ref.shape[-1]], ref, atol=1e-4)


def test_a_resumed_run_keeps_its_extended_base(base_dir, toy_tool, examples, tmp_path):
    from restoreagent.planners.vlm.training import train
    from restoreagent.tools.registry import ToolSpec as Spec

    data = tmp_path / "data"
    examples.save_to_disk(str(data))
    lora = {"mode": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    cfg = _train_cfg(tmp_path, base_dir, data, lora, 1, save_every=1)
    train(cfg)
    size = len(json.loads((tmp_path / "run" / "base" / "tokenizer.json").read_text())["model"]["vocab"])
    # another tool is catalogued before the run is resumed: the run keeps the vocabulary it started with
    register(
        Spec(
            name=toy_tool + "_2",
            task="denoise",
            kind="classical",
            description="t",
            function="toytools:gain",
            params={"g": 1.0},
        )
    )
    summary = train({**cfg, "resume": True, "train": {**cfg["train"], "max_steps": 2}})
    assert summary["steps"] == 2
    assert (
        len(json.loads((tmp_path / "run" / "base" / "tokenizer.json").read_text())["model"]["vocab"]) == size
    )
    assert (tmp_path / "run" / "final" / PLANNER_META).is_file()
