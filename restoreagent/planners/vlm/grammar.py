"""Constrained decoding: the planner can only write answers that parse, with installed tools.

Two layers, both independent of any model:

- :class:`AnswerGrammar` -- a character-level automaton over the answers of
  :mod:`restoreagent.dialogue` given the tools installed now::

      [ ]saw: <none | distinct degradations in physical order> | plan: <none | task:tool, ...>
      [ ]rollback

  Plan steps name distinct tasks, each with an installed tool of that task; tasks already done
  (in the history) and rolled-back steps are left out; ``rollback`` only when a last step exists.
  An optional single leading space is accepted because chat templates such as SmolVLM's put the
  answer after ``"Assistant:"``.

- :class:`TokenConstraint` -- lifts the grammar onto any tokenizer's vocabulary (word-level,
  byte-level BPE, sentencepiece): each token's text is put in a character trie, and the allowed
  next tokens in a grammar state are found by walking the trie and the automaton together. Only
  tokens that keep the answer completable are allowed; end-of-sequence only when it is complete.
  :class:`AnswerLogitsProcessor` plugs it into ``model.generate``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence

from ...dialogue import ROLLBACK, History
from ...tasks import DEGRADATIONS, PHYSICAL_ORDER, TASK_FOR_DEGRADATION, TASKS
from ...tools.registry import tools_for_task

NONE = "none"
SAW = "saw:"
PLAN_SEP = " | plan:"

# Grammar nodes are small tuples (hashable):
#   ("start",) ("saw0",) ("saw", i) ("sawnone",) ("plan0",) ("tool", task, used) ("after", used)
#   ("more", used) ("end",)
_START = ("start",)
_END = ("end",)


class AnswerGrammar:
    """The answers the planner may give, as a character-level automaton.

    ``tools`` maps a task to its installed tool names (default: the registry now). Tasks with no
    tool cannot be planned. ``degradations`` are the names the planner may report.
    """

    def __init__(
        self,
        tools: Mapping[str, Sequence[str]] | None = None,
        degradations: Sequence[str] = DEGRADATIONS,
        allow_rollback: bool = True,
        banned_tasks: Iterable[str] = (),
        banned_steps: Iterable[tuple[str, str]] = (),
        leading_space: bool = True,
    ):
        if tools is None:
            tools = installed_tools()
        banned_steps = {tuple(s) for s in banned_steps}
        banned_tasks = set(banned_tasks)
        self.degradations = tuple(d for d in PHYSICAL_ORDER if d in set(degradations))
        self.tools = {
            t: tuple(x for x in tools.get(t, ()) if (t, x) not in banned_steps)
            for t in TASKS
            if t not in banned_tasks
        }
        self.tools = {t: v for t, v in self.tools.items() if v}
        self.tasks = tuple(self.tools)
        self.allow_rollback = allow_rollback
        self.leading_space = leading_space

    @classmethod
    def for_history(cls, history: History | None, tools=None, **kw) -> AnswerGrammar:
        """The grammar for a request: no repeated tasks, no retried rolled-back step."""
        done = tuple(history.done) if history else ()
        last = history.last_step if history else None
        banned_tasks = {s.task for s in done} | ({last.task} if last else set())
        banned_steps = {(s.task, s.tool) for s in (history.rolled_back if history else ())}
        return cls(
            tools, allow_rollback=last is not None, banned_tasks=banned_tasks, banned_steps=banned_steps, **kw
        )

    def key(self) -> tuple:
        return (self.degradations, tuple(sorted(self.tools.items())), self.allow_rollback, self.leading_space)

    # --- the automaton over literals -------------------------------------------------------
    @functools.cache  # noqa: B019 - grammars are few and live as long as the planner
    def options(self, node: tuple) -> tuple[tuple[str, tuple], ...]:
        """(literal, next node) pairs leaving ``node``; every next node can reach the end."""
        kind = node[0]
        out: list[tuple[str, tuple]] = []
        if kind == "start":
            heads = ["", " "] if self.leading_space else [""]
            for h in heads:
                out.append((h + SAW, ("saw0",)))
                if self.allow_rollback:
                    out.append((h + ROLLBACK, _END))
        elif kind == "saw0":
            out.append((" " + NONE, ("sawnone",)))
            out += [(" " + d, ("saw", i)) for i, d in enumerate(self.degradations)]
        elif kind == "saw":
            out += [(", " + d, ("saw", j)) for j, d in enumerate(self.degradations) if j > node[1]]
            out.append((PLAN_SEP, ("plan0",)))
        elif kind == "sawnone":
            out.append((PLAN_SEP, ("plan0",)))
        elif kind == "plan0":
            out.append((" " + NONE, _END))
            out += [(f" {t}:", ("tool", t, frozenset())) for t in self.tasks]
        elif kind == "tool":
            _, task, used = node
            out += [(x, ("after", used | {task})) for x in self.tools[task]]
        elif kind == "after":
            used = node[1]
            if any(t not in used for t in self.tasks):
                out.append((",", ("more", used)))
        elif kind == "more":
            used = node[1]
            out += [(f" {t}:", ("tool", t, used)) for t in self.tasks if t not in used]
        return tuple(out)

    @staticmethod
    def accepts_end(node: tuple) -> bool:
        return node[0] in ("end", "after")

    # --- character-level NFA: a state is a frozenset of (node, matched part of a literal) --
    def start(self) -> frozenset:
        return frozenset({(_START, "")})

    @functools.cache  # noqa: B019
    def step(self, state: frozenset, ch: str) -> frozenset:
        nxt = set()
        for node, partial in state:
            want = partial + ch
            for lit, to in self.options(node):
                if lit == want:
                    nxt.add((to, ""))
                elif lit.startswith(want):
                    nxt.add((node, want))
        return frozenset(nxt)

    def advance(self, state: frozenset, text: str) -> frozenset:
        for ch in text:
            if not state:
                break
            state = self.step(state, ch)
        return state

    def can_end(self, state: frozenset) -> bool:
        return any(p == "" and self.accepts_end(n) for n, p in state)

    def accepts(self, text: str) -> bool:
        return self.can_end(self.advance(self.start(), text))

    def alphabet(self) -> set[str]:
        chars = set(SAW + PLAN_SEP + NONE + ROLLBACK + ", :")
        for d in self.degradations:
            chars |= set(d)
        for t, xs in self.tools.items():
            chars |= set(t)
            for x in xs:
                chars |= set(x)
        return chars

    def max_chars(self) -> int:
        """An upper bound on an answer's length in characters."""
        saw = len(SAW) + 1 + sum(len(d) + 2 for d in self.degradations) + len(NONE)
        plan = len(PLAN_SEP) + len(NONE) + sum(len(t) + 3 + max(map(len, xs)) for t, xs in self.tools.items())
        return 1 + max(saw + plan, len(ROLLBACK))


