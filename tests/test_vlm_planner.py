"""The VLM planner: collator labels, constrained decoding, the pretrained-VLM path, LoRA round trip.

Everything is built offline in a temporary folder (tiny random models, scikit-image photos).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from restoreagent.dialogue import Answer, History, parse_answer  # noqa: E402
from restoreagent.errors import RestoreAgentError  # noqa: E402
from restoreagent.plan import Plan, Step  # noqa: E402
from restoreagent.planners.base import PlanRequest  # noqa: E402
from restoreagent.planners.vlm.grammar import AnswerGrammar, TokenConstraint, token_strings  # noqa: E402
from restoreagent.tasks import PHYSICAL_ORDER, TASKS  # noqa: E402

# A made-up toolbox (tool names are not final, so nothing depends on the real catalogue).
TOOLS = {
    "denoise": ["nlm_mid", "nlm", "dncnn_s"],  # "nlm" is a prefix of "nlm_mid" on purpose
    "dejpeg": ["deblock_mild", "deblock_strong"],
    "dehaze": ["dcp"],
    "brighten": ["gamma"],
    "motion_deblur": ["wiener_motion"],
    "super_resolve": ["bicubic_sharp"],
}
# Installed now: a subset (derain and defocus_deblur have nothing installed).
INSTALLED = {
    "denoise": ["nlm_mid", "dncnn_s"],
    "dejpeg": ["deblock_mild"],
    "dehaze": ["dcp"],
    "brighten": ["gamma"],
    "motion_deblur": ["wiener_motion"],
    "super_resolve": ["bicubic_sharp"],
}


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory):
    from restoreagent.planners.vlm.build_default import build_default

    return build_default(
        tmp_path_factory.mktemp("default"),
        tools=TOOLS,
        sizes={"view_size": 64, "vision_hidden": 32, "text_hidden": 32, "vision_mlp": 64, "text_mlp": 64},
    )


@pytest.fixture(scope="module")
def idefics3_dir(tmp_path_factory):
    from restoreagent.planners.vlm.tiny import build_tiny_idefics3

    return build_tiny_idefics3(tmp_path_factory.mktemp("idefics3"))


@pytest.fixture(scope="module")
def examples():
    from restoreagent.planners.vlm.train_data import skimage_images, stage1_dataset

    return stage1_dataset(skimage_images()[:3], 6, seed=1, crop=64, tools=INSTALLED)


def _valid(answer: Answer, installed=INSTALLED) -> bool:
    tasks = [s.task for s in answer.plan]
    ok = len(set(tasks)) == len(tasks)
    ok &= all(s.tool in installed.get(s.task, []) for s in answer.plan)
    ok &= list(answer.degradations) == [d for d in PHYSICAL_ORDER if d in answer.degradations]
    return ok


# --- the grammar -------------------------------------------------------------------------
def test_grammar_accepts_answers_and_rejects_others():
    g = AnswerGrammar(INSTALLED, allow_rollback=True)
    good = [
        Answer(("noise", "jpeg"), Plan.of([("dejpeg", "deblock_mild"), ("denoise", "nlm_mid")])),
        Answer(("haze",), Plan.of([("dehaze", "dcp")])),
        Answer(),
        Answer(rollback=True),
    ]
    for a in good:
        assert g.accepts(a.text()) and g.accepts(" " + a.text()), a.text()
    bad = [
        "saw: jpeg, noise | plan: none",  # not physical order
        "saw: noise, noise | plan: none",  # repeated
        "saw: noise | plan: denoise:bm3d",  # unknown tool
        "saw: rain | plan: derain:nlm_mid",  # tool of another task
        "saw: noise | plan: denoise:nlm_mid, denoise:dncnn_s",  # task twice
        "saw: noise | plan: denoise:nlm",  # catalogued but not installed
        "saw: noise",
        "plan: none",
        "rollback, please",
    ]
    for t in bad:
        assert not g.accepts(t), t
    assert not AnswerGrammar(INSTALLED, allow_rollback=False).accepts("rollback")


def test_grammar_follows_history():
    h = History(done=(Step("dejpeg", "deblock_mild"),), rolled_back=(Step("denoise", "nlm_mid"),))
    g = AnswerGrammar.for_history(h, INSTALLED)
    assert not g.accepts("rollback")  # nothing to roll back
    assert not g.accepts("saw: noise | plan: dejpeg:deblock_mild")  # already done
    assert not g.accepts("saw: noise | plan: denoise:nlm_mid")  # rolled back: not again
    assert g.accepts("saw: noise | plan: denoise:dncnn_s")
    assert AnswerGrammar.for_history(History(last_step=Step("dehaze", "dcp")), INSTALLED).accepts("rollback")


# --- (a) the collator labels exactly the answer ---------------------------------------------
def test_collator_labels_decode_to_the_target(default_dir, examples):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from restoreagent.planners.vlm.collator import PlannerCollator
    from restoreagent.planners.vlm.planner import eos_ids
    from restoreagent.planners.vlm.view import ViewConfig

    processor = AutoProcessor.from_pretrained(default_dir)
    net = AutoModelForImageTextToText.from_pretrained(default_dir)
    collate = PlannerCollator(processor, ViewConfig("mosaic", 64), eos_ids(net, processor.tokenizer))
    batch = collate([examples[i] for i in range(len(examples))])
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    for b in range(len(examples)):
        labels = batch["labels"][b]
        kept = labels[labels != -100]
        assert tok.decode(kept, skip_special_tokens=True) == examples[b]["target"]
        assert kept[-1].item() == tok.eos_token_id  # the end of the answer is learned too
        ids = batch["input_ids"][b]
        assert (labels[ids == image_id] == -100).all() and (labels[ids == tok.pad_token_id] == -100).all()
    out = net(**batch)
    assert torch.isfinite(out.loss)


def test_collator_with_a_bpe_chat_template(idefics3_dir, examples):
    from transformers import AutoProcessor

    from restoreagent.planners.vlm.collator import PlannerCollator
    from restoreagent.planners.vlm.view import ViewConfig

    processor = AutoProcessor.from_pretrained(idefics3_dir)
    eos = processor.tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    batch = PlannerCollator(processor, ViewConfig("mosaic", 32), [eos])([examples[0], examples[1]])
    for b in range(2):
        kept = batch["labels"][b][batch["labels"][b] != -100]
        # SmolVLM's template puts the answer after "Assistant:", hence one leading space
        assert processor.tokenizer.decode(kept, skip_special_tokens=True) == " " + examples[b]["target"]
        assert kept[-1].item() == eos


# --- (b) constrained decoding always parses -------------------------------------------------
def test_random_default_model_always_gives_valid_plans(default_dir):
    from restoreagent.planners.vlm import VLMPlanner

    planner = VLMPlanner(str(default_dir), tools=INSTALLED)
    rng = np.random.default_rng(0)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in planner.net.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, 1.0)
        img = rng.random((48 + seed, 80, 3), dtype=np.float32)
        hist = History(last_step=Step("dehaze", "dcp")) if seed % 3 == 0 else None
        answer = planner.plan(PlanRequest(image=img, history=hist))
        assert parse_answer(planner.last_text, check_tools=False) == answer
        assert _valid(answer), planner.last_text
        assert not answer.rollback or hist is not None
        seen.add(planner.last_text)
    assert len(seen) > 3  # the random models really differ


def test_constraint_over_bpe_tokens_with_random_scores(idefics3_dir):
    """Many random walks through the token-level constraint of a byte-level BPE vocabulary."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(idefics3_dir)
    eos = [tok.convert_tokens_to_ids("<end_of_utterance>")]
    strings = token_strings(tok)
    for seed in range(60):
        rng = np.random.default_rng(seed)
        hist = (
            History(done=(Step("brighten", "gamma"),), last_step=Step("dehaze", "dcp")) if seed % 2 else None
        )
        con = TokenConstraint(AnswerGrammar.for_history(hist, INSTALLED), strings, eos)
        ids: list[int] = []
        for _ in range(400):
            allowed = con.allowed_after(ids)
            assert allowed, con.text(ids)
            nxt = int(rng.choice(allowed))
            ids.append(nxt)
            if nxt in eos:
                break
        text = con.text(ids).strip()
        answer = parse_answer(text, check_tools=False)
        assert _valid(answer), text
        if hist is not None and not answer.rollback:
            assert "brighten" not in answer.plan.tasks and "dehaze" not in answer.plan.tasks


