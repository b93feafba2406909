// The restoreagent page: upload photos, run jobs through the server's queue, draw what comes back.
// Plain JS, no build step. Every piece of work is a job: POST, then poll /api/jobs/ID for progress.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { photos: [], active: null, views: {}, chats: {}, shown: null, box: null, brushed: false, busy: false, jobsDone: 0 };
// The brushed mask, at the photo's own size (white where brushed); sent as a PNG data URL.
const maskCanvas = document.createElement("canvas");

function setMessage(text, kind) {
  const m = $("message");
  m.textContent = text || "";
  m.className = kind || "";
}

async function upload(file) {
  const chip = { name: file.name, sid: null, error: null };
  state.photos.push(chip);
  renderPhotos();
  let res, body;
  try {
    res = await fetch("/api/upload?name=" + encodeURIComponent(file.name), { method: "POST", body: file });
    body = await res.json();
  } catch (e) {
    body = { error: file.name + ": the upload failed (" + e + ")" };
    res = { ok: false };
  }
  if (!res.ok) {
    chip.error = body.error;
    renderPhotos();
    setMessage(body.error, body.busy ? "busy" : "error");
    return;
  }
  chip.sid = body.id;
  state.views[body.id] = body;
  state.chats[body.id] = [];
  select(body.id);
  await runJob("/api/sessions/" + body.id + "/look", null);
}

function select(sid) {
  state.active = sid;
  state.shown = null;
  state.box = null;
  clearBrush();
  drawBox();
  renderPhotos();
  render();
}

async function runJob(url, payload) {
  const sid = state.active;
  setBusy(true);
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: payload === null ? "" : JSON.stringify(payload),
    });
    const body = await res.json();
    if (res.status === 503) { setMessage(body.error, "busy"); return; }
    if (!res.ok) { setMessage(body.error, "error"); return; }
    const job = await poll(body.job);
    if (job.status === "error") { setMessage("failed: " + job.error, "error"); return; }
    state.views[sid] = job.session;
    state.chats[sid].push({ who: "agent", text: job.reply });
    state.shown = null;
    if (sid === state.active) { render(); setMessage(job.reply, ""); }
  } catch (e) {
    setMessage("lost contact with the server: " + e, "error");
  } finally {
    setBusy(false);
    state.jobsDone += 1;
    document.body.dataset.jobsDone = String(state.jobsDone);
  }
}

async function poll(jid) {
  for (;;) {
    const res = await fetch("/api/jobs/" + jid);
    const job = await res.json();
    if (!res.ok) throw new Error(job.error);
    $("progress").max = Math.max(job.total, 1);
    $("progress").value = job.done;
    $("stage").textContent = job.status === "queued" ? "waiting: " + job.position + " job(s) ahead" : job.stage;
    if (job.status === "done" || job.status === "error") return job;
    await new Promise((r) => setTimeout(r, 120));
  }
}

function setBusy(on) {
  state.busy = on;
  $("progress-box").hidden = !on;
  document.body.dataset.busy = on ? "1" : "0";
  for (const id of ["restore-btn", "alt-btn", "fuse-btn", "undo-btn", "whole-btn", "say-btn"]) $(id).disabled = on;
  $("box-btn").disabled = on || !state.box;
  $("mask-btn").disabled = on || !state.brushed;
  document.querySelectorAll("#plan select").forEach((s) => (s.disabled = on));
}

function say(text, extra) {
  if (!state.active || !text.trim()) return;
  state.chats[state.active].push({ who: "you", text: text });
  renderChat();
  return runJob("/api/sessions/" + state.active + "/say", Object.assign({ text: text, box: state.box }, extra || {}));
}

function act(action, label) {
  if (!state.active) return;
  state.chats[state.active].push({ who: "you", text: label });
  renderChat();
  return runJob("/api/sessions/" + state.active + "/act", action);
}

// -- drawing ----------------------------------------------------------------------------------
function renderPhotos() {
  const ul = $("photos");
  ul.innerHTML = "";
  for (const p of state.photos) {
    const li = document.createElement("li");
    li.textContent = p.name + (p.error ? " ✗" : "");
    li.title = p.error || "";
    if (p.error) li.className = "bad";
    else if (p.sid === state.active) li.className = "active";
    if (p.sid) li.onclick = () => select(p.sid);
    ul.appendChild(li);
  }
}

function currentTurn(v) { return v.turns.length ? v.turns[v.turns.length - 1] : null; }

