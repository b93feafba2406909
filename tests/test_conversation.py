"""The conversation: the offline intent parser, a session's turns, undo, region, export and replay,
the optional chat-model endpoint (against a fake local server) and `restoreagent chat`."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from restoreagent.conversation import Engine, Session, parse_intent, replay
from restoreagent.conversation.engine import FEATHER, box_mask, feather_weight, ladder, sky_mask
from restoreagent.conversation.llm import ChatModelInterpreter, to_action
from restoreagent.conversation.session import FUSE_K
from restoreagent.errors import RestoreAgentError
from restoreagent.imageio import load_image, to_uint8
from restoreagent.plan import parse_plan

EXAMPLE = "examples/astronaut_noise_jpeg.png"
TOOLS = {"dct_mid": "denoise", "unet_denoise_high": "denoise", "dejpeg_mild": "dejpeg", "unet_dejpeg_mild": "dejpeg"}


@pytest.mark.parametrize(
    "text, action",
    [
        ("try again", {"action": "alternative"}),
        ("I'm not satisfied", {"action": "alternative"}),
        ("Not happy with that", {"action": "alternative"}),
        ("still noisy", {"action": "more", "task": "denoise"}),
        ("it's still too grainy", {"action": "more", "task": "denoise"}),
        ("too dark", {"action": "more", "task": "brighten"}),
        ("still blurry", {"action": "more", "tasks": ["motion_deblur", "defocus_deblur"]}),
        ("still out of focus", {"action": "more", "task": "defocus_deblur"}),
        ("make it brighter", {"action": "more", "task": "brighten"}),
        ("too bright now", {"action": "less", "task": "brighten"}),
        ("don't sharpen", {"action": "remove", "tasks": ["motion_deblur", "defocus_deblur", "super_resolve"]}),
        ("no deblurring", {"action": "remove", "tasks": ["motion_deblur", "defocus_deblur"]}),
        ("without denoising please", {"action": "remove", "tasks": ["denoise"]}),
        ("undo", {"action": "undo"}),
        ("go back", {"action": "undo"}),
        ("only the sky", {"action": "region", "kind": "sky"}),
        ("the sky is too dark", {"action": "more", "task": "brighten"}),
        ("no, still noisy", {"action": "more", "task": "denoise"}),
        ("only the box", {"action": "region", "kind": "box"}),
        ("only the brushed area", {"action": "region", "kind": "mask"}),
        ("just the box 10, 20, 30, 40", {"action": "region", "kind": "box", "box": [10, 20, 30, 40]}),
        ("the whole image again", {"action": "region", "kind": "whole"}),
        ("stronger", {"action": "stronger"}),
        ("weaker", {"action": "weaker"}),
        ("a bit gentler", {"action": "weaker"}),
        ("stronger denoising", {"action": "stronger", "task": "denoise"}),
        ("weaker denoising", {"action": "weaker", "task": "denoise"}),
        ("too smooth, less denoising", {"action": "less", "task": "denoise"}),
        ("use dct_mid", {"action": "set_tool", "task": "denoise", "tool": "dct_mid"}),
        ("try unet_dejpeg_mild instead", {"action": "set_tool", "task": "dejpeg", "tool": "unet_dejpeg_mild"}),
        ("denoise:dct_mid, dejpeg:dejpeg_mild", {"action": "restore", "plan": "denoise:dct_mid, dejpeg:dejpeg_mild"}),
        ("restore", {"action": "restore"}),
        ("fix it", {"action": "restore"}),
        ("blend the best results", {"action": "fuse"}),
        ("can you combine them?", {"action": "fuse"}),
        ("help", {"action": "help"}),
        ("what is the weather", None),
        ("", None),
    ],
)
def test_parser_maps_plain_words_to_actions(text, action):
    assert parse_intent(text, TOOLS) == action


def test_ladder_orders_variants_mild_to_severe():
    assert ladder("denoise", "unet_denoise_mid") == ["unet_denoise_low", "unet_denoise_mid", "unet_denoise_high"]
    assert ladder("denoise", "dct_low") == ["dct_low", "dct_mid", "dct_high"]  # the classical family apart
    assert ladder("brighten", "gamma_mid") == ["gamma_mild", "gamma_mid", "gamma_strong"]


@pytest.fixture(scope="module")
def engine():
    return Engine("fixed+detect")  # the detector and the recipe: fast, no language model to load


@pytest.fixture(scope="module")
def photo():
    return load_image(EXAMPLE)[64:160, 64:192]  # 96x128 of the noisy + JPEG example


def test_session_turns_undo_and_adjustments(engine, photo):
    s = Session(photo, engine, "example")
    r = s.say("restore")
    first = r.turn.plan
    assert first.tasks == ("dejpeg", "denoise") and r.turn.steps and r.turn.sha256
    assert not np.array_equal(s.image, photo)
    r = s.say("not satisfied")
    assert r.turn.plan != first and r.turn.alternative == 1 and r.turn.plan == s.alternatives()[1]
    denoiser = dict((st.task, st.tool) for st in r.turn.plan)["denoise"]
    r = s.say("still noisy")
    rungs = ladder("denoise", denoiser)
    stronger = rungs[min(rungs.index(denoiser) + 1, len(rungs) - 1)]
    assert dict((st.task, st.tool) for st in s.current.plan)["denoise"] == stronger or "strongest" in r.text
    r = s.say("too dark")
    assert "brighten" in r.turn.plan.tasks
    r = s.say("still blurry")  # neither deblurring step planned: the detector's likelier one is added
    probs = s.look()["detection"]["probabilities"]
    likelier = "motion_deblur" if probs["motion_blur"] >= probs["defocus_blur"] else "defocus_deblur"
    assert likelier in r.turn.plan.tasks
    s.say("undo")
    r = s.say("no deblurring")
    assert r.turn is None and "no motion_deblur or defocus_deblur" in r.text  # nothing to remove: said, not done
    before_undo = len(s.turns)
    s.say("undo")
    assert "brighten" not in s.current.plan.tasks and len(s.turns) == before_undo + 1  # every turn kept
    assert s.current.sha256 == s.turns[-5].sha256  # back to the picture before "too dark"
    r = s.say("use dct_mid")
    assert dict((st.task, st.tool) for st in r.turn.plan)["denoise"] == "dct_mid"
    r = s.say("blah blah")
    assert r.turn is None and "did not understand" in r.text


def test_not_satisfied_shows_the_best_scoring_alternative_not_yet_shown(engine, photo, monkeypatch):
    """The alternatives after the planner's plan are ranked by the no-reference scores of their results
    (a Borda count over noise, exposure error and PIQE), so "not satisfied" walks them best first."""
    unranked = engine.alternatives(photo, engine.plan(photo)[1], None, rank=False)
    ranked = engine.alternatives(photo, engine.plan(photo)[1], None)
    assert ranked[0] == unranked[0] and sorted(map(str, ranked)) == sorted(map(str, unranked))
    assert ranked[1:] == engine.rank_plans(photo, unranked[1:])

    # the ranking itself, with made-up scores: the sum of each measure's rank orders the plans
    plans = unranked[1:4]
    fake = iter([{"noise": 3.0, "exposure": 0.2, "piqe": 50.0},   # ranks 2 + 2 + 2 = 6
                 {"noise": 1.0, "exposure": 0.1, "piqe": 40.0},   # ranks 0 + 0 + 1 = 1: best
                 {"noise": 2.0, "exposure": 0.15, "piqe": 30.0}])  # ranks 1 + 1 + 0 = 2
    monkeypatch.setattr(engine, "assess", lambda image, piqe=True: next(fake))
    assert engine.rank_plans(photo, plans) == [plans[1], plans[2], plans[0]]
    monkeypatch.undo()

    s = Session(photo, engine, "example")
    s.say("restore")
    shown = [s.current.plan]
    for n in range(1, 3):
        r = s.say("not satisfied")
        assert r.turn.plan == ranked[n] and r.turn.plan not in shown and f"Alternative {n} " in r.text
        shown.append(r.turn.plan)


def test_undo_walks_back_to_the_input(engine, photo):
    s = Session(photo, engine)
    assert s.say("undo").turn is None
    s.say("denoise:dct_low")
    s.say("denoise:dct_high")
    s.say("undo")
    assert s.current.plan == parse_plan("denoise:dct_low")
    s.say("undo")
    assert s.current.plan == parse_plan("none") and np.array_equal(s.image, photo)
    assert s.say("undo").turn is None


def test_old_pictures_are_forgotten_and_recomputed_the_same(engine, photo, monkeypatch):
    import restoreagent.conversation.session as session_module
    from restoreagent.conversation.session import pixels_sha256

    monkeypatch.setattr(session_module, "KEEP_BYTES", photo.nbytes * 3)  # three pictures: the two newest states
    s = Session(photo, engine)
    for plan in ("denoise:dct_low, dejpeg:dejpeg_mild", "denoise:dct_mid", "denoise:dct_high, dejpeg:dejpeg_mild"):
        s.say(plan)
    assert s.turns[0].image is None and s.turns[0].steps[0].image is None  # forgotten
    assert len(s._cache) == 2
    again = s.pictures(0)
    assert len(again) == 3 and pixels_sha256(again[-1]) == s.turns[0].sha256
    assert pixels_sha256(s.image) == s.turns[-1].sha256


def test_stronger_at_the_top_says_so(engine, photo):
    s = Session(photo, engine)
    s.say("denoise:unet_denoise_high")
    r = s.say("stronger")
    assert r.turn is None and "already the strongest" in r.text
    r = s.say("weaker")
    assert r.turn.plan == parse_plan("denoise:unet_denoise_mid")
    s.say("denoise:unet_denoise_low")
    r = s.say("less denoising")  # the mildest is still too much: the step goes
    assert r.turn.plan == parse_plan("none")


def test_region_leaves_pixels_outside_the_feather_untouched(engine, photo):
    s = Session(photo, engine)
    s.say("denoise:dct_high")
    r = s.say("only the box", box=(40, 30, 40, 30))
    assert r.turn.region == {"kind": "box", "box": [40, 30, 40, 30]}
    weight = feather_weight(box_mask(photo.shape[:2], (40, 30, 40, 30)))
    outside = weight == 0
    assert outside.sum() > 0.3 * outside.size
    assert np.array_equal(to_uint8(s.image)[outside], to_uint8(photo)[outside])
    inside = box_mask(photo.shape[:2], (40, 30, 40, 30))
    assert not np.array_equal(to_uint8(s.image)[inside], to_uint8(photo)[inside])
    assert (weight[weight > 0] <= 1).all() and 0 < ((weight > 0) & (weight < 1)).sum()
    assert np.all(weight[:, : 40 - FEATHER] == 0)
    r = s.say("only the box")  # no box drawn or given: asked for, nothing done
    assert r.turn is None and "Draw a box" in r.text
    assert s.say("only the box", box=(500, 500, 10, 10)).turn is None  # outside the photo: said, not done
    assert "cannot use" in s.act({"action": "region", "kind": "box", "box": ["a", 1, 2, 3]}).text
    assert "unknown tool" in s.act({"action": "set_tool", "task": "denoise", "tool": "nope"}).text


def test_brushed_mask_region_restores_only_there_and_replays(engine, photo):
    from restoreagent.conversation.engine import mask_to_png

    brushed = np.zeros(photo.shape[:2], bool)
    brushed[20:60, 30:50] = True
    brushed[40:50, 50:90] = True  # an L shape no box describes
    s = Session(photo, engine)
    s.say("denoise:dct_high")
    assert s.say("only the brushed area").turn is None  # nothing brushed yet: asked for
    r = s.say("only the brushed area", mask="data:image/png;base64," + mask_to_png(brushed))
    assert r.turn.region["kind"] == "mask"
    outside = feather_weight(brushed) == 0
    assert np.array_equal(to_uint8(s.image)[outside], to_uint8(photo)[outside])
    assert not np.array_equal(to_uint8(s.image)[brushed], to_uint8(photo)[brushed])
    again = replay(json.loads(json.dumps(s.export())), photo, engine)
    assert again.current.sha256 == s.current.sha256
    assert "not a readable PNG" in s.say("only the brushed area", mask="bm90IGEgcG5n").text
    assert s.say("only the brushed area", mask=mask_to_png(np.zeros_like(brushed))).turn is None


def test_sky_region_is_found_or_refused_clearly(engine):
    sky = np.zeros((64, 64, 3), np.float32)
    sky[:24] = (0.45, 0.65, 0.95)  # a blue band at the top over dark ground
    sky[24:] = np.random.default_rng(0).uniform(0.1, 0.3, (40, 64, 3))
    mask = sky_mask(sky)
    assert mask[:20].mean() > 0.9 and mask[30:].mean() < 0.05
    s = Session(np.random.default_rng(1).uniform(0, 0.3, (64, 64, 3)).astype(np.float32), engine)
    s.say("denoise:dct_low")
    r = s.say("only the sky")
    assert r.turn is None and "no sky" in r.text


def test_export_replays_to_the_same_pixels(engine, photo):
    s = Session(photo, engine, "example")
    for text, box in [("restore", None), ("not satisfied", None), ("only the box", (10, 10, 50, 40)),
                      ("stronger", None), ("undo", None), ("whole image", None)]:
        s.say(text, box=box)
    data = json.loads(json.dumps(s.export()))  # through JSON text, as a file would
    again = replay(data, photo, Engine("fixed+detect"))
    assert [t.sha256 for t in again.turns] == [t.sha256 for t in s.turns]
    assert np.array_equal(to_uint8(again.image), to_uint8(s.image))
    with pytest.raises(RestoreAgentError, match="not the one"):
        replay(data, photo[::-1], engine)
    data["turns"][1]["sha256"] = "0" * 64
    with pytest.raises(RestoreAgentError, match="turn 2"):
        replay(data, photo, engine)


def test_blend_the_best_results_is_a_convex_fusion_that_undoes_and_replays(engine, photo):
    s = Session(photo, engine, "example")
    base = s.say("restore").turn
    r = s.say("blend the best results")
    assert r.turn.fuse == FUSE_K and r.turn.plan == base.plan
    assert r.turn.steps[-1].task == "fuse" and len(r.turn.steps) == len(base.steps) + 1
    # the blend lies between the candidates it was given, pixel by pixel (the base plan is one of them)
    from restoreagent.fusion import candidate_plans, run_plans

    outs = np.stack(run_plans(photo, candidate_plans(base.plan, FUSE_K)))
    assert (s.image >= outs.min(0) - 1e-4).all() and (s.image <= outs.max(0) + 1e-4).all()
    boxed = s.say("only the box", box=(10, 10, 40, 30)).turn  # a new state: the plan on the box, not blended
    assert boxed.fuse == 0 and boxed.region == {"kind": "box", "box": [10, 10, 40, 30]}
    assert np.array_equal(s.image[70:, 100:], photo[70:, 100:])  # outside the box and its feather: the input
    assert "blended" in s.say("undo").text
    again = replay(json.loads(json.dumps(s.export())), photo, Engine("fixed+detect"))
    assert [t.sha256 for t in again.turns] == [t.sha256 for t in s.turns]


# -- the optional chat-model endpoint, against a fake local OpenAI-compatible server ------------------

class _FakeChat(BaseHTTPRequestHandler):
    calls: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeChat.calls.append(body)
        text = body["messages"][-1]["content"]
        if "photo looks murky" in text:
            call = {"name": "remove", "arguments": json.dumps({"tasks": ["denoise"]})}
            msg = {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": call}]}
        else:  # no tool call: the parser decides
            msg = {"role": "assistant", "content": "I am not sure."}
        out = json.dumps({"choices": [{"message": msg}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_chat_server():
    server = HTTPServer(("127.0.0.1", 0), _FakeChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_chat_model_tool_calls_become_actions_and_the_parser_stays_the_fallback(fake_chat_server, engine, photo):
    interpret = ChatModelInterpreter(fake_chat_server, model="tiny")
    assert interpret("the photo looks murky to me") == {"action": "remove", "tasks": ["denoise"]}
    sent = _FakeChat.calls[-1]
    assert sent["model"] == "tiny" and {t["function"]["name"] for t in sent["tools"]} >= {"alternative", "undo", "region"}
    assert interpret("still noisy") is None  # no tool call in the answer
    s = Session(photo, engine, interpret=interpret)
    s.say("denoise:dct_low, dejpeg:dejpeg_mild")
    assert s.say("the photo looks murky to me").turn.plan == parse_plan("dejpeg:dejpeg_mild")
    assert s.say("too dark").turn.plan.tasks[-1] == "brighten"  # the model said nothing usable: the parser did
    down = ChatModelInterpreter("http://127.0.0.1:9/v1", timeout=0.5)  # nothing listens there
    assert down("too dark") is None and down.last_error


def test_tool_calls_with_unknown_names_or_tasks_are_refused():
    assert to_action("explode", {}) is None
    assert to_action("more", {"task": "teleport"}) is None
    assert to_action("more", {"task": "denoise", "extra": 1}) == {"action": "more", "task": "denoise"}


def test_chat_command_talks_writes_and_replays(tmp_path, monkeypatch, capsys):
    from restoreagent.cli import main
    from restoreagent.imageio import save_image

    src = save_image(load_image(EXAMPLE)[:96, :96], tmp_path / "in.png")
    before = src.read_bytes()
    words = "denoise:dct_mid\nstill noisy\nonly the box 10,10,40,40\nundo\nnonsense words\nquit\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(words))
    out, conv = tmp_path / "out.png", tmp_path / "conv.json"
    code = main(["chat", str(src), "--planner", "fixed+detect", "-o", str(out), "--export", str(conv)])
    said = capsys.readouterr().out
    assert code == 0 and "dct_mid -> dct_high" in said and "did not understand" in said
    assert json.loads(conv.read_text())["turns"][-1]["plan"] == "denoise:dct_high"
    assert src.read_bytes() == before
    out2 = tmp_path / "again.png"
    assert main(["chat", str(src), "--planner", "fixed+detect", "--replay", str(conv), "-o", str(out2)]) == 0
    assert np.array_equal(load_image(out), load_image(out2))
    assert main(["chat", str(src), "--replay", str(src)]) == 2  # not a conversation: one line, exit 2
    assert "not a readable conversation" in capsys.readouterr().err
