// The phone's side of the prototype: show the camera, send one JPEG frame per unlock attempt,
// draw the lock screen from the server's answers. No build step, no libraries.
// Every POST carries this tab's session secret (the page's csrf-token meta tag).
"use strict";
const $ = (id) => document.getElementById(id);
const TITLES = {not_enrolled: "No face enrolled", locked: "Locked", unlocked: "Unlocked", locked_out: "Locked out",
                pin_required: "Locked: PIN required", recovery_needed: "Locked: recovery needed (PIN)"};
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const canvas = document.createElement("canvas");
let status = null, lockedUntil = 0, countdownTimer = null, relockAt = 0, relockTimer = null;
let sourceIndex = 0, sourceTimer = null;

async function api(path, options = {}) {
  let response;
  if (options.method === "POST") options.headers = {...(options.headers || {}), "X-CSRF-Token": CSRF};
  try {
    response = await fetch(path, options);
  } catch (err) {
    return {error: "The app server cannot be reached (" + err.message + "). Is `hyperverify app` still running?"};
  }
  try {
    return await response.json();
  } catch (err) {
    return {error: "The server answered " + response.status + " without a readable reply."};
  }
}

function say(id, text, isError) {
  $(id).textContent = text || "";
  $(id).className = isError ? "error" : "";
}

function render(reply, messageId = "message") {
  if (reply.state) status = reply;
  if (!status) { say(messageId, reply.error, true); return; }
  const state = status.state;
  $("lock-screen").dataset.state = state;
  $("lock-title").textContent = TITLES[state] || state;
  $("unlock").hidden = state === "unlocked";
  $("unlock").disabled = !["locked"].includes(state);
  $("lock-again").hidden = state !== "unlocked";
  $("pin-row").hidden = state === "unlocked" || !status.pin_set;
  $("forget").disabled = !status.enrolled;
  $("enroll-state").textContent = state === "not_enrolled"
    ? "Nobody is enrolled: choose a PIN, then upload photos of one face or take camera frames."
    : "Enrolled: " + status.user_id + (state === "unlocked" && status.manage_for > 0 ? "." :
      ". To change or delete the face, unlock first or enter the PIN here.");
  $("enroll-pin-label").textContent = state === "not_enrolled" ? "Choose a PIN (4-16 digits)" : "PIN";
  $("d-failures").textContent = state === "unlocked" ? "–"
    : state === "pin_required" ? status.failures + " failed: PIN required"
    : state === "locked_out" ? "locked out after " + status.failures + " in a row"
    : status.failures + " of " + status.max_failures;
  $("d-score-row").hidden = !status.debug;
  $("d-time").textContent = status.median_decision_ms === null ? "–"
    : (reply.decision ? reply.decision.decision_ms.toFixed(0) + " ms, " : "") +
      "median " + status.median_decision_ms.toFixed(0) + " ms over " + status.frames_timed + " frames";
  $("notice").hidden = !status.notice;
  $("notice").textContent = status.notice;
  if (reply.decision) {
    const d = reply.decision;
    $("decision").dataset.reason = d.reason;
    $("d-reason").textContent = d.reason.replaceAll("_", " ");
    if (status.debug) {
      $("d-score").textContent = d.score == null ? "– (no face verified)"
        : d.score.toFixed(2) + (d.score >= d.threshold ? " ≥ " : " < ") + "threshold " + d.threshold.toFixed(2);
    }
    say("message", d.message, !d.accepted);
  }
  if (reply.error) say(messageId, reply.error, true);
  startCountdown(status.locked_for);
  startRelock(status.relock_in);
}

// An unlocked screen locks again by itself (the server decides; the page shows the time left).
function startRelock(seconds) {
  clearInterval(relockTimer);
  $("relock").hidden = !(seconds > 0);
  if (!(seconds > 0)) return;
  relockAt = performance.now() + seconds * 1000;
  const tick = async () => {
    const left = Math.ceil((relockAt - performance.now()) / 1000);
    if (left > 0) { $("relock").textContent = "Locks again in " + left + " s"; return; }
    clearInterval(relockTimer);
    render(await api("/api/status"));
    say("message", "Locked again after a while unlocked. Look at the camera and press Unlock.", false);
  };
  tick();
  relockTimer = setInterval(tick, 250);
}

function startCountdown(seconds) {
  clearInterval(countdownTimer);
  $("countdown").hidden = !(seconds > 0);
  if (!(seconds > 0)) return;
  lockedUntil = performance.now() + seconds * 1000;
  const tick = async () => {
    const left = Math.ceil((lockedUntil - performance.now()) / 1000);
    if (left > 0) {
      $("countdown").textContent = "Too many failed attempts. Try again in " + left + " s";
      return;
    }
    clearInterval(countdownTimer);
    render(await api("/api/status"));
    if (status && status.state !== "locked_out") say("message", "You can try again.", false);
  };
  tick();
  countdownTimer = setInterval(tick, 200);
}

