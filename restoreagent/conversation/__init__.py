"""Talking to the agent about one photo: plain words -> actions -> restored pictures, turn by turn.

- :mod:`.intents`  the offline parser: "still noisy", "not satisfied", "only the box" -> action dicts
- :mod:`.llm`      optional: free-form text through an OpenAI-compatible chat endpoint's tool calls
- :mod:`.session`  one photo's conversation: every turn, undo, export/replay as JSON
- :mod:`.engine`   the thin adapter to the agent (planner, detector, tools, quality scores)

Used by ``restoreagent chat`` (a terminal) and ``restoreagent serve`` (the web page).
"""

from .engine import Engine
from .intents import ACTIONS, EXAMPLES, parse_intent
from .session import Reply, Session, Turn, replay

__all__ = ["ACTIONS", "EXAMPLES", "Engine", "Reply", "Session", "Turn", "parse_intent", "replay"]