# --- (c) the pretrained-VLM path: from_pretrained + LoRA + a training step + a plan ---------
@pytest.mark.parametrize("family", ["idefics3", "qwen2_vl"])
def test_pretrained_vlm_path_with_lora(family, idefics3_dir, tmp_path, examples):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from restoreagent.planners.vlm import VLMPlanner
    from restoreagent.planners.vlm.collator import PlannerCollator
    from restoreagent.planners.vlm.finetune import apply_finetune_mode, count_parameters
    from restoreagent.planners.vlm.planner import eos_ids
    from restoreagent.planners.vlm.tiny import build_tiny_qwen2_vl
    from restoreagent.planners.vlm.view import ViewConfig

    folder = idefics3_dir if family == "idefics3" else build_tiny_qwen2_vl(tmp_path / "qwen")
    processor = AutoProcessor.from_pretrained(folder)
    net = AutoModelForImageTextToText.from_pretrained(folder)
    net = apply_finetune_mode(net, {"mode": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}})
    trainable, total = count_parameters(net)
    assert 0 < trainable < total
    lora_names = [n for n, p in net.named_parameters() if p.requires_grad]
    assert any("vision" in n or "visual" in n for n in lora_names)  # the vision tower is adapted
    assert any("language_model" in n or "text_model" in n for n in lora_names)  # and the LM
    view = ViewConfig("mosaic", 32 if family == "idefics3" else 56)
    batch = PlannerCollator(processor, view, eos_ids(net, processor.tokenizer))([examples[0], examples[1]])
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    before = {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}
    net.train()
    loss = net(**batch).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(before[n], p) for n, p in net.named_parameters() if p.requires_grad)
    planner = VLMPlanner(net=net, processor=processor, view=view, tools=INSTALLED)
    answer = planner.plan(PlanRequest(image=examples[2]["image"]))
    assert _valid(answer) and parse_answer(planner.last_text, check_tools=False) == answer