function render() {
  const v = state.views[state.active];
  if (!v) return;
  $("viewer").hidden = false;
  for (const id of ["plan-panel", "chat-panel", "scores-panel"]) $(id).hidden = false;
  const turn = currentTurn(v);
  const before = $("before-img");
  if (before.getAttribute("src") !== v.input) before.src = v.input;
  const after = $("after-img");
  const shown = state.shown || (turn ? turn.image : v.input);
  after.dataset.turn = turn ? String(turn.index) : "-1";
  if (after.getAttribute("src") !== shown) {
    after.dataset.loaded = "0";
    after.onload = () => { after.dataset.loaded = "1"; sizeOverlay(); };
    after.src = shown;
  }
  $("download").hidden = !turn;
  $("download").href = v.download;
  $("download").setAttribute("download", v.name.replace(/\.[^.]*$/, "") + "_restored.zip");
  renderLook(v);
  renderPlan(v, turn);
  renderSteps(v, turn);
  renderScores(v, turn);
  renderChat();
}

function renderLook(v) {
  const t = $("detection");
  $("look-panel").hidden = !v.look;
  if (!v.look) return;
  const d = v.look.detection;
  const names = Object.keys(d.probabilities).sort((a, b) => d.probabilities[b] - d.probabilities[a]);
  t.innerHTML = "<tr><th>degradation</th><th>probability</th><th></th><th>severity</th></tr>";
  for (const n of names) {
    const p = d.probabilities[n];
    const tr = document.createElement("tr");
    if (d.degradations.includes(n)) tr.className = "found";
    const sev = d.severity_all && n in d.severity_all && d.degradations.includes(n) ? d.severity_all[n].toFixed(2) : "";
    tr.innerHTML = `<td>${n}</td><td><div class="bar"><div style="width:${(100 * p).toFixed(0)}%"></div></div></td>` +
      `<td>${p.toFixed(2)}</td><td>${sev}</td>`;
    t.appendChild(tr);
  }
}

function renderPlan(v, turn) {
  const ol = $("plan");
  ol.innerHTML = "";
  const text = turn ? turn.plan : v.look ? v.look.plan : "";
  const steps = text && text !== "none" ? text.split(",").map((s) => s.trim().split(":")) : [];
  if (!steps.length) ol.innerHTML = "<li><i>" + (text === "none" ? "nothing to do" : "not planned yet") + "</i></li>";
  for (const [task, tool] of steps) {
    const li = document.createElement("li");
    const sel = document.createElement("select");
    sel.dataset.task = task;
    for (const name of v.tools[task] || [tool]) {
      const o = document.createElement("option");
      o.value = o.textContent = name;
      if (name === tool) o.selected = true;
      sel.appendChild(o);
    }
    sel.disabled = state.busy;
    sel.onchange = () => act({ action: "set_tool", task: task, tool: sel.value }, `use ${sel.value} for ${task}`);
    li.append(task + ": ", sel);
    ol.appendChild(li);
  }
  if (turn && turn.region) {
    const li = document.createElement("li");
    li.className = "hint";
    const where = { box: () => "the box " + turn.region.box.join(","), mask: () => "the brushed area", sky: () => "the sky" };
    li.textContent = "only " + where[turn.region.kind]();
    ol.appendChild(li);
  }
}

function renderSteps(v, turn) {
  const box = $("steps");
  box.innerHTML = "";
  const items = [{ url: v.input, label: "input" }];
  if (turn) turn.steps.forEach((s, i) => items.push({ url: turn.step_images[i], label: `${i + 1}. ${s.task}: ${s.tool} (${s.seconds.toFixed(2)} s)` }));
  const shown = state.shown || (turn ? turn.image : v.input);
  for (const it of items) {
    const f = document.createElement("figure");
    if (it.url === shown) f.className = "shown";
    f.innerHTML = `<img src="${it.url}" alt=""><figcaption></figcaption>`;
    f.querySelector("figcaption").textContent = it.label;
    f.onclick = () => { state.shown = it.url; render(); };
    box.appendChild(f);
  }
}