def installed_tools() -> dict[str, list[str]]:
    """Task -> names of the tools installed now (the registry)."""
    return {t: tools_for_task(t) for t in TASKS}


def plannable_degradations(tools: Mapping[str, Sequence[str]]) -> list[str]:
    return [d for d in PHYSICAL_ORDER if tools.get(TASK_FOR_DEGRADATION[d])]


class _Trie:
    __slots__ = ("children", "ids")

    def __init__(self):
        self.children: dict[str, _Trie] = {}
        self.ids: list[int] = []


def token_strings(tokenizer) -> list[str | None]:
    """The text each token id adds when it follows other text (None: special or unusable).

    Uses the decode-after-an-anchor trick so that word-boundary markers ("Ġ", "▁") become the
    space they stand for, whatever the tokenizer family.
    """
    vocab_size = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    special |= {int(i) for i in getattr(tokenizer, "added_tokens_decoder", {}) or {}}
    backend = getattr(tokenizer, "_tokenizer", None)
    decoder = getattr(backend, "decoder", None) if backend is not None else None
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))

    def decode_tokens(toks: list[str]) -> str:
        if decoder is not None:
            return decoder.decode(toks)
        return tokenizer.convert_tokens_to_string(toks)

    anchor = None
    for cand in ("a", "Ġa", "▁a", "the", "Ġthe", "▁the"):
        if cand in tokenizer.get_vocab():
            anchor = cand
            break
    if anchor is None:  # any plain letter token
        anchor = next(t for i, t in enumerate(tokens) if i not in special and t and t.isalpha())
    base = decode_tokens([anchor])
    out: list[str | None] = []
    for i, tok in enumerate(tokens):
        if i in special or tok is None:
            out.append(None)
            continue
        s = decode_tokens([anchor, tok])
        out.append(s[len(base) :] if s.startswith(base) else None)
    return out


