"""``restoreagent serve``: a local page to restore photos by talking to the agent.

FastAPI (a small JSON API) + one static page of plain HTML/JS, rather than Gradio: it starts in
about a second, adds two small packages (fastapi, uvicorn) instead of Gradio's dozens, serves a page
a browser test can drive by element ids, and the job queue (:mod:`.jobs`) is ours to bound.

Every photo uploaded is a :class:`~restoreagent.conversation.Session`; its work goes through the
bounded queue and the page polls the job's progress. The API (all JSON unless said):

- ``POST /api/upload?name=FILE`` (raw bytes)      -> a session, or 400/413/415 with ``error``
- ``POST /api/sessions/{sid}/look``               -> job: detector, scores, the planner's plan
- ``POST /api/sessions/{sid}/say`` ``{text, box}``  -> job: the words acted on
- ``POST /api/sessions/{sid}/act`` ``{action...}``  -> job: a button's action (set_tool, undo, ...)
- ``GET  /api/jobs/{jid}``                          -> status, progress, and the session when done
- ``GET  /api/sessions/{sid}/turns/{t}/{s}.png``    -> the picture after step s of turn t (s=0: input)
- ``GET  /api/sessions/{sid}/download``             -> ZIP: result PNG, plan, report, conversation
A full queue answers 503 with ``{"error": "busy: ...", "busy": true}``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..conversation import Engine, Session
from ..conversation.engine import tool_choices
from ..errors import ImageError, RestoreAgentError
from ..imageio import load_image, png_bytes
from ..tasks import PHYSICAL_TASK_ORDER
from .jobs import Busy, Job, JobQueue

log = logging.getLogger(__name__)

MAX_UPLOAD_MB = 40  # bytes of one upload; larger bodies are refused before they are read in full
MAX_PIXELS = 24_000_000  # a session keeps each step's picture in memory: 24 MP is ~290 MB per step
MAX_SESSIONS = 16  # the oldest session is forgotten beyond this (its pictures are freed)
PNG_BYTES = 256 << 20  # encoded pictures kept for the page; the oldest are encoded again when asked for
STATIC = ("index.html", "app.js", "style.css")


class Sessions:
    """The live sessions, oldest forgotten first, each with its PNGs encoded once."""

    def __init__(self, limit: int):
        self.limit = limit
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._png: dict[tuple, bytes] = {}
        self._lock = threading.Lock()

    def add(self, session: Session) -> str:
        sid = uuid.uuid4().hex[:12]
        session.lock = threading.RLock()  # the worker's job and a picture request never touch it at once
        with self._lock:
            self._items[sid] = session
            while len(self._items) > self.limit:
                old, _ = self._items.popitem(last=False)
                self._png = {k: v for k, v in self._png.items() if k[0] != old}
        return sid

    def get(self, sid: str) -> Session | None:
        return self._items.get(sid)

    def png(self, sid: str, turn: int, step: int) -> bytes | None:
        s = self.get(sid)
        if s is None or not -1 <= turn < len(s.turns):
            return None
        t = s.turns[turn] if turn >= 0 else None
        if t is not None and not 0 <= step <= len(t.steps):
            return None
        key = (sid, turn, step)
        if key not in self._png:
            with s.lock:  # a forgotten picture is computed again (Session.pictures)
                image = s.input if t is None else s.pictures(turn)[step]
            data = png_bytes(image, compress_level=1)  # fast to encode; the page is local
            with self._lock:
                self._png[key] = data
                while sum(len(v) for v in self._png.values()) > PNG_BYTES and len(self._png) > 1:
                    self._png.pop(next(iter(self._png)))
            return data
        return self._png[key]


def view(sid: str, s: Session) -> dict:
    """What the page draws for a session."""
    h, w = s.input.shape[:2]
    base = f"/api/sessions/{sid}"
    turns = []
    for i, t in enumerate(s.turns):
        turns.append({
            **t.to_json(),
            "index": i,
            "image": f"{base}/turns/{i}/{len(t.steps)}.png",
            "step_images": [f"{base}/turns/{i}/{k}.png" for k in range(1, len(t.steps) + 1)],
        })
    look = None
    if s.detection is not None:
        seen, plan = s.auto()
        look = {"detection": s.detection, "scores": s.input_scores, "degradations": seen, "plan": plan.text()}
    return {
        "id": sid,
        "name": s.name,
        "width": w,
        "height": h,
        "input": f"{base}/turns/-1/0.png",
        "look": look,
        "turns": turns,
        "current": len(turns) - 1,
        "download": f"{base}/download",
        "tools": {task: tool_choices(task) for task in PHYSICAL_TASK_ORDER},
    }


def create_app(
    engine: Engine | None = None,
    max_waiting: int = 4,
    max_upload_mb: float = MAX_UPLOAD_MB,
    max_pixels: int = MAX_PIXELS,
    max_sessions: int = MAX_SESSIONS,
    interpret=None,
) -> FastAPI:
    """The app. ``interpret`` (text -> action or None) is tried before the offline parser (a chat model)."""
    engine = engine or Engine()
    jobs = JobQueue(max_waiting=max_waiting)
    sessions = Sessions(max_sessions)
    app = FastAPI(title="restoreagent", docs_url=None, redoc_url=None)
    app.state.jobs, app.state.sessions, app.state.engine = jobs, sessions, engine

    def error(status: int, message: str, **extra) -> JSONResponse:
        headers = {"Retry-After": "2"} if extra.get("busy") else None
        return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return _static("index.html")

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC:
            return error(404, f"no such file: {name}")
        kind = {"js": "text/javascript", "css": "text/css", "html": "text/html"}[name.rsplit(".", 1)[1]]
        return Response(_static(name), media_type=kind)

    @app.get("/api/health")
    def health():
        return {"ok": True, "waiting": jobs.waiting(), "max_waiting": jobs.max_waiting}

    @app.post("/api/upload")
    async def upload(request: Request, name: str = "photo"):
        name = Path(name).name[:200] or "photo"
        limit = int(max_upload_mb * 1024 * 1024)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return error(413, f"{name}: the file is {int(declared) / 2**20:.1f} MB, above the limit of {max_upload_mb:g} MB")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                return error(413, f"{name}: the file is above the limit of {max_upload_mb:g} MB")
        if not data:
            return error(400, f"{name}: the file is empty")
        try:
            image = await run_in_threadpool(_decode, bytes(data), name, max_pixels)
        except ImageError as e:
            status = 415 if "not a readable image" in e.problem else 400
            return error(status, f"{name}: {e.problem}")
        session = Session(image, engine, name=name, interpret=interpret)
        sid = sessions.add(session)
        return view(sid, session)

    def submit(sid: str, label: str, work) -> JSONResponse:
        s = sessions.get(sid)
        if s is None:
            return error(404, "this photo's session is gone (the server restarted or forgot it): upload it again")

        def run(job: Job):
            def on_step(i, n, step):
                job.progress(i, n, f"step {i + 1} of {n}: {step.task} with {step.tool}")

            with s.lock:
                reply = work(s, on_step, job)
                return {"reply": reply, "session": view(sid, s)}

        try:
            job = jobs.submit(label, run)
        except Busy as e:
            return error(503, str(e), busy=True)
        return JSONResponse({"job": job.id, "position": jobs.position(job)}, status_code=202)

    @app.post("/api/sessions/{sid}/look")
    def look(sid: str):
        def work(s: Session, on_step, job: Job):
            job.progress(0, 2, "the detector looks at the photo")
            s.look()
            job.progress(1, 2, "the planner plans")
            seen, plan = s.auto()
            return f"I see {', '.join(seen) or 'nothing wrong'}; I would run: {plan.text()}."

        return submit(sid, "look", work)

    @app.post("/api/sessions/{sid}/say")
    async def say(sid: str, request: Request):
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return error(400, 'send {"text": "...", "box": [x, y, w, h] (optional), "mask": PNG data URL (optional)}')
        text, box = body["text"][:500], body.get("box")
        if box is not None and not (isinstance(box, list) and len(box) == 4
                                    and all(isinstance(v, int | float) for v in box)):
            return error(400, "a box is [x, y, w, h]: four numbers in the photo's pixels")

        def work(s: Session, on_step, job: Job):
            s.look()
            return s.say(text, box=box, on_step=on_step, mask=body.get("mask")).text

        return submit(sid, f"say {text!r}", work)

    @app.post("/api/sessions/{sid}/act")
    async def act(sid: str, request: Request):
        action = await _json(request)
        if not isinstance(action, dict) or not isinstance(action.get("action"), str):
            return error(400, 'send an action, e.g. {"action": "set_tool", "task": "denoise", "tool": "dct_mid"}')

        def work(s: Session, on_step, job: Job):
            s.look()
            return s.act(action, on_step=on_step).text

        return submit(sid, f"act {action['action']}", work)

    @app.get("/api/jobs/{jid}")
    def job_status(jid: str):
        job = jobs.get(jid)
        if job is None:
            return error(404, f"no job {jid}")
        out = job.to_json(jobs.position(job) if job.status == "queued" else None)
        if job.status == "done":
            out.update(job.result)
        return out

    @app.get("/api/sessions/{sid}")
    def session_view(sid: str):
        s = sessions.get(sid)
        return view(sid, s) if s is not None else error(404, f"no session {sid}")

    @app.get("/api/sessions/{sid}/turns/{turn}/{step}.png")
    def picture(sid: str, turn: int, step: int):
        data = sessions.png(sid, turn, step)
        if data is None:
            return error(404, "no such picture")
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/sessions/{sid}/conversation.json")
    def conversation(sid: str):
        s = sessions.get(sid)
        if s is None:
            return error(404, f"no session {sid}")
        with s.lock:
            return s.export()

    @app.get("/api/sessions/{sid}/download")
    def download(sid: str):
        s = sessions.get(sid)
        if s is None:
            return error(404, f"no session {sid}")
        stem = Path(s.name).stem or "photo"
        with s.lock:  # one consistent state: picture, report and conversation of the same last turn
            turn = len(s.turns) - 1
            png = sessions.png(sid, turn, len(s.turns[turn].steps) if turn >= 0 else 0)
            report, conversation = s.report(), s.export()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"{stem}_restored.png", png)
            z.writestr("plan.txt", report["plan"]["text"] + "\n")
            z.writestr("report.json", json.dumps(report, indent=2))
            z.writestr("conversation.json", json.dumps(conversation, indent=2))
        headers = {"Content-Disposition": f'attachment; filename="{stem}_restored.zip"'}
        return Response(buf.getvalue(), media_type="application/zip", headers=headers)

    return app


async def _json(request: Request):
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None


def _decode(data: bytes, name: str, max_pixels: int):
    """Decode uploaded bytes with the same checks as files on disk (restoreagent.imageio)."""
    fd, tmp = tempfile.mkstemp(prefix="restoreagent-upload-", suffix=Path(name).suffix[:10])
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return load_image(tmp, limit=max_pixels)
    finally:
        os.unlink(tmp)


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text()


def serve(host: str = "127.0.0.1", port: int = 8765, planner: str = "vlm", max_waiting: int = 4,
          interpret=None, warm: bool = True) -> None:
    """Run the page until interrupted (``restoreagent serve``)."""
    import uvicorn

    engine = Engine(planner)
    if warm:  # load the planner, the detector and the quality measures now, not on the first photo
        import numpy as np

        t0 = time.perf_counter()
        warm_image = np.full((64, 64, 3), 0.5, np.float32)
        Session(warm_image, engine).look()
        engine.plan(warm_image)
        print(f"models loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    app = create_app(engine, max_waiting=max_waiting, interpret=interpret)
    print(f"restoreagent: open http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["RestoreAgentError", "create_app", "serve"]