// -- camera, or frames played by the server (--source) -------------------------------------------
async function startCamera() {
  if (status && status.source) {
    $("video").hidden = true;
    $("source-frame").hidden = false;
    $("source-controls").hidden = false;
    showSourceFrame(0);
    sourceTimer = setInterval(() => showSourceFrame(sourceIndex + 1), 1000);
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: false});
    $("video").srcObject = stream;
    $("camera-note").textContent = "Live camera. Look at it and press Unlock.";
  } catch (err) {
    say("camera-note", "No camera (" + err.name + ": " + err.message + "). Start the app with " +
        "--source FOLDER_OR_Y4M to play images instead, or enroll from photos.", true);
  }
}

function showSourceFrame(index) {
  const n = status.source.frames;
  sourceIndex = ((index % n) + n) % n;
  return new Promise((resolve) => {
    const img = $("source-frame");
    img.onload = () => resolve(true);
    img.onerror = () => { say("camera-note", "Frame " + (sourceIndex + 1) + " cannot be shown.", true); resolve(false); };
    img.src = "/api/source/" + sourceIndex + ".jpg";
    $("camera-note").textContent = "Playing " + status.source.path.split("/").pop() + ": frame " +
      (sourceIndex + 1) + " of " + n + ".";
    $("camera-note").title = status.source.path;
  });
}

function grabFrame() {
  const el = status && status.source ? $("source-frame") : $("video");
  const width = el.videoWidth || el.naturalWidth, height = el.videoHeight || el.naturalHeight;
  if (!width || !height) return Promise.resolve(null);
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").drawImage(el, 0, 0, width, height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
}

// -- actions ---------------------------------------------------------------------------------------
async function unlock() {
  const frame = await grabFrame();
  if (!frame) {
    say("message", "The camera has not delivered a picture yet. Wait a moment and try again.", true);
    return;
  }
  $("unlock").disabled = true;
  say("enroll-message", "", false);
  render(await api("/api/verify", {method: "POST", headers: {"Content-Type": "image/jpeg"}, body: frame}));
}

async function unlockWithPin() {
  const pin = $("pin").value;
  $("pin").value = "";
  const reply = await api("/api/pin", {method: "POST", headers: {"Content-Type": "application/json"},
                                       body: JSON.stringify({pin})});
  render(reply);
  if (reply.message) say("message", reply.message, false);
}

async function enroll(files) {
  const form = new FormData();
  files.forEach(([blob, name]) => form.append("image", blob, name));
  if ($("enroll-pin").value) form.append("pin", $("enroll-pin").value);
  say("enroll-message", "Enrolling " + files.length + " image(s)…", false);
  const reply = await api("/api/enroll", {method: "POST", body: form});
  render(reply, "enroll-message");
  if (!reply.error) {
    $("enroll-pin").value = "";
    say("enroll-message", reply.message, false);
    say("message", "Look at the camera and press Unlock.", false);
  }
}

async function enrollFromCamera() {
  const count = Math.max(1, Math.min(10, parseInt($("enroll-count").value, 10) || 3));
  const frames = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) {
      if (status.source) await showSourceFrame(sourceIndex + 1);
      else await new Promise((r) => setTimeout(r, 400));
    }
    const blob = await grabFrame();
    if (!blob) { say("enroll-message", "The camera has not delivered a picture yet.", true); return; }
    frames.push([blob, "camera-frame-" + (i + 1) + ".jpg"]);
  }
  await enroll(frames);
}

function enrollFromFiles() {
  const files = Array.from($("enroll-files").files);
  if (!files.length) { say("enroll-message", "Choose one or more photos first.", true); return; }
  enroll(files.map((f) => [f, f.name]));
}

async function post(path, messageId, body) {
  const reply = await api(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                 body: JSON.stringify(body || {})});
  render(reply, messageId);
  if (reply.message) say(messageId, reply.message, false);
}

window.addEventListener("DOMContentLoaded", async () => {
  $("unlock").onclick = unlock;
  $("lock-again").onclick = () => post("/api/lock", "message");
  $("forget").onclick = () => {
    const pin = $("enroll-pin").value;
    $("enroll-pin").value = "";
    post("/api/forget", "enroll-message", pin ? {pin} : {});
  };
  $("pin-unlock").onclick = unlockWithPin;
  $("pin").onkeydown = (e) => { if (e.key === "Enter") unlockWithPin(); };
  $("enroll-upload").onclick = enrollFromFiles;
  $("enroll-camera").onclick = enrollFromCamera;
  $("source-prev").onclick = () => showSourceFrame(sourceIndex - 1);
  $("source-next").onclick = () => showSourceFrame(sourceIndex + 1);
  $("source-play").onclick = () => {
    if (sourceTimer) { clearInterval(sourceTimer); sourceTimer = null; $("source-play").textContent = "Play"; }
    else { sourceTimer = setInterval(() => showSourceFrame(sourceIndex + 1), 1000); $("source-play").textContent = "Pause"; }
  };
  render(await api("/api/status"));
  if (status && status.state === "locked") say("message", "Look at the camera and press Unlock.", false);
  if (status && status.state === "recovery_needed") say("message", "Enter the PIN to unlock, then enroll again.", true);
  await startCamera();
});