# --- (d) a LoRA adapter saved and loaded gives the same model --------------------------------
def test_lora_adapter_round_trip(idefics3_dir, tmp_path, examples):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from restoreagent.planners.vlm import VLMPlanner
    from restoreagent.planners.vlm.collator import PlannerCollator
    from restoreagent.planners.vlm.finetune import apply_finetune_mode
    from restoreagent.planners.vlm.training import save_final
    from restoreagent.planners.vlm.view import ViewConfig

    processor = AutoProcessor.from_pretrained(idefics3_dir)
    net = apply_finetune_mode(
        AutoModelForImageTextToText.from_pretrained(idefics3_dir),
        {"mode": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
    )
    with torch.no_grad():  # make the adapter non-trivial (B starts at zero)
        for n, p in net.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.5)
    view = ViewConfig("mosaic", 32)
    batch = PlannerCollator(processor, view)([examples[0]])
    net.eval()
    with torch.no_grad():
        ref = net(**batch).logits
    final = save_final(net, processor, str(idefics3_dir), tmp_path / "final", view, {"planner": {}}, [])
    assert (final / "adapter" / "adapter_config.json").is_file()
    assert json.loads((final / "restoreagent_planner.json").read_text())["view"] == view.to_dict()
    # the trained folder alone: base + adapter/ + the view it was trained with
    planner = VLMPlanner(str(final), tools=INSTALLED)
    assert planner.view == view
    with torch.no_grad():
        got = planner.net(**batch).logits
    assert torch.allclose(ref, got, atol=1e-5)
    # and an adapter folder on top of a base folder
    planner2 = VLMPlanner(str(idefics3_dir), adapter=str(final / "adapter"), tools=INSTALLED, view=view)
    with torch.no_grad():
        assert torch.allclose(ref, planner2.net(**batch).logits, atol=1e-5)


# --- loading errors and the training app -----------------------------------------------------
def test_missing_default_planner_is_one_clear_line(tmp_path, monkeypatch):
    import restoreagent.planners.vlm.planner as mod

    monkeypatch.setattr(mod, "default_planner_dir", lambda: tmp_path / "nothing")
    with pytest.raises(RestoreAgentError) as e:
        mod.VLMPlanner()
    msg = str(e.value)
    assert "\n" not in msg and "build_default" in msg and "train_planner" in msg
    with pytest.raises(RestoreAgentError, match="cannot load planner model"):
        mod.VLMPlanner(str(tmp_path / "not-a-model-anywhere"))


def test_vocabulary_comes_from_the_registry_tools(default_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_dir)
    text = "saw: noise, jpeg | plan: dejpeg:deblock_mild, denoise:nlm_mid"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == 6 and tok.decode(ids) == text
    for t in TASKS:
        for x in TOOLS.get(t, []):
            assert tok.convert_tokens_to_ids(f", {t}:{x}") != tok.unk_token_id


