"""The published-model zoo (restoreagent/zoo): catalogue, checked downloads, safe loading, tools.

Nothing is downloaded: the tests build small real architectures (spandrel's own classes and the
project's DehazeFormer-MCT), save them as .pth / .safetensors, pin their SHA-256 in a catalogue of
``file://`` URLs (``$RESTOREAGENT_ZOO_MODELS``) and go through the same code users run:
``zoo download`` -> cache -> registry -> ``get_tool(name)(image)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from restoreagent.cli import main as cli_main
from restoreagent.errors import RestoreAgentError
from restoreagent.tasks import CORE_TASKS, TASKS
from restoreagent.tools import registry
from restoreagent.zoo import hub, models
from restoreagent.zoo.hub import ChecksumError, ZooError

REPO = Path(__file__).resolve().parents[1]
LOCAL = {
    "title": "test model",
    "sha256_source": "computed by the test",
    "licence": "MIT",
    "source": "https://example.org/",
    "input": "RGB [0,1]",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


# ------------------------------------------------------------------ weight files made here


class _Evil:
    """Unpickling this would create a marker file: weights_only loading must never do it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Small real models saved the way their authors publish them."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.DRUNet import DRUNet
    from spandrel.architectures.NAFNet import NAFNet

    from restoreagent.zoo.archs.dehazeformer import DehazeFormerMCT

    d = tmp_path_factory.mktemp("published")
    torch.manual_seed(0)
    files = {}
    sr = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    files["sr_x2"] = d / "tiny_compact_x2.pth"
    torch.save({"params": sr.state_dict()}, files["sr_x2"])  # BasicSR-style wrapping
    naf = NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])
    files["nafnet"] = d / "tiny_nafnet.safetensors"
    save_file({k: v.contiguous() for k, v in naf.state_dict().items()}, str(files["nafnet"]))
    dru = DRUNet(in_nc=4, out_nc=3, nc=[8, 16, 32, 64], nb=2)
    files["drunet"] = d / "tiny_drunet.pth"
    torch.save(dru.state_dict(), files["drunet"])
    mct = DehazeFormerMCT(
        size=32, levels=2, dims=(8, 12, 16, 12, 8), depths=(1, 2, 1, 1, 1), heads=(1, 2, 2, 1, 1), window=4
    )
    files["mct"] = d / "tiny_mct.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in mct.state_dict().items()}}, files["mct"])
    files["evil"] = d / "evil.pth"
    files["marker"] = d / "EXECUTED"
    torch.save({"weight": torch.zeros(1), "payload": _Evil(str(files["marker"]))}, files["evil"])
    return files


@pytest.fixture
def zoo(tmp_path, monkeypatch, weights):
    """A cache folder and an extra catalogue of file:// models; the registry re-reads both."""
    cache = tmp_path / "cache"
    entries = [
        {
            "name": "t_sr_x2",
            "task": "super_resolve",
            "architecture": "Compact",
            "loader": "spandrel",
            "scale": 2,
            "url": weights["sr_x2"].as_uri(),
            "sha256": _sha(weights["sr_x2"]),
            **LOCAL,
        },
        {
            "name": "t_nafnet",
            "task": "denoise",
            "architecture": "NAFNet",
            "loader": "spandrel",
            "url": weights["nafnet"].as_uri(),
            "sha256": _sha(weights["nafnet"]),
            **LOCAL,
        },
        {
            "name": "t_drunet_s5",
            "task": "denoise",
            "architecture": "DRUNet",
            "loader": "spandrel",
            "url": weights["drunet"].as_uri(),
            "sha256": _sha(weights["drunet"]),
            "params": {"noise_level": 5},
            **LOCAL,
        },
        {
            "name": "t_drunet_s50",
            "task": "denoise",
            "architecture": "DRUNet",
            "loader": "spandrel",
            "url": weights["drunet"].as_uri(),
            "sha256": _sha(weights["drunet"]),
            "params": {"noise_level": 50},
            **LOCAL,
        },
        {
            "name": "t_dehaze",
            "task": "dehaze",
            "architecture": "DehazeFormer-MCT",
            "loader": "dehazeformer_mct",
            "url": weights["mct"].as_uri(),
            "sha256": _sha(weights["mct"]),
            "params": {"size": 32},
            **LOCAL,
        },
        {
            "name": "t_wrong_sha",
            "task": "denoise",
            "architecture": "NAFNet",
            "loader": "spandrel",
            "url": weights["nafnet"].as_uri(),
            "filename": "wrong.safetensors",
            "sha256": "0" * 64,
            **LOCAL,
        },
        {
            "name": "t_evil",
            "task": "denoise",
            "architecture": "NAFNet",
            "loader": "spandrel",
            "url": weights["evil"].as_uri(),
            "sha256": _sha(weights["evil"]),
            **LOCAL,
        },
    ]
    extra = tmp_path / "test_catalog.yaml"
    extra.write_text(yaml.safe_dump(entries))
    monkeypatch.setenv("RESTOREAGENT_CACHE", str(cache))
    monkeypatch.setenv("RESTOREAGENT_ZOO_MODELS", str(extra))
    monkeypatch.setenv("RESTOREAGENT_DEVICE", "cpu")
    for var in hub.OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    registry.reload_models()
    yield cache
    monkeypatch.undo()
    registry.reload_models()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------ the shipped catalogue


