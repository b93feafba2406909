"""Optional: free-form words through an OpenAI-compatible chat endpoint (a local llama.cpp or ollama server).

The model is offered the same actions as the offline parser (:mod:`.intents`) as tools, and its
tool call becomes the action. Anything that goes wrong (no server, a timeout, an answer without a
tool call, a call with unknown arguments) returns ``None`` and the offline parser decides instead,
so a configured endpoint can only add understanding, never take it away.

    restoreagent chat photo.png --llm-url http://127.0.0.1:8080/v1 [--llm-model NAME]
    RESTOREAGENT_LLM_URL=http://127.0.0.1:11434/v1 restoreagent serve

Plain HTTP with the standard library (no client package): one POST to ``{url}/chat/completions``.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request

from ..tasks import TASKS

log = logging.getLogger(__name__)

URL_ENV, MODEL_ENV = "RESTOREAGENT_LLM_URL", "RESTOREAGENT_LLM_MODEL"

SYSTEM = (
    "You help a person restore a photo with an image-restoration agent. Map what they say to exactly "
    "one tool call. Tasks: " + ", ".join(TASKS) + ". 'sharpen' means motion_deblur, defocus_deblur and "
    "super_resolve. If nothing fits, call help."
)

_TASK = {"type": "string", "enum": list(TASKS)}


def _tool(name: str, description: str, properties: dict | None = None, required=()) -> dict:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties or {}, "required": list(required)}}}


# The actions of restoreagent.conversation.intents, as a tool-calling schema.
TOOLS = [
    _tool("restore", "Restore the photo: the planner's plan, or the given plan", {
        "plan": {"type": "string", "description": "optional plan text, e.g. 'denoise:unet_denoise_mid, dejpeg:unet_dejpeg_mild'"}}),
    _tool("alternative", "The person is not satisfied: try the next alternative plan"),
    _tool("more", "More of a task: a stronger variant, or add the step (e.g. 'still noisy' -> denoise, 'too dark' -> brighten)",
          {"task": _TASK}, ["task"]),
    _tool("less", "Less of a task: a milder variant, or drop it (e.g. 'too bright' -> brighten, 'too smooth' -> denoise)",
          {"task": _TASK}, ["task"]),
    _tool("stronger", "A stronger variant of the tools (one task, or every step)", {"task": _TASK}),
    _tool("weaker", "A milder variant of the tools (one task, or every step)", {"task": _TASK}),
    _tool("remove", "Remove tasks from the plan (e.g. 'don't sharpen')",
          {"tasks": {"type": "array", "items": _TASK}}, ["tasks"]),
    _tool("set_tool", "Use a named tool for its task", {"task": _TASK, "tool": {"type": "string"}}, ["tool"]),
    _tool("region", "Restore only a region: the drawn box, the sky, or the whole photo again",
          {"kind": {"type": "string", "enum": ["box", "sky", "whole"]}}, ["kind"]),
    _tool("undo", "Undo the last change"),
    _tool("help", "The request is not about restoring the photo, or is unclear"),
]


class ChatModelInterpreter:
    """``text -> action dict or None`` through a chat endpoint's tool calls."""

    def __init__(self, url: str, model: str | None = None, timeout: float = 20.0):
        self.url = url.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/chat/completions"
        self.model = model or "default"
        self.timeout = timeout
        self.last_error: str | None = None

    @classmethod
    def from_env(cls, url: str | None = None, model: str | None = None) -> ChatModelInterpreter | None:
        url = url or os.environ.get(URL_ENV)
        return cls(url, model or os.environ.get(MODEL_ENV)) if url else None

    def __call__(self, text: str) -> dict | None:
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
            "tools": TOOLS,
            "tool_choice": "auto",
            "temperature": 0,
        }
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as r:
                answer = json.loads(r.read())
            call = answer["choices"][0]["message"]["tool_calls"][0]["function"]
            args = call.get("arguments") or {}
            args = json.loads(args) if isinstance(args, str) else dict(args)
        except (OSError, urllib.error.URLError, ValueError, KeyError, IndexError, TypeError) as e:
            self.last_error = f"{type(e).__name__}: {e}"
            log.info("chat model gave no usable tool call (%s); the offline parser decides", self.last_error)
            return None
        return to_action(call.get("name"), args)


def to_action(name, args: dict) -> dict | None:
    """A tool call as an action dict, or None when it names no known action or a bad task."""
    known = {t["function"]["name"]: t["function"]["parameters"]["properties"] for t in TOOLS}
    if name not in known:
        return None
    action = {"action": name, **{k: v for k, v in args.items() if k in known[name]}}
    tasks = [action["task"]] if action.get("task") else list(action.get("tasks") or [])
    if any(t not in TASKS for t in tasks):
        return None
    if name == "help":  # the model did not map it; let the offline parser try its rules
        return None
    return action
