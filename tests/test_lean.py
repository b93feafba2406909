"""The lean planner path (restoreagent/planners/vlm/lean.py) against transformers, and light imports.

The lean path must give the shipped planner's very logits and plans without importing
transformers, and the commands must import only what they need (no torch for ``--help``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from restoreagent.degradations import degrade  # noqa: E402
from restoreagent.dialogue import History, prompt  # noqa: E402
from restoreagent.errors import RestoreAgentError  # noqa: E402
from restoreagent.plan import Step  # noqa: E402
from restoreagent.planners.vlm.build_default import default_planner_dir  # noqa: E402
from restoreagent.planners.vlm.grammar import token_strings  # noqa: E402
from restoreagent.planners.vlm.lean import LeanLlava, lean_support, load_lean  # noqa: E402
from restoreagent.planners.vlm.planner import VLMPlanner, load_model_and_processor, user_messages  # noqa: E402
from restoreagent.planners.vlm.view import planner_view  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# chains whose plans differ (the shipped planner sees noise, JPEG, haze, low light, blur ...)
CHAINS = [None, "noise:sigma=25", "noise:sigma=15,jpeg:quality=20", "haze", "low_light", "motion_blur", "rain"]


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """scikit-image photos (256 px) under several degradations, and one odd size (smaller than a tile)."""
    import cv2
    from skimage import data

    out = []
    for i, name in enumerate(("astronaut", "coffee", "chelsea")):
        clean = cv2.resize(getattr(data, name)(), (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        for j, chain in enumerate(CHAINS):
            out.append(clean if chain is None else degrade(clean, chain=chain, seed=10 * i + j)[0])
    out.append(out[2][:100, :90])
    return out


@pytest.fixture(scope="module")
def models():
    folder = default_planner_dir()
    lean, lean_proc = load_lean(folder)
    ref, ref_proc = load_model_and_processor(str(folder))
    return lean, lean_proc, ref, ref_proc


@pytest.fixture(scope="module")
def planners():
    return VLMPlanner(backend="lean"), VLMPlanner(backend="transformers")


def test_the_shipped_planner_is_supported_and_loads_lean():
    assert lean_support(default_planner_dir()) is None
    planner = VLMPlanner()
    assert isinstance(planner.net, LeanLlava)


def test_preprocessing_and_logits_match_transformers(models, photos, planners):
    lean, lean_proc, ref, ref_proc = models
    view_config = planners[0].view
    for i, image in enumerate(photos[:8]):
        history = None if i % 2 else History(done=(Step("denoise", "dct_mid"),), last_step=Step("denoise", "dct_mid"))
        messages = user_messages(prompt(history))
        text = ref_proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert lean_proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == text
        view = planner_view(image, view_config)
        a = lean_proc(text=[text], images=[[view]], return_tensors="pt", add_special_tokens=False)
        b = ref_proc(text=[text], images=[[view]], return_tensors="pt", add_special_tokens=False)
        assert sorted(a) == sorted(b)
        for k in a:  # token ids, mask and pixel values are identical
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        with torch.inference_mode():
            want = ref(**b).logits
            got, past = lean(a["input_ids"], pixel_values=a["pixel_values"])
            assert got.shape == want.shape
            assert (got - want).abs().max().item() < 1e-4
            # the KV cache: the prompt in two parts gives the same logits as in one
            ids = a["input_ids"]
            head, past = lean(ids[:, :-3], pixel_values=a["pixel_values"])
            tail, _ = lean(ids[:, -3:], past=past)
            assert (torch.cat([head, tail], dim=1) - got).abs().max().item() < 1e-4
            # precomputed image features are the same as pixel values
            feats = lean.image_features(a["pixel_values"])
            again, _ = lean(ids, image_features=feats)
            assert torch.equal(again, got)


def test_tokenizer_pieces_match_transformers(planners):
    lean, ref = planners
    assert token_strings(lean.tokenizer) == token_strings(ref.tokenizer)
    assert lean.eos_ids == ref.eos_ids
    words = "saw: noise, jpeg | plan: denoise:unet_denoise_mid, dejpeg:dejpeg_mild"
    a = lean.tokenizer(words, add_special_tokens=False, return_tensors="pt")["input_ids"]
    b = ref.tokenizer(words, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert torch.equal(a, b)
    assert lean.tokenizer.decode(a[0].tolist()) == ref.tokenizer.decode(b[0].tolist())


def test_greedy_plans_match_transformers(planners, photos):
    lean, ref = planners
    answers = set()
    for image in photos:
        for history in (None, History(done=(Step("denoise", "unet_denoise_mid"),))):
            got, want = lean.generate_text(image, history), ref.generate_text(image, history)
            assert got == want
            answers.add(got)
    assert len(answers) >= 4  # the images ask for different plans, so the test can tell


def test_lean_generate_is_greedy_only(models):
    lean = models[0]
    ids = torch.tensor([[2, 6, 4, 4, 4, 4, 7]])
    with pytest.raises(ValueError, match="greedily"):
        lean.generate(ids, max_new_tokens=2, num_beams=2)
    out = lean.generate(ids, pixel_values=torch.rand(1, 3, 256, 256), max_new_tokens=3, eos_token_id=[3])
    assert out.shape[0] == 1 and 7 < out.shape[1] <= 10 and torch.equal(out[:, :7], ids)


def _copy_planner(tmp_path) -> Path:
    folder = tmp_path / "planner"
    shutil.copytree(default_planner_dir(), folder)
    return folder


def test_other_folders_fall_back_to_transformers(tmp_path):
    folder = _copy_planner(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["text_config"]["rope_parameters"] = {"rope_theta": 10000.0, "rope_type": "linear", "factor": 2.0}
    (folder / "config.json").write_text(json.dumps(cfg))
    assert "RoPE" in lean_support(folder)
    planner = VLMPlanner(str(folder))
    assert not isinstance(planner.net, LeanLlava)
    with pytest.raises(RestoreAgentError, match="lean planner path cannot run"):
        VLMPlanner(str(folder), backend="lean")


def test_a_corrupt_weight_file_is_one_line(tmp_path):
    folder = _copy_planner(tmp_path)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(RestoreAgentError) as e:
        VLMPlanner(str(folder))
    assert "cannot load planner model" in str(e.value) and "\n" not in str(e.value)


def _modules_after(code: str) -> set[str]:
    """Top-level modules imported by ``code`` run in a fresh interpreter from the repository."""
    script = code + "\nimport sys, json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_package_and_help_do_not_import_torch():
    mods = _modules_after(
        "import restoreagent, restoreagent.cli\n"
        "try:\n    restoreagent.cli.main(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert "restoreagent" in mods
    assert not {"torch", "transformers", "torchvision", "pyiqa", "scipy"} & mods


def test_run_auto_with_the_shipped_planner_does_not_import_transformers(tmp_path, astronaut_png):
    out = tmp_path / "out.png"
    mods = _modules_after(
        "from restoreagent.cli import main\n"
        f"assert main(['run', {str(astronaut_png)!r}, '--auto', '-o', {str(out)!r}]) == 0"
    )
    assert out.is_file()
    assert "torch" in mods
    # transformers and torchvision (its image processors) cost seconds to import; pyiqa is for
    # --stepwise's piqe check only (scipy is left out: a deblurring tool in the plan needs it)
    assert not {"transformers", "torchvision", "pyiqa"} & mods


def test_the_command_ends_cleanly_after_a_fast_exit(tmp_path, astronaut_png):
    """``plan`` and ``run`` end the process without the interpreter's teardown: their output and
    exit status must still all be there."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out.png"
    cmd = [sys.executable, "-m", "restoreagent.cli"]
    run = subprocess.run([*cmd, "run", str(astronaut_png), "--auto", "-o", str(out), "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["output"] == str(out) and out.stat().st_size > 0
    plan = subprocess.run([*cmd, "plan", str(astronaut_png)], capture_output=True, text=True, env=env, timeout=300)
    assert plan.returncode == 0 and "degradations seen" in plan.stdout and plan.stdout.rstrip().endswith("ms)")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    plan = subprocess.run([*cmd, "plan", str(bad)], capture_output=True, text=True, env=env, timeout=300)
    assert plan.returncode == 2 and "bad.png" in plan.stderr
