"""``restoreagent chat IMAGE``: the same conversation as the page, in a terminal.

Lines are read from standard input (a person at a prompt, or a file piped in), so a conversation
can also be scripted. Besides plain words: ``save PATH`` writes the current picture, ``export PATH``
the conversation as JSON, ``quit`` ends (end of input too). ``-o OUT`` writes the last picture at
the end, ``--export JSON`` the conversation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import RestoreAgentError
from ..imageio import atomic_write_text, check_output_path, save_image
from .session import Session

PROMPT = "you> "


def show_turn(session: Session, out=sys.stdout) -> None:
    turn = session.current
    if turn is None:
        return
    for i, s in enumerate(turn.steps, 1):
        print(f"  step {i}: {s.task:<15} {s.tool:<22} {s.seconds * 1000:7.0f} ms", file=out)
    before = session.look()["scores"]
    row = ", ".join(f"{k} {before[k]} -> {turn.scores[k]}" for k in ("noise", "exposure", "piqe") if k in turn.scores)
    print(f"  scores (lower is better): {row}", file=out)


def run_chat(session: Session, lines, output: str | None, export: str | None, input_path: str,
             out=sys.stdout, prompt: bool = True) -> int:
    """Talk until ``quit`` or the end of ``lines``; write ``output``/``export`` at the end."""
    look = session.look()
    d = look["detection"]
    seen = ", ".join(f"{k} ({d['probabilities'][k]:.2f})" for k in d["degradations"]) or "nothing"
    print(f"{input_path}: the detector sees {seen}. Say \"restore\", or \"help\" for examples.", file=out)
    if prompt:
        print(PROMPT, end="", file=out, flush=True)
    for line in lines:
        text = line.strip()
        if not text:
            pass
        elif text in ("quit", "exit", "q"):
            break
        elif text.split()[0] in ("save", "export") and len(text.split()) == 2:
            word, path = text.split()
            try:
                _write(session, path if word == "save" else None, path if word == "export" else None, input_path)
                print(f"agent: wrote {path}", file=out)
            except RestoreAgentError as e:
                print(f"agent: {e}", file=out)
        else:
            reply = session.say(text)
            print(f"agent: {reply.text}", file=out)
            if reply.turn is not None:
                show_turn(session, out)
        if prompt:
            print(PROMPT, end="", file=out, flush=True)
    if prompt:
        print(file=out)
    _write(session, output, export, input_path)
    for path in (output, export):
        if path:
            print(f"wrote {path}", file=out)
    return 0


def _write(session: Session, output: str | None, export: str | None, input_path: str) -> None:
    if output:
        save_image(session.image, check_output_path(output, input_path))
    if export:
        path = Path(export)
        if path.resolve() == Path(input_path).resolve():
            raise RestoreAgentError(f"{export}: refusing to overwrite the input")
        atomic_write_text(path, json.dumps(session.export(), indent=2))
