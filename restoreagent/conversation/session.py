"""A conversation about one photo: every turn kept, undo, export to JSON that replays to the same pixels.

A turn's *state* is the plan in force and the region it applies to; the picture is a function of
the input and that state only (the tools are deterministic), never of the previous picture. That
keeps undo trivial (go back to an earlier state) and makes an exported conversation replay to the
same bytes: :func:`replay` re-applies each recorded state and checks each result's checksum.

    session = Session(image, Engine())
    session.say("restore")            # the planner's plan
    session.say("not satisfied")      # the next alternative plan
    session.say("still noisy")        # a stronger denoiser (or a denoising step added)
    session.say("only the box", box=(40, 40, 120, 80))
    session.say("undo")
    session.export()                  # JSON-able dict; replay(data, image, Engine()) rebuilds it
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import RestoreAgentError
from ..imageio import to_uint8
from ..plan import Plan, Step, parse_plan, validate_plan
from ..tasks import DEGRADATION_FOR_TASK, TASKS
from .engine import (
    Engine,
    StepResult,
    add_step,
    box_mask,
    ladder,
    mask_from_png,
    mask_to_png,
    sky_mask,
    tool_choices,
)
from .intents import ACTIONS, EXAMPLES, parse_intent

FORMAT = "restoreagent-conversation/1"
FUSE_K = 8  # results "blend the best results" fuses: the plan and up to 7 variants (the whole-photo mix heads
# gain most with all of them: docs/fusion.md)
KEEP_BYTES = 512 << 20  # pictures kept per session (older states are recomputed when looked at again)
Progress = Callable[[int, int, Step], None]


def pixels_sha256(image: np.ndarray) -> str:
    """Checksum of the 8-bit pixels a saved PNG holds (what replay must reproduce)."""
    return hashlib.sha256(np.ascontiguousarray(to_uint8(image)).tobytes()).hexdigest()


@dataclass
class Turn:
    """One exchange: what was said, what it meant, the agent's reply and the state it left."""

    said: str
    action: dict
    reply: str
    plan: Plan
    # None: the whole photo; {"kind": "box", "box": [x, y, w, h]}, {"kind": "sky"} or
    # {"kind": "mask", "png": base64 PNG of the brushed mask at the photo's size}
    region: dict | None
    steps: list[StepResult]
    image: np.ndarray | None = field(repr=False)  # the picture after this turn; None: forgotten (Session.pictures)
    scores: dict = field(default_factory=dict)
    alternative: int = 0  # index in the session's alternatives of the plan this turn started from
    parent: int | None = None  # the turn whose state "undo" returns to (None: the input photo)
    sha256: str = ""
    fuse: int = 0  # > 0: the last picture blends the plan and fuse-1 neighbours (learned fusion)

    def to_json(self) -> dict:
        return {
            "said": self.said,
            "action": self.action,
            "reply": self.reply,
            "plan": self.plan.text(),
            "region": self.region,
            "alternative": self.alternative,
            "parent": self.parent,
            "steps": [s.to_json() for s in self.steps],
            "scores": self.scores,
            "sha256": self.sha256,
            "fuse": self.fuse,
        }


@dataclass
class Reply:
    """What :meth:`Session.say` returns: the reply, and the new turn when the picture changed state."""

    text: str
    turn: Turn | None = None
    action: dict | None = None