def test_shipped_catalogue_is_complete_and_well_formed(monkeypatch):
    monkeypatch.delenv("RESTOREAGENT_ZOO_MODELS", raising=False)
    published = models.load_models()
    assert len(published) >= 15
    # every core task has published published (extensions such as desnow may have none yet)
    assert set(CORE_TASKS) <= {m.task for m in published} <= set(TASKS)
    names = [m.name for m in published]
    assert len(names) == len(set(names))
    own = set()
    for f in (REPO / "restoreagent" / "catalog").glob("tools*.yaml"):
        own |= {e["name"] for e in yaml.safe_load(f.read_text()) or []}
    own |= {f.stem for f in (REPO / "restoreagent" / "catalog" / "learned").glob("*.yaml")}
    assert not own & set(names), own & set(names)
    from spandrel import MAIN_REGISTRY

    by_file = {}
    for m in published:
        assert len(m.sha256) == 64 and int(m.sha256, 16) >= 0, m.name
        assert m.url.startswith("https://"), m.name
        assert m.licence and m.sha256_source and m.source.startswith("https://") and m.input, m.name
        assert (m.scale > 1) == (m.task == "super_resolve"), m.name
        assert by_file.setdefault(m.file_name, m.sha256) == m.sha256, m.name
        if m.loader == "spandrel" and "spandrel_extra_arches" not in m.requires:
            assert m.architecture in MAIN_REGISTRY, m.name
    assert len({m.sha256 for m in published}) == len(by_file)  # one file per digest


def test_catalogue_models_are_registry_tools_unavailable_until_downloaded(zoo):
    specs = {s.name: s for s in registry.list_specs()}
    for m in models.load_models():
        s = specs[m.name]
        assert s.kind == "hub" and s.task == m.task
        assert Path(s.weights) == zoo / m.file_name
        assert not s.available and any("restoreagent zoo download" in why for why in s.missing)
    assert not {m.name for m in models.load_models()} & {s.name for s in registry.available_tools()}


def test_readme_table_matches_the_catalogue(monkeypatch):
    monkeypatch.delenv("RESTOREAGENT_ZOO_MODELS", raising=False)
    text = (REPO / "docs" / "model_zoo.md").read_text()
    block = text.split("<!-- zoo-table:begin")[1].split("-->", 1)[1].split("<!-- zoo-table:end -->")[0]
    assert block.strip() == models.markdown_table().strip(), "run `restoreagent zoo list --markdown`"


def test_bad_catalogue_entries_are_refused(tmp_path, monkeypatch):
    good = {
        "name": "x_ok",
        "task": "denoise",
        "architecture": "NAFNet",
        "loader": "spandrel",
        "url": "file:///tmp/x.pth",
        "sha256": "a" * 64,
        **LOCAL,
    }
    bad = [
        {"sha256": "abc"},
        {"task": "sharpen"},
        {"loader": "pickle"},
        {"name": "Bad-Name"},
        {"url": "ftp://x/y.pth"},
        {"colour": "red"},
        {"licence": ""},
    ]
    for change in bad:
        f = tmp_path / "c.yaml"
        f.write_text(yaml.safe_dump([{**good, **change}]))
        monkeypatch.setenv("RESTOREAGENT_ZOO_MODELS", str(f))
        with pytest.raises(models.ModelListError):
            models.load_models()


# ------------------------------------------------------------------ download, verify, use