function renderScores(v, turn) {
  const t = $("scores");
  const before = v.look ? v.look.scores : null;
  const after = turn ? turn.scores : null;
  t.innerHTML = "<tr><th>measure</th><th>before</th><th>after</th></tr>";
  const names = { noise: "noise (grey levels)", exposure: "exposure error", piqe: "PIQE" };
  for (const k of Object.keys(names)) {
    const b = before && k in before ? before[k] : "";
    const a = after && k in after ? after[k] : "";
    if (b === "" && a === "") continue;
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${names[k]}</td><td>${b}</td><td>${a}</td>`;
    t.appendChild(tr);
  }
}

function renderChat() {
  const ol = $("chat");
  ol.innerHTML = "";
  for (const m of state.chats[state.active] || []) {
    const li = document.createElement("li");
    li.className = m.who;
    li.textContent = (m.who === "you" ? "you: " : "agent: ") + m.text;
    ol.appendChild(li);
  }
  ol.scrollTop = ol.scrollHeight;
}

// -- the box -----------------------------------------------------------------------------------
function sizeOverlay() {
  const c = $("overlay"), img = $("before-img");
  c.width = img.clientWidth;
  c.height = img.clientHeight;
  drawBox();
}

function scale() {
  const img = $("before-img");
  return img.naturalWidth / Math.max(img.clientWidth, 1);
}

function drawBox() {
  const c = $("overlay");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  $("box-text").textContent = state.box ? "box " + state.box.join(",") : "";
  $("box-btn").disabled = state.busy || !state.box;
  $("mask-btn").disabled = state.busy || !state.brushed;
  $("brush-clear").hidden = !state.brushed;
  if (state.brushed) {  // the brushed strokes, tinted, under the box
    g.globalAlpha = 0.35;
    g.drawImage(tint(), 0, 0, c.width, c.height);
    g.globalAlpha = 1;
  }
  if (!state.box) return;
  const s = scale();
  const [x, y, w, h] = state.box.map((n) => n / s);
  g.strokeStyle = "#ffeb3b";
  g.lineWidth = 2;
  g.setLineDash([6, 4]);
  g.strokeRect(x, y, w, h);
}

function tint() {
  const t = document.createElement("canvas");
  t.width = maskCanvas.width;
  t.height = maskCanvas.height;
  const g = t.getContext("2d");
  g.drawImage(maskCanvas, 0, 0);
  g.globalCompositeOperation = "source-in";
  g.fillStyle = "#ff4081";
  g.fillRect(0, 0, t.width, t.height);
  return t;
}

function clearBrush() {
  const img = $("before-img");
  maskCanvas.width = img.naturalWidth || 1;
  maskCanvas.height = img.naturalHeight || 1;
  state.brushed = false;
  drawBox();
}

let lastPaint = null;
function paint(x, y) {  // x, y in the overlay's pixels; a round stroke from the last point
  const s = scale(), g = maskCanvas.getContext("2d");
  if (maskCanvas.width !== $("before-img").naturalWidth) clearBrush();
  const p = [x * s, y * s], from = lastPaint || p;
  g.strokeStyle = "#fff";
  g.lineCap = "round";
  g.lineWidth = Math.max(8, maskCanvas.width * 0.06);
  g.beginPath();
  g.moveTo(from[0], from[1]);
  g.lineTo(p[0], p[1]);
  g.stroke();
  lastPaint = p;
  state.brushed = true;
  drawBox();
}

function setupBox() {
  const c = $("overlay");
  let start = null, brushing = false;
  const at = (e) => {
    const r = c.getBoundingClientRect();
    return [Math.max(0, Math.min(r.width, e.clientX - r.left)), Math.max(0, Math.min(r.height, e.clientY - r.top))];
  };
  c.addEventListener("mousedown", (e) => {
    if ($("brush").checked) { brushing = true; paint(...at(e)); e.preventDefault(); }
    else if ($("draw-box").checked) { start = at(e); e.preventDefault(); }
  });
  window.addEventListener("mousemove", (e) => {
    if (brushing) { paint(...at(e)); return; }
    if (!start) return;
    const [x, y] = at(e), s = scale();
    const x0 = Math.min(start[0], x), y0 = Math.min(start[1], y);
    state.box = [x0, y0, Math.abs(x - start[0]), Math.abs(y - start[1])].map((n) => Math.round(n * s));
    drawBox();
  });
  window.addEventListener("mouseup", () => { start = null; brushing = false; lastPaint = null; });
  const modes = () => c.classList.toggle("drawing", $("draw-box").checked || $("brush").checked);
  $("draw-box").addEventListener("change", () => { if ($("draw-box").checked) $("brush").checked = false; modes(); });
  $("brush").addEventListener("change", () => { if ($("brush").checked) $("draw-box").checked = false; modes(); });
  $("brush-clear").onclick = clearBrush;
  window.addEventListener("resize", sizeOverlay);
  $("before-img").addEventListener("load", sizeOverlay);
}

// -- wiring ------------------------------------------------------------------------------------
function setup() {
  $("file").addEventListener("change", async (e) => { for (const f of [...e.target.files]) await upload(f); e.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    for (const f of [...e.dataTransfer.files]) await upload(f);
  });
  $("slider").addEventListener("input", (e) => { $("after-wrap").style.clipPath = `inset(0 0 0 ${e.target.value}%)`; });
  $("restore-btn").onclick = () => say("restore");
  $("alt-btn").onclick = () => say("not satisfied");
  $("fuse-btn").onclick = () => say("blend the best results");
  $("undo-btn").onclick = () => say("undo");
  $("box-btn").onclick = () => say("only the box");
  $("mask-btn").onclick = () => say("only the brushed area", { mask: maskCanvas.toDataURL("image/png") });
  $("whole-btn").onclick = () => act({ action: "region", kind: "whole" }, "whole photo");
  $("say-form").addEventListener("submit", (e) => { e.preventDefault(); const t = $("say-text"); say(t.value); t.value = ""; });
  setupBox();
  document.body.dataset.jobsDone = "0";
}
setup();