class TokenConstraint:
    """The grammar lifted to one tokenizer: allowed next token ids for a generated prefix."""

    def __init__(self, grammar: AnswerGrammar, strings: Sequence[str | None], eos_ids: Iterable[int]):
        self.grammar = grammar
        self.strings = strings
        self.eos_ids = tuple(sorted(set(int(i) for i in eos_ids)))
        alphabet = grammar.alphabet()
        self.root = _Trie()
        for i, s in enumerate(strings):
            if not s or not set(s) <= alphabet:
                continue
            node = self.root
            for ch in s:
                node = node.children.setdefault(ch, _Trie())
            node.ids.append(i)
        self._allowed: dict[frozenset, tuple[int, ...]] = {}
        self._live: dict[frozenset, bool] = {}
        self._prefix_state: dict[tuple[int, ...], frozenset | None] = {(): grammar.start()}

    def _candidates(self, state: frozenset) -> list[tuple[int, frozenset]]:
        """Tokens whose whole text the automaton accepts from ``state``, with the state after."""
        out = []
        stack = [(self.root, state)]
        g = self.grammar
        while stack:
            node, st = stack.pop()
            for ch, child in node.children.items():
                nst = g.step(st, ch)
                if nst:
                    out += [(i, nst) for i in child.ids]
                    if child.children:
                        stack.append((child, nst))
        return out

    def live(self, state: frozenset, depth: int = 0) -> bool:
        """Can some token sequence from ``state`` complete an answer?"""
        if state in self._live:
            return self._live[state]
        if self.grammar.can_end(state) and self.eos_ids:
            self._live[state] = True
            return True
        self._live[state] = False  # guards cycles (none exist: every token adds text)
        ok = any(self.live(nst, depth + 1) for _, nst in self._candidates(state))
        self._live[state] = ok
        return ok

    def allowed(self, state: frozenset) -> tuple[int, ...]:
        if state not in self._allowed:
            ids = [i for i, nst in self._candidates(state) if self.live(nst)]
            if self.grammar.can_end(state):
                ids += list(self.eos_ids)
            self._allowed[state] = tuple(sorted(set(ids)))
        return self._allowed[state]

    def state_after(self, ids: Sequence[int]) -> frozenset | None:
        """The automaton state after these generated ids (None: ended or left the grammar)."""
        key = tuple(int(i) for i in ids)
        if key in self._prefix_state:
            return self._prefix_state[key]
        prev = self.state_after(key[:-1])
        last = key[-1]
        if prev is None or last in self.eos_ids:
            st = None
        else:
            s = self.strings[last] if last < len(self.strings) else None
            st = self.grammar.advance(prev, s) if s else frozenset()
            st = st or None
        self._prefix_state[key] = st
        return st

    def allowed_after(self, ids: Sequence[int]) -> tuple[int, ...] | None:
        """Allowed next ids after ``ids`` (None: the answer has ended; anything goes)."""
        st = self.state_after(ids)
        return None if st is None else self.allowed(st)

    def spellable(self, text: str) -> bool:
        """Can ``text`` be written as a sequence of this vocabulary's tokens?"""
        reach = [False] * (len(text) + 1)
        reach[0] = True
        for i in range(len(text)):
            if not reach[i]:
                continue
            node = self.root
            for j in range(i, len(text)):
                node = node.children.get(text[j])
                if node is None:
                    break
                if node.ids:
                    reach[j + 1] = True
        return reach[-1]

    def unnameable_tools(self) -> list[str]:
        """Installed ``task:tool`` steps this vocabulary cannot write (the model never learned them)."""
        return [
            f"{t}:{x}"
            for t, xs in self.grammar.tools.items()
            for x in xs
            if not self.spellable(f" {t}:{x}") and not self.spellable(f"{t}:{x}")
        ]

    def text(self, ids: Sequence[int]) -> str:
        """The answer text of generated ids (up to the first end-of-sequence)."""
        parts = []
        for i in ids:
            i = int(i)
            if i in self.eos_ids:
                break
            s = self.strings[i] if i < len(self.strings) else None
            parts.append(s or "")
        return "".join(parts)


def make_logits_processor(constraint: TokenConstraint, prompt_length: int):
    """A logits processor ``(input_ids, scores) -> scores`` applying ``constraint`` to tokens after
    ``prompt_length``, for ``transformers``' ``generate`` and the lean planner's (a plain callable, so
    that planning does not import transformers)."""
    import torch

    class AnswerLogitsProcessor:
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            mask = torch.full_like(scores, float("-inf"))
            for b in range(input_ids.shape[0]):
                allowed = constraint.allowed_after(input_ids[b, prompt_length:].tolist())
                if allowed is None:
                    mask[b] = 0.0
                elif allowed:
                    mask[b, list(allowed)] = 0.0
                else:  # cannot happen with a live grammar; end rather than babble
                    mask[b, list(constraint.eos_ids)] = 0.0
            return scores + mask

    return AnswerLogitsProcessor()
