"""The web page's two targets, measured against a real `restoreagent serve` on loopback.

1. Latency: a 512x512 photo is uploaded, looked at (detector + planner) and restored, and the
   restored PNG fetched, as the page does; after a first warm-up photo, the median over the others.
2. Load: ``--clients`` uploads at once, each then asking for a restoration; every client must end
   with its picture or a clear "busy" answer (HTTP 503 with a message), and the server must still
   answer afterwards.

    .venv/bin/python eval/web_load.py --images /work/shared/data/images/sun_hays80 --photos 6 --clients 8

Photos: the first ``--photos`` of the folder (sorted), centre-cropped to 512x512 and degraded with
``--chain`` (seeded), encoded as PNG in memory. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


def call(base: str, method: str, path: str, body: bytes | None = None, timeout: float = 300) -> tuple[int, dict | bytes]:
    req = urllib.request.Request(base + path, data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body and body[:1] == b"{" else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data, status, kind = r.read(), r.status, r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        data, status, kind = e.read(), e.code, e.headers.get("content-type", "")
    return status, json.loads(data) if "json" in kind else data


def run_job(base: str, path: str, payload: dict | None) -> tuple[int, dict]:
    """POST a job and poll it to the end (as the page does, every 50 ms)."""
    status, body = call(base, "POST", path, json.dumps(payload).encode() if payload else b"")
    if status != 202:
        return status, body
    while True:
        _, job = call(base, "GET", f"/api/jobs/{body['job']}")
        if job["status"] in ("done", "error"):
            return 200, job
        time.sleep(0.05)


def photos(folder: str, n: int, chain: str) -> list[tuple[str, bytes]]:
    from restoreagent.degradations import degrade
    from restoreagent.imageio import center_crop, list_images, load_image, png_bytes

    out = []
    for i, path in enumerate(list_images([folder])[:n]):
        clean = center_crop(load_image(path), 512)
        if clean.shape[:2] != (512, 512):
            continue
        bad, _ = degrade(clean, chain=chain, seed=i)
        out.append((path.name, png_bytes(bad)))
    return out


def one_photo(base: str, name: str, data: bytes) -> dict:
    """Upload, look, restore, fetch the picture; the seconds of each part."""
    t0 = time.perf_counter()
    status, session = call(base, "POST", f"/api/upload?name={name}", data)
    if status != 200:
        return {"name": name, "outcome": "upload refused", "status": status, "message": session.get("error")}
    sid = session["id"]
    t1 = time.perf_counter()
    status, job = run_job(base, f"/api/sessions/{sid}/look", None)
    if status != 200:
        return {"name": name, "outcome": "busy" if status == 503 else "error", "status": status, "message": job.get("error")}
    t2 = time.perf_counter()
    status, job = run_job(base, f"/api/sessions/{sid}/say", {"text": "restore"})
    if status != 200 or job["status"] != "done":
        return {"name": name, "outcome": "busy" if status == 503 else "error", "status": status,
                "message": job.get("error")}
    status, png = call(base, "GET", job["session"]["turns"][-1]["image"])
    t3 = time.perf_counter()
    ok = status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    turn = job["session"]["turns"][-1]
    return {"name": name, "outcome": "done" if ok else "error", "plan": turn["plan"],
            "upload_s": round(t1 - t0, 3), "look_s": round(t2 - t1, 3), "restore_shown_s": round(t3 - t2, 3),
            "total_s": round(t3 - t0, 3), "restore_job_s": job["seconds"],  # the server's time for the job
            "tools_s": round(sum(s["seconds"] for s in turn["steps"]), 3)}  # the tools' share of it


def start_server(planner: str, queue: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "restoreagent.cli", "serve", "--host", HOST, "--port", str(port),
                             "--planner", planner, "--queue", str(queue)], env=env)
    base = f"http://{HOST}:{port}"
    t0 = time.time()
    while time.time() - t0 < 180:
        try:
            if call(base, "GET", "/api/health", timeout=2)[0] == 200:
                return proc, base
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start in 180 s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="folder of photos (at least 512 px on each side)")
    ap.add_argument("--photos", type=int, default=6, help="photos for the latency run; the first warms up")
    ap.add_argument("--clients", type=int, default=8, help="concurrent uploads in the load run")
    ap.add_argument("--chain", default="noise:sigma=20,jpeg:quality=30")
    ap.add_argument("--planner", default="vlm")
    ap.add_argument("--queue", type=int, default=4, help="the server's --queue")
    ap.add_argument("--url", help="a running server on 127.0.0.1 instead of starting one")
    ap.add_argument("--out", help="write the measurements here as JSON")
    args = ap.parse_args()
    if args.url and urllib.parse.urlparse(args.url).hostname not in (HOST, "localhost"):
        raise SystemExit("--url must be on this machine (127.0.0.1): this is a bounded local load test")
    pics = photos(args.images, max(args.photos, args.clients), args.chain)
    proc, base = (None, args.url.rstrip("/")) if args.url else start_server(args.planner, args.queue)
    try:
        latency = [one_photo(base, n, d) for n, d in pics[: args.photos]]
        shown = [r["restore_shown_s"] for r in latency[1:] if r["outcome"] == "done"]
        total = [r["total_s"] for r in latency[1:] if r["outcome"] == "done"]
        print(json.dumps(latency, indent=1))
        tools = [r["tools_s"] for r in latency[1:] if r["outcome"] == "done"]
        print(f"latency: restore clicked -> picture fetched, median of {len(shown)}: {statistics.median(shown):.2f} s "
              f"(the tools: {statistics.median(tools):.2f} s); upload + look + restore + fetch: "
              f"{statistics.median(total):.2f} s; load average {os.getloadavg()[0]:.1f}")

        results: list[dict] = [{}] * args.clients
        gate = threading.Barrier(args.clients)

        def client(i):
            gate.wait()  # all at once
            try:
                results[i] = one_photo(base, *pics[i % len(pics)])
            except Exception as e:  # a dropped connection is a crash to report, not to hide
                results[i] = {"outcome": "crash", "message": f"{type(e).__name__}: {e}"}

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        alive = call(base, "GET", "/api/health")[0] == 200
        counts = {k: sum(r["outcome"] == k for r in results) for k in ("done", "busy", "upload refused", "error", "crash")}
        print(json.dumps(results, indent=1))
        busy_msgs = {r["message"] for r in results if r["outcome"] == "busy"}
        print(f"load: {args.clients} concurrent clients in {wall:.1f} s: {counts}; busy said: {sorted(busy_msgs)[:1]}; "
              f"server alive afterwards: {alive}")
        if args.out:
            Path(args.out).write_text(json.dumps({"latency": latency, "load": results, "load_wall_s": wall,
                                                  "alive": alive, "load_avg": os.getloadavg()}, indent=1))
        ok = alive and counts["done"] + counts["busy"] == args.clients
        return 0 if ok else 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)


if __name__ == "__main__":
    sys.exit(main())