def test_download_verify_and_run_a_super_resolution_model_as_a_same_size_tool(zoo, weights):
    from spandrel import ModelLoader

    from restoreagent.zoo.loader import _resize

    got = models.download("t_sr_x2", progress=False)
    assert got.action == "downloaded" and got.path == zoo / weights["sr_x2"].name
    assert _files(zoo) == [weights["sr_x2"].name]  # no temporary file left
    assert models.download("t_sr_x2", progress=False).action == "cached"
    assert [r.status for r in models.verify(["t_sr_x2"])] == ["ok"]
    assert "t_sr_x2" in registry.tools_for_task("super_resolve")

    tool = registry.get_tool("t_sr_x2")
    img = _image(37, 53)
    out = tool(img)
    assert out.shape == (37, 53, 3) and out.dtype == np.float32
    # the adapter: bicubic down by 2, the model (x2), bicubic to exactly (H, W)
    model = ModelLoader().load_from_file(str(weights["sr_x2"])).eval()
    small = _resize(img, 26, 18)
    with torch.no_grad():
        up = model(torch.from_numpy(small.transpose(2, 0, 1))[None])[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(out, np.clip(_resize(up, 53, 37), 0, 1), atol=1e-5)
    for h, w in ((5, 7), (1, 1), (64, 64)):
        assert tool(_image(h, w, 1)).shape == (h, w, 3)


def test_safetensors_model_through_the_cli(zoo, weights, capsys):
    from spandrel import ModelLoader

    assert cli_main(["zoo", "download", "t_nafnet", "--no-progress"]) == 0
    assert "t_nafnet: downloaded" in capsys.readouterr().out
    assert cli_main(["tools", "--json", "--task", "denoise"]) == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert listed["t_nafnet"]["available"] and listed["t_nafnet"]["kind"] == "hub"
    assert not listed["t_drunet_s5"]["available"]

    img = _image(40, 33, 2)
    model = ModelLoader().load_from_file(str(weights["nafnet"])).eval()
    with torch.no_grad():
        want = model(torch.from_numpy(img.transpose(2, 0, 1))[None])[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(registry.get_tool("t_nafnet")(img), np.clip(want, 0, 1), atol=1e-5)


def test_one_file_serves_tools_with_different_parameters(zoo, weights):
    from spandrel.architectures.DRUNet import DRUNet

    models.download("t_drunet_s5", progress=False)
    assert {"t_drunet_s5", "t_drunet_s50"} <= set(registry.tools_for_task("denoise"))
    img = _image(24, 32, 3)
    low, high = registry.get_tool("t_drunet_s5")(img), registry.get_tool("t_drunet_s50")(img)
    net = DRUNet(in_nc=4, out_nc=3, nc=[8, 16, 32, 64], nb=2)
    net.load_state_dict(torch.load(weights["drunet"], weights_only=True))
    x = torch.from_numpy(img.transpose(2, 0, 1))[None]
    with torch.no_grad():
        want = net(torch.cat([x, torch.full((1, 1, 24, 32), 50 / 255)], 1))[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(high, np.clip(want, 0, 1), atol=1e-5)
    assert np.abs(low - high).max() > 1e-4


def test_dehazeformer_mct_loader(zoo, weights):
    from restoreagent.zoo.archs.dehazeformer import DehazeFormerMCT, config_from_state_dict

    models.download("t_dehaze", progress=False)
    img = _image(45, 70, 4)
    out = registry.get_tool("t_dehaze")(img)
    assert out.shape == img.shape
    state = {
        k.removeprefix("module."): v
        for k, v in torch.load(weights["mct"], weights_only=True)["state_dict"].items()
    }
    net = DehazeFormerMCT(size=32, **config_from_state_dict(state)).eval()
    net.load_state_dict(state)
    with torch.no_grad():
        want = (
            net(torch.from_numpy(img.transpose(2, 0, 1))[None] * 2 - 1)
            .clamp(-1, 1)[0]
            .numpy()
            .transpose(1, 2, 0)
        )
    np.testing.assert_allclose(out, (want + 1) / 2, atol=1e-5)


def test_the_published_dehazeformer_layout_loads_strictly():
    """The architecture with its default size has exactly the published checkpoint's parameter count."""
    from restoreagent.zoo.archs.dehazeformer import DehazeFormerMCT, config_from_state_dict, parameter_count

    net = DehazeFormerMCT()
    assert parameter_count(net) == 1_233_024
    assert config_from_state_dict(net.state_dict())["dims"] == (24, 48, 96, 48, 24)


# ------------------------------------------------------------------ what must be refused


def test_checksum_mismatch_keeps_nothing(zoo, capsys):
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        models.download("t_wrong_sha", progress=False)
    assert _files(zoo) == []
    assert cli_main(["zoo", "download", "t_wrong_sha", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "checksum mismatch" in err and "nothing was kept" in err
    assert _files(zoo) == []
    assert not registry.spec("t_wrong_sha").available


def test_tampered_cache_file_is_caught_by_verify_and_by_the_loader(zoo, capsys):
    path = models.download("t_nafnet", progress=False).path
    with open(path, "ab") as f:
        f.write(b"\0")
    assert cli_main(["zoo", "verify"]) == 2
    out = capsys.readouterr().out
    assert "t_nafnet: CHECKSUM MISMATCH" in out and "t_sr_x2: not downloaded" in out
    assert not registry.spec("t_nafnet").available  # a damaged file is not "available" (issue 13)
    with pytest.raises(RestoreAgentError, match="sha256"):
        registry.get_tool("t_nafnet")
    assert models.download("t_nafnet", progress=False).action == "downloaded"  # a bad cached file is replaced
    assert cli_main(["zoo", "verify", "t_nafnet"]) == 0


@pytest.mark.parametrize("var", hub.OFFLINE_ENVS)
def test_offline_mode_fetches_nothing_and_says_what_to_do(zoo, weights, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    with pytest.raises(ZooError) as e:
        models.download("t_sr_x2", progress=False)
    msg = str(e.value)
    assert "offline" in msg and weights["sr_x2"].name in msg and str(zoo) in msg and "--from" in msg
    assert _files(zoo) == []
    # a file fetched elsewhere is copied in, checked
    assert models.download("t_sr_x2", str(weights["sr_x2"]), progress=False).action == "copied"
    assert registry.spec("t_sr_x2").available
    with pytest.raises(ChecksumError):
        models.download("t_nafnet", str(weights["sr_x2"]), progress=False)
    with pytest.raises(ZooError, match="offline"):
        models.download("t_nafnet", "https://example.org/tiny_nafnet.safetensors", progress=False)


def test_weights_only_loading_refuses_pickled_objects(zoo, weights):
    models.download("t_evil", progress=False)  # the bytes match their digest: downloading is fine
    with pytest.raises(ZooError, match="weights_only"):
        registry.get_tool("t_evil")
    assert not weights["marker"].exists()


def test_cli_in_a_subprocess(zoo, weights):
    env = {
        **os.environ,
        "RESTOREAGENT_CACHE": str(zoo),
        "RESTOREAGENT_ZOO_MODELS": os.environ["RESTOREAGENT_ZOO_MODELS"],
    }

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "restoreagent.cli", "zoo", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = run("download", "t_sr_x2", "--from", weights["sr_x2"].as_uri(), "--no-progress")
    assert r.returncode == 0, r.stderr
    r = run("list", "--json", "--task", "super_resolve")
    rows = {m["name"]: m for m in json.loads(r.stdout)}
    assert rows["t_sr_x2"]["status"] == "cached" and rows["swinir_sr_x4"]["status"] == "not downloaded"
    assert run("path").stdout.strip() == str(zoo)
    r = run("download", "no_such_model")
    assert r.returncode == 2 and r.stderr.startswith("restoreagent: error: unknown model")


def test_http_download_streams_into_the_cache(zoo, weights, monkeypatch):
    """A real HTTP transfer (a local server): same checks as any download; server errors are one line."""
    import functools
    import http.server
    import threading

    monkeypatch.setenv("no_proxy", "127.0.0.1")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(weights["nafnet"].parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        got = models.download("t_nafnet", f"{base}/{weights['nafnet'].name}", progress=False)
        assert got.action == "copied" and _sha(got.path) == _sha(weights["nafnet"])
        with pytest.raises(ZooError, match="HTTP 404"):
            models.download("t_sr_x2", f"{base}/missing.pth", progress=False)
        with pytest.raises(ChecksumError):
            models.download("t_sr_x2", f"{base}/{weights['nafnet'].name}", progress=False)
        assert _files(zoo) == [weights["nafnet"].name]
    finally:
        server.shutdown()
        server.server_close()