def test_train_app_runs_saves_and_resumes(tmp_path, examples):
    from restoreagent.planners.vlm import VLMPlanner
    from restoreagent.planners.vlm.training import train

    data = tmp_path / "data"
    examples.save_to_disk(str(data))
    cfg = {
        "output_dir": str(tmp_path / "run"),
        "resume": False,
        "export": str(tmp_path / "exported"),
        "planner": {
            "build": "tiny_idefics3",
            "view": {"layout": "mosaic", "size": 32},
            "tools": INSTALLED,
            "lr": 1e-3,
            "finetune": {"mode": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        },
        "data": {"source": "disk", "path": str(data), "val_fraction": 0.34, "augment": True},
        "train": {
            "max_steps": 2,
            "batch_size": 2,
            "lr": 1e-3,
            "warmup_steps": 0,
            "log_every": 1,
            "eval_every": 2,
            "eval_generate": 2,
            "save_every": 1,
            "device": "cpu",
        },
        "wandb": {"enabled": False},
    }
    summary = train(cfg)
    assert summary["steps"] == 2
    run = tmp_path / "run"
    assert (run / "checkpoints" / "step_0000002" / "config.yaml").is_file()
    evals = [h for h in summary["history"] if "val_loss" in h]
    assert evals and 0.0 <= evals[-1]["saw_set"] <= 1.0
    cfg2 = {**cfg, "resume": True, "train": {**cfg["train"], "max_steps": 3}}
    summary2 = train(cfg2)
    assert summary2["steps"] == 3
    from restoreagent.planners.vlm.training import resolve_resume

    # resume=auto: the last checkpoint when there is one, else a fresh start (scripts re-run safely)
    assert resolve_resume({**cfg, "resume": "auto"})[1].name == "step_0000003"
    assert resolve_resume({**cfg, "resume": "auto", "output_dir": str(tmp_path / "fresh")})[1] is None
    planner = VLMPlanner(str(tmp_path / "exported"), tools=INSTALLED)
    assert _valid(planner.plan(PlanRequest(image=examples[0]["image"])))


def test_tools_outside_the_vocabulary_are_never_planned(default_dir, caplog):
    from restoreagent.planners.vlm import VLMPlanner

    installed = {**INSTALLED, "denoise": ["brand_new_tool"]}  # installed after the model was built
    planner = VLMPlanner(str(default_dir), tools=installed)
    with caplog.at_level("WARNING"):
        con = planner.constraint(planner.grammar(None))
    assert con.unnameable_tools() == ["denoise:brand_new_tool"]
    assert "brand_new_tool" in caplog.text
    for seed in range(4):
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in planner.net.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, 1.0)
        answer = planner.plan(PlanRequest(image=np.full((40, 40, 3), 0.5, np.float32)))
        assert _valid(answer, installed) and "denoise" not in answer.plan.tasks


@pytest.mark.slow
def test_stage1_training_of_the_default_planner_learns(tmp_path):
    """End to end: generated stage-1 data -> the built-from-scratch default -> loss falls a lot."""
    from restoreagent.planners.vlm.train_data import build_stage1_dataset, skimage_images
    from restoreagent.planners.vlm.training import train

    photos = skimage_images()
    data = build_stage1_dataset(
        tmp_path / "data",
        photos,
        256,
        photos,
        32,
        seed=3,
        crop=96,
        k_weights=(0.3, 0.4, 0.3),
        tools=INSTALLED,
    )
    cfg = {
        "output_dir": str(tmp_path / "run"),
        "planner": {
            "build": "default",
            "view": {"layout": "mosaic_detail", "size": 64},
            "tools": INSTALLED,
            "sizes": {"vision_hidden": 64, "text_hidden": 64, "vision_mlp": 128, "text_mlp": 128},
            "finetune": {"mode": "full"},
        },
        "data": {"source": "disk", "path": str(data), "augment": True},
        "train": {
            "max_steps": 150,
            "batch_size": 16,
            "lr": 2e-3,
            "warmup_steps": 10,
            "log_every": 10,
            "eval_every": 150,
            "eval_generate": 32,
            "save_every": 0,
            "device": "cpu",
        },
        "wandb": {"enabled": False},
    }
    summary = train(cfg)
    losses = [h["loss"] for h in summary["history"] if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]
    last = [h for h in summary["history"] if "val_loss" in h][-1]
    assert last["saw_label_acc"] >= last["saw_label_acc_all_absent"] - 0.05


def test_mix_replay_adds_old_examples_in_proportion(tmp_path):
    """data.replay: the new task's examples plus ratio x as many drawn from an older dataset."""
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    from restoreagent.planners.vlm.train_data import mix_replay

    feats = Features({"image": Image(), "prompt": Value("string"), "target": Value("string")})
    img = PILImage.new("RGB", (8, 8))

    def make(tag, n, extra=False):
        d = {"image": [img] * n, "prompt": ["q"] * n, "target": [f"{tag}{i}" for i in range(n)]}
        f = feats
        if extra:
            d["scenario"] = ["stop"] * n
            f = Features({**feats, "scenario": Value("string")})
        return Dataset.from_dict(d, features=f)

    make("old", 50, extra=True).save_to_disk(str(tmp_path / "old"))
    new = make("new", 10)
    mixed = mix_replay(new, tmp_path / "old", 2.0, seed=0)
    targets = mixed["target"]
    assert len(mixed) == 30 and set(mixed.column_names) == {"image", "prompt", "target"}
    assert sum(t.startswith("new") for t in targets) == 10 and sum(t.startswith("old") for t in targets) == 20
    assert targets != sorted(targets)  # shuffled together
    assert mix_replay(new, tmp_path / "old", 0.0)["target"] == new["target"]