@dataclass
class Session:
    """One photo, one engine, the list of turns. Not thread-safe (one job at a time per session)."""

    input: np.ndarray
    engine: Engine
    name: str = "photo"
    interpret: Callable[[str], dict | None] | None = None  # text -> action; default: the offline parser
    turns: list[Turn] = field(default_factory=list)
    detection: dict | None = None
    input_scores: dict | None = None
    _alternatives: list[Plan] | None = None
    _auto: tuple[list[str], Plan] | None = None
    _cache: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input = np.ascontiguousarray(self.input, dtype=np.float32)
        self._tools = {t: task for task in TASKS for t in tool_choices(task)}

    # -- what the page and the terminal show -----------------------------------------------------
    @property
    def current(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    @property
    def image(self) -> np.ndarray:
        """The current picture (the input before the first turn)."""
        return self.pictures(len(self.turns) - 1)[-1] if self.turns else self.input

    def look(self) -> dict:
        """The detector's view and the input's scores (computed once)."""
        if self.detection is None:
            self.detection = self.engine.detect(self.input)
        if self.input_scores is None:
            self.input_scores = self.engine.assess(self.input)
        return {"detection": self.detection, "scores": self.input_scores}

    def auto(self) -> tuple[list[str], Plan]:
        if self._auto is None:
            self._auto = self.engine.plan(self.input)
        return self._auto

    def alternatives(self) -> list[Plan]:
        if self._alternatives is None:
            self._alternatives = self.engine.alternatives(self.input, self.auto()[1], self.look()["detection"])
        return self._alternatives

    # -- talking ---------------------------------------------------------------------------------
    def say(self, text: str, box=None, on_step: Progress | None = None, mask: str | None = None) -> Reply:
        """Interpret ``text`` and act on it. ``box`` (x, y, w, h) and ``mask`` (a PNG, base64) are
        what the page has drawn or brushed, if anything."""
        action = None
        if self.interpret is not None:
            action = self.interpret(text)
        if action is None:
            action = parse_intent(text, self._tools)
        if action is None:
            return Reply(f"I did not understand {text.strip()!r}. Try: {EXAMPLES}.")
        if action.get("action") == "region" and action.get("kind") == "box" and "box" not in action:
            if box is None:
                return Reply("Draw a box on the photo first (or give it as x,y,w,h), then say \"only the box\".",
                             action=action)
            action = {**action, "box": list(box)}
        if action.get("action") == "region" and action.get("kind") == "mask" and "mask" not in action:
            if not mask:
                return Reply("Brush over the part to restore first, then say \"only the brushed area\".", action=action)
            action = {**action, "mask": mask}
        return self.act(action, said=text, on_step=on_step)

    def act(self, action: dict, said: str | None = None, on_step: Progress | None = None) -> Reply:
        """Carry out an action dict (from the parser, a chat model's tool call or a page button)."""
        name = action.get("action")
        said = said if said is not None else name
        if name not in ACTIONS:
            return Reply(f"unknown action {name!r}; actions: {', '.join(ACTIONS)}", action=action)
        if name == "help":
            return Reply(f"Say what you want in plain words, for example: {EXAMPLES}.", action=action)
        if name == "undo":
            return self._undo(said, action)
        try:
            change = self._decide(name, action)
        except RestoreAgentError as e:
            return Reply(str(e), action=action)
        except (TypeError, ValueError) as e:  # malformed arguments from a chat model or a hand-made request
            return Reply(f"the action {name!r} has arguments I cannot use ({e})", action=action)
        if isinstance(change, str):  # nothing to do; say why
            return Reply(change, action=action)
        plan, region, alternative, reply, *fuse = change
        turn = self._make_turn(said, action, reply, plan, region, alternative, self._last_index(), on_step, *fuse)
        return Reply(reply, turn, action)

    def _last_index(self) -> int | None:
        return len(self.turns) - 1 if self.turns else None

    def _decide(self, name: str, action: dict):
        """The new (plan, region, alternative index, reply) an action asks for, or a str: why not."""
        cur = self.current
        plan = cur.plan if cur else self.auto()[1]
        region = cur.region if cur else None
        alternative = cur.alternative if cur else 0
        if name == "restore":
            if action.get("plan") is not None:
                new = parse_plan(str(action["plan"]))
                return new, region, alternative, f"Running your plan: {new.text()}."
            seen, new = self.auto()
            return new, region, 0, f"I see {', '.join(seen) or 'nothing wrong'}; plan: {new.text()}."
        if name == "alternative":
            plans = self.alternatives()
            nxt = alternative + 1
            if nxt >= len(plans):
                return f"No more alternatives: I have tried all {len(plans)} plans I have. Say \"undo\" to go back."
            return plans[nxt], region, nxt, f"Alternative {nxt} of {len(plans) - 1}: {plans[nxt].text()}."
        if name == "region":
            return self._decide_region(action, plan, alternative)
        if name == "fuse":
            k = int(action.get("k") or FUSE_K)
            if not 2 <= k <= 8:
                raise RestoreAgentError(f"blend 2 to 8 results, not {k}")
            if not plan:
                return "There is nothing to blend: the plan is empty. Say \"restore\" first."
            # a plan may have fewer variants than asked for: the blend step names the ones it used
            return plan, region, alternative, f"Blending {plan.text()} with up to {k - 1} of its nearest variants.", k
        if name == "remove":
            tasks = [t for t in action.get("tasks") or [action.get("task")] if t]
            gone = [s for s in plan if s.task in tasks]
            if not gone:
                return f"The plan ({plan.text()}) has no {' or '.join(tasks)} step to remove."
            new = Plan(tuple(s for s in plan if s.task not in tasks))
            return new, region, alternative, f"Removed {', '.join(s.text() for s in gone)}; plan: {new.text()}."
        if name == "set_tool":
            task, tool = action.get("task"), action.get("tool")
            if not task and tool in self._tools:
                task = self._tools[tool]
            step = Step(str(task), str(tool))
            validate_plan(Plan((step,)))  # an unknown tool or task: a message listing what exists
            base = plan if task in plan.tasks else add_step(plan, task)
            new = Plan(tuple(step if s.task == task else s for s in base))
            return new, region, alternative, f"Using {tool} for {task}; plan: {new.text()}."
        # more / less / stronger / weaker
        task = action.get("task")
        if not task and action.get("tasks"):  # a family ("blurry"): the one in the plan, else the likeliest
            family = list(action["tasks"])
            in_plan = [t for t in family if t in plan.tasks]
            probs = self.look()["detection"]["probabilities"]
            task = in_plan[0] if in_plan else max(family, key=lambda t: probs.get(DEGRADATION_FOR_TASK[t], 0.0))
        return self._adjust(name, task, plan, region, alternative)

    def _adjust(self, name: str, task: str | None, plan: Plan, region, alternative):
        if task is not None and task not in TASKS:
            raise RestoreAgentError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        up = name in ("more", "stronger")
        targets = [s for s in plan if task is None or s.task == task]
        if not targets:
            if task is not None and name == "more":
                new = add_step(plan, task)
                return new, region, alternative, f"Added a {task} step; plan: {new.text()}."
            what = f"no {task} step" if task else "no step"
            return f"The plan ({plan.text()}) has {what} to make {'stronger' if up else 'weaker'}."
        steps, changed, stuck = list(plan.steps), [], []
        for i, s in enumerate(plan.steps):
            if s not in targets:
                continue
            rungs = ladder(s.task, s.tool)
            j = rungs.index(s.tool) + (1 if up else -1)
            if 0 <= j < len(rungs):
                steps[i] = Step(s.task, rungs[j])
                changed.append(f"{s.tool} -> {rungs[j]}")
            else:
                stuck.append(s)
        if not changed:
            if name == "less" and task is not None:  # the mildest variant is still too much: drop the step
                new = Plan(tuple(s for s in plan if s.task != task))
                return new, region, alternative, f"{stuck[0].tool} is already the mildest; removed {task}. Plan: {new.text()}."
            which = ", ".join(s.tool for s in stuck)
            return (f"{which} is already the {'strongest' if up else 'mildest'} variant I have "
                    f"(variants: {', '.join(ladder(stuck[0].task, stuck[0].tool))}); pick another tool by name, e.g. "
                    f"{', '.join(t for t in tool_choices(stuck[0].task) if t != stuck[0].tool)[:120]}.")
        new = Plan(tuple(steps))
        return new, region, alternative, f"{'Stronger' if up else 'Weaker'}: {', '.join(changed)}; plan: {new.text()}."

    def _decide_region(self, action: dict, plan: Plan, alternative: int):
        kind = action.get("kind")
        if kind == "whole":
            return plan, None, alternative, f"The whole photo again; plan: {plan.text()}."
        if kind == "sky":
            if not sky_mask(self.input).any():
                return ("I found no sky at the top of this photo (a colour-and-smoothness heuristic: no "
                        "segmentation model is installed). Draw a box around it and say \"only the box\".")
            return plan, {"kind": "sky"}, alternative, f"Only the sky; plan: {plan.text()}."
        if kind == "box":
            box = action.get("box")
            if box is None or len(box) != 4:
                raise RestoreAgentError("a box is x,y,w,h (4 numbers)")
            x, y, w, h = (int(round(float(v))) for v in box)
            H, W = self.input.shape[:2]
            x, y = max(0, x), max(0, y)
            w, h = min(w, W - x), min(h, H - y)
            if w < 1 or h < 1:
                return f"The box {list(box)} is empty or outside the {W}x{H} photo."
            return plan, {"kind": "box", "box": [x, y, w, h]}, alternative, f"Only the box {x},{y} {w}x{h}; plan: {plan.text()}."
        if kind == "mask":
            mask = mask_from_png(action.get("mask") or "", self.input.shape[:2])
            if not mask.any():
                return "The brushed mask is empty: brush over the part to restore first."
            share = f"{100 * mask.mean():.0f}%"
            return (plan, {"kind": "mask", "png": mask_to_png(mask)}, alternative,
                    f"Only the brushed area ({share} of the photo); plan: {plan.text()}.")
        raise RestoreAgentError(f"unknown region kind {kind!r}; kinds: box, mask, sky, whole")

    def _undo(self, said: str, action: dict) -> Reply:
        cur = self.current
        if cur is None or (cur.parent is None and not cur.plan and cur.region is None):
            return Reply("Nothing to undo: this is the photo as it came.", action=action)
        if cur.parent is None:
            plan, region, alternative, parent, reply = Plan(), None, 0, None, "Undone; back to the photo as it came."
            fuse = 0
        else:
            back = self.turns[cur.parent]
            plan, region, alternative, parent = back.plan, back.region, back.alternative, back.parent
            fuse = back.fuse
            where = f" on the {region['kind']}" if region else ""
            reply = f"Undone; back to {plan.text()}{where}{' (blended)' if fuse else ''}."
        turn = self._make_turn(said, action, reply, plan, region, alternative, parent, None, fuse)
        return Reply(reply, turn, action)

    # -- doing -----------------------------------------------------------------------------------
    def _make_turn(self, said, action, reply, plan, region, alternative, parent, on_step, fuse: int = 0) -> Turn:
        steps = self.render(plan, region, on_step, fuse)
        image = steps[-1].image if steps else self.input
        scores = self.engine.assess(image)
        turn = Turn(said, action, reply, plan, region, steps, image, scores, alternative, parent, pixels_sha256(image), fuse)
        self.turns.append(turn)
        return turn

    def render(self, plan: Plan, region: dict | None, on_step: Progress | None = None, fuse: int = 0) -> list[StepResult]:
        """The steps of ``plan`` applied to the input (whole, or only ``region``), then with ``fuse``
        the blended picture; cached by state."""
        key = (plan.text(), repr(region), fuse)
        if key not in self._cache:
            if fuse:
                mask = None if region is None else self.region_mask(region)
                steps = self.engine.execute_fused(self.input, plan, fuse, mask, on_step)
            elif region is None:
                steps = self.engine.execute(self.input, plan, on_step)
            else:
                steps = self.engine.execute_region(self.input, plan, self.region_mask(region), on_step)
            self._cache[key] = steps
            self._forget_old_pictures()
        return self._cache[key]

    def pictures(self, index: int) -> list[np.ndarray]:
        """Turn ``index``'s pictures: the input, then the picture after each step.

        Old turns' pictures are forgotten to bound memory (:data:`KEEP_BYTES`) and computed again
        here when asked for: a turn's pictures are a function of the input and its state.
        """
        t = self.turns[index]
        if t.steps and any(s.image is None for s in t.steps):
            t.steps = self.render(t.plan, t.region, fuse=t.fuse)
        return [self.input] + [s.image for s in t.steps]

    def _forget_old_pictures(self) -> None:
        """Keep the cache's newest states under :data:`KEEP_BYTES` (the newest always stays)."""
        used = 0
        for key in reversed(list(self._cache)):
            size = sum(s.image.nbytes for s in self._cache[key] if s.image is not None)
            if used and used + size > KEEP_BYTES:
                for turn in self.turns:  # the turns drop their references too
                    if (turn.plan.text(), repr(turn.region), turn.fuse) == key:
                        turn.steps = [StepResult(s.task, s.tool, s.seconds, None) for s in turn.steps]
                        turn.image = None
                del self._cache[key]
            else:
                used += size

    def region_mask(self, region: dict) -> np.ndarray:
        if region["kind"] == "box":
            return box_mask(self.input.shape[:2], region["box"])
        if region["kind"] == "sky":
            return sky_mask(self.input)
        if region["kind"] == "mask":
            return mask_from_png(region["png"], self.input.shape[:2])
        raise RestoreAgentError(f"unknown region kind {region['kind']!r}")

    # -- keeping -----------------------------------------------------------------------------------
    def export(self) -> dict:
        """The conversation as JSON: the input's checksum, the planner, every turn with its state."""
        h, w = self.input.shape[:2]
        return {
            "format": FORMAT,
            "input": {"name": self.name, "width": w, "height": h, "sha256": pixels_sha256(self.input)},
            "planner": self.engine.planner_name,
            "detection": self.detection,
            "turns": [t.to_json() for t in self.turns],
        }

    def report(self) -> dict:
        """What a download carries beside the picture: the plan, the steps, scores before and after."""
        cur = self.current
        return {
            "input": self.name,
            "plan": (cur.plan if cur else Plan()).to_json(),
            "region": cur.region if cur else None,
            "steps": [s.to_json() for s in cur.steps] if cur else [],
            "detection": self.look()["detection"],
            "scores_before": self.look()["scores"],
            "scores_after": cur.scores if cur else self.look()["scores"],
            "sha256": cur.sha256 if cur else pixels_sha256(self.input),
        }


def replay(data: dict, image: np.ndarray, engine: Engine | None = None, name: str | None = None) -> Session:
    """Rebuild a session from :meth:`Session.export` and the same input photo.

    Each turn's recorded state (plan, region) is applied again, not its words re-parsed, so the
    replay does not depend on the parser or a chat model; every result's checksum is compared with
    the recorded one and a difference is an error naming the turn.
    """
    if data.get("format") != FORMAT:
        raise RestoreAgentError(f"not a restoreagent conversation (format {data.get('format')!r}, expected {FORMAT})")
    if pixels_sha256(image) != data["input"]["sha256"]:
        raise RestoreAgentError("this photo is not the one the conversation was about (checksum differs)")
    session = Session(image, engine or Engine(data.get("planner", "vlm")), name or data["input"]["name"])
    for i, t in enumerate(data["turns"]):
        plan = parse_plan(t["plan"])
        turn = session._make_turn(
            t["said"], t["action"], t["reply"], plan, t["region"], t["alternative"], t["parent"], None, t.get("fuse", 0)
        )
        if t.get("sha256") and turn.sha256 != t["sha256"]:
            raise RestoreAgentError(f"turn {i + 1} ({t['said']!r}) did not replay to the recorded pixels")
    return session
