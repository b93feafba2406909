"""The web page: its API (uploads good and bad, the bounded queue, downloads) through FastAPI's test
client, and the whole page end to end in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium; .ci/run installs them).

RESTOREAGENT_SCREENSHOTS=docs/img makes the browser test write the screenshots docs/web.md shows.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from restoreagent.conversation import Engine, Session  # noqa: E402
from restoreagent.conversation.engine import box_mask  # noqa: E402
from restoreagent.imageio import decode_png, load_image, to_uint8  # noqa: E402
from restoreagent.web.jobs import Busy, JobQueue  # noqa: E402
from restoreagent.web.server import create_app  # noqa: E402

EXAMPLE = Path("examples/astronaut_noise_jpeg.png").resolve()
PLANNER = "fixed+detect"  # the detector and the recipe: no language model to load in the tests


@pytest.fixture(scope="module")
def engine():
    return Engine(PLANNER)


def _wait(client, response, timeout=120):
    assert response.status_code == 202, response.text
    jid = response.json()["job"]
    t0 = time.time()
    while time.time() - t0 < timeout:
        job = client.get(f"/api/jobs/{jid}").json()
        if job["status"] in ("done", "error"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {jid} did not finish in {timeout} s")


def test_api_restores_downloads_and_refuses_bad_uploads(engine, tmp_path):
    client = TestClient(create_app(engine, max_upload_mb=2, max_pixels=300_000))
    assert "restoreagent" in client.get("/").text and client.get("/static/app.js").status_code == 200
    assert client.get("/static/../server.py").status_code == 404
    good = EXAMPLE.read_bytes()
    bad = {
        "junk.png": (b"this is not an image at all" * 10, 415, "not a readable image"),
        "notes.txt": (b"hello", 415, "not a readable image"),
        "truncated.png": (good[: len(good) // 3], 400, "truncated or corrupt"),
        "empty.png": (b"", 400, "empty"),
        "huge.bin": (b"\0" * (3 * 2**20), 413, "above the limit of 2 MB"),
    }
    for name, (data, status, words) in bad.items():
        r = client.post(f"/api/upload?name={name}", content=data)
        assert r.status_code == status and words in r.json()["error"] and r.json()["error"].startswith(name)
    big = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (800, 600)).save(big, "PNG")  # 0.48 MP: above this app's 0.3 MP limit
    r = client.post("/api/upload?name=big.png", content=big.getvalue())
    assert r.status_code == 400 and "above the limit" in r.json()["error"] and "megapixels" in r.json()["error"]
    assert client.get("/api/health").json()["ok"]  # still serving

    r = client.post("/api/upload?name=astronaut.png", content=good)
    assert r.status_code == 200
    sid = r.json()["id"]
    look = _wait(client, client.post(f"/api/sessions/{sid}/look"))
    assert look["status"] == "done" and "noise" in look["session"]["look"]["detection"]["degradations"]
    done = _wait(client, client.post(f"/api/sessions/{sid}/say", json={"text": "restore"}))
    turn = done["session"]["turns"][-1]
    assert turn["plan"] == look["session"]["look"]["plan"] and len(turn["step_images"]) == len(turn["steps"]) > 0
    assert done["total"] == len(turn["steps"])  # progress counted the steps
    step1 = client.get(turn["step_images"][0])
    assert step1.status_code == 200 and step1.headers["content-type"] == "image/png"
    done = _wait(client, client.post(f"/api/sessions/{sid}/act", json={"action": "set_tool", "task": "denoise", "tool": "dct_mid"}))
    assert "denoise:dct_mid" in done["session"]["turns"][-1]["plan"]
    failed = _wait(client, client.post(f"/api/sessions/{sid}/act", json={"action": "set_tool", "task": "denoise", "tool": "nope"}))
    assert failed["status"] == "done" and "unknown tool 'nope'" in failed["reply"]  # an answer, not a crash
    assert client.post(f"/api/sessions/{sid}/say", content=b"{not json").status_code == 400
    assert client.post(f"/api/sessions/{sid}/say", json={"text": "only the box", "box": "abc"}).status_code == 400
    assert client.post("/api/sessions/nosuch/say", json={"text": "restore"}).status_code == 404

    z = zipfile.ZipFile(io.BytesIO(client.get(f"/api/sessions/{sid}/download").content))
    assert sorted(z.namelist()) == ["astronaut_restored.png", "conversation.json", "plan.txt", "report.json"]
    report = json.loads(z.read("report.json"))
    assert report["plan"]["text"] == z.read("plan.txt").decode().strip() == done["session"]["turns"][-1]["plan"]
    from restoreagent import Agent

    expected = Agent(planner=PLANNER, device="cpu").restore(EXAMPLE, plan=report["plan"]["text"]).image  # the API's
    assert np.array_equal(to_uint8(decode_png(z.read("astronaut_restored.png"))), to_uint8(expected))


def test_a_full_queue_answers_busy_and_keeps_serving(engine):
    app = create_app(engine, max_waiting=1)
    client = TestClient(app)
    sid = client.post("/api/upload?name=a.png", content=EXAMPLE.read_bytes()).json()["id"]
    release = threading.Event()
    jobs: JobQueue = app.state.jobs
    running = jobs.submit("blocker", lambda job: release.wait(30))  # occupies the worker
    while running.status != "running":
        time.sleep(0.01)
    jobs.submit("waiting", lambda job: None)  # fills the one waiting place
    r = client.post(f"/api/sessions/{sid}/say", json={"text": "restore"})
    assert r.status_code == 503 and r.json()["busy"] and "busy" in r.json()["error"] and r.headers["retry-after"]
    with pytest.raises(Busy):
        jobs.submit("one more", lambda job: None)
    assert client.get("/api/health").json()["waiting"] == 1
    release.set()
    t0 = time.time()
    while jobs.waiting() and time.time() - t0 < 30:  # the worker takes the waiting job: a place frees up
        time.sleep(0.01)
    assert _wait(client, client.post(f"/api/sessions/{sid}/say", json={"text": "denoise:dct_low"}))["status"] == "done"


def test_a_failing_job_is_reported_and_the_worker_goes_on():
    jobs = JobQueue(max_waiting=2)
    bad = jobs.submit("bad", lambda job: 1 / 0)
    good = jobs.submit("good", lambda job: "fine")
    t0 = time.time()
    while good.status != "done" and time.time() - t0 < 10:
        time.sleep(0.01)
    assert bad.status == "error" and "ZeroDivisionError" in bad.error and good.result == "fine"


def test_eight_concurrent_uploads_each_end_done_or_busy(live_server_small_queue):
    """The load target, small: 8 clients at once upload and ask for a restoration; each gets its
    picture or a clear busy answer, and the server still answers afterwards."""
    import urllib.error
    import urllib.request

    base = live_server_small_queue
    photo = io.BytesIO()
    from PIL import Image

    Image.fromarray(to_uint8(load_image(EXAMPLE)[:96, :96])).save(photo, "PNG")

    def post(path, data=b"", kind="application/octet-stream"):
        req = urllib.request.Request(base + path, data=data, method="POST", headers={"Content-Type": kind})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def client(i, out):
        status, session = post(f"/api/upload?name=p{i}.png", photo.getvalue())
        if status != 200:
            out[i] = ("upload", status, session)
            return
        status, body = post(f"/api/sessions/{session['id']}/say", b'{"text": "denoise:dct_mid"}', "application/json")
        if status == 503:
            out[i] = ("busy", status, body)
            return
        while True:
            with urllib.request.urlopen(f"{base}/api/jobs/{body['job']}", timeout=60) as r:
                job = json.loads(r.read())
            if job["status"] in ("done", "error"):
                out[i] = (job["status"], 200, job)
                return
            time.sleep(0.05)

    out = [None] * 8
    threads = [threading.Thread(target=client, args=(i, out)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    kinds = [o[0] for o in out]
    assert set(kinds) <= {"done", "busy"}, out
    assert kinds.count("done") >= 2  # the running job and the waiting one at least
    assert all("busy" in o[2]["error"] for o in out if o[0] == "busy")
    with urllib.request.urlopen(base + "/api/health", timeout=10) as r:
        assert json.loads(r.read())["ok"]


# -- the page in a real browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.time()
    while not server.started and time.time() - t0 < 20:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def live_server(engine):
    server, thread, url = _serve(create_app(engine))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def live_server_small_queue(engine):
    server, thread, url = _serve(create_app(engine, max_waiting=2))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("RESTOREAGENT_REQUIRE_BROWSER") == "1":  # .ci/run installs them: missing is a failure
            pytest.fail("chromium or chromedriver is missing although RESTOREAGENT_REQUIRE_BROWSER=1")
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1250"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


def test_page_end_to_end_in_headless_chromium(live_server, browser, engine, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = Path(os.environ.get("RESTOREAGENT_SCREENSHOTS") or tmp_path)
    d = browser
    wait = WebDriverWait(d, 120)
    find = lambda css: d.find_element(By.CSS_SELECTOR, css)  # noqa: E731

    def screenshot(name):
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(str(shots / name))
        if os.environ.get("RESTOREAGENT_SCREENSHOTS"):  # for docs: 256 colours, a third of the bytes
            from PIL import Image

            with Image.open(shots / name) as im:
                im.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(shots / name, optimize=True)

    def jobs_done(n):
        wait.until(lambda _: find("body").get_attribute("data-jobs-done") == str(n))

    def picture_shown(turn):
        wait.until(lambda _: find("#after-img").get_attribute("data-turn") == str(turn)
                   and find("#after-img").get_attribute("data-loaded") == "1")

    d.get(live_server)
    find("#file").send_keys(str(EXAMPLE))  # upload; the page then asks the detector and the planner
    jobs_done(1)
    assert "noise" in find("#detection").text and "jpeg" in find("#detection").text
    planned = [s.get_attribute("value") for s in d.find_elements(By.CSS_SELECTOR, "#plan select")]
    assert planned, "the plan is listed with a tool menu per step"

    t0 = time.perf_counter()
    find("#restore-btn").click()
    jobs_done(2)
    picture_shown(0)
    restore_seconds = time.perf_counter() - t0
    assert len(d.find_elements(By.CSS_SELECTOR, "#steps figure")) == len(planned) + 1  # input + each step
    assert "PIQE" in find("#scores").text
    screenshot("web_restore.png")

    find("#say-text").send_keys("not satisfied")
    find("#say-btn").click()
    jobs_done(3)
    picture_shown(1)
    assert "Alternative 1" in find("#message").text

    find("#draw-box").click()
    overlay = find("#overlay")
    w, h = overlay.size["width"], overlay.size["height"]
    ActionChains(d).move_to_element_with_offset(overlay, int(-w * 0.3), int(-h * 0.35)).click_and_hold() \
        .move_by_offset(int(w * 0.35), int(h * 0.3)).release().perform()
    box = [int(v) for v in find("#box-text").text.removeprefix("box ").split(",")]
    assert box[2] > 20 and box[3] > 20
    find("#box-btn").click()
    jobs_done(4)
    picture_shown(2)
    assert "Only the box" in find("#message").text
    d.execute_script("document.getElementById('slider').value = 30; "
                     "document.getElementById('slider').dispatchEvent(new Event('input'));")
    screenshot("web_box.png")

    find("#download").click()
    t0 = time.time()
    while not list(d.downloads.glob("*.zip")) and time.time() - t0 < 30:
        time.sleep(0.1)
    z = zipfile.ZipFile(next(d.downloads.glob("*.zip")))
    report = json.loads(z.read("report.json"))
    downloaded = decode_png(z.read("astronaut_noise_jpeg_restored.png"))

    # The same plan and box through the conversation API, outside the server: the same pixels.
    photo = load_image(EXAMPLE)
    session = Session(photo, engine)
    alternative = session.alternatives()[1]
    assert report["plan"]["text"] == alternative.text() and report["region"] == {"kind": "box", "box": box}
    expected = session.render(alternative, {"kind": "box", "box": box})[-1].image
    assert np.array_equal(to_uint8(downloaded), to_uint8(expected))
    outside = ~box_mask(photo.shape[:2], [box[0] - 20, box[1] - 20, box[2] + 40, box[3] + 40])
    assert np.array_equal(to_uint8(downloaded)[outside], to_uint8(photo)[outside])

    junk = tmp_path / "broken.png"
    junk.write_bytes(b"definitely not a PNG")
    find("#file").send_keys(str(junk))
    wait.until(lambda _: "not a readable image" in find("#message").text)
    assert "error" in find("#message").get_attribute("class")
    screenshot("web_bad_upload.png")
    find("#photos li.active").click()  # the good photo is still there and the server still answers
    find("#draw-box").click()  # off; brush instead
    find("#brush").click()
    ActionChains(d).move_to_element_with_offset(overlay, int(w * 0.1), int(h * 0.2)).click_and_hold() \
        .move_by_offset(int(w * 0.2), 0).move_by_offset(0, int(h * 0.1)).release().perform()
    find("#mask-btn").click()
    jobs_done(5)
    assert "Only the brushed area" in find("#message").text
    screenshot("web_brush.png")
    find("#undo-btn").click()
    jobs_done(6)
    assert "Undone; back to" in find("#message").text and "on the box" in find("#message").text
    print(f"restore shown in the page {restore_seconds:.2f} s after the click")


def test_serve_command_refuses_bad_options_in_one_line(capsys):
    from restoreagent.cli import main

    assert main(["serve", "--queue", "0"]) == 2
    assert main(["serve", "--planner", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--queue must be at least 1" in err and "unknown planner 'nope'" in err


def test_serve_command_starts_and_serves_the_page():
    import subprocess
    import sys
    import urllib.request

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "restoreagent.cli", "serve", "--port", str(port), "--planner", PLANNER],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        t0, page = time.time(), None
        while page is None and time.time() - t0 < 120 and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    page = r.read().decode()
            except OSError:
                time.sleep(0.3)
        assert page is not None and 'id="say-text"' in page, proc.stdout.read() if proc.poll() is not None else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/app.js", timeout=5) as r:
            assert "runJob" in r.read().decode()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"open http://127.0.0.1:{port}/" in out
