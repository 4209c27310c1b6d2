// Device choice: microphone, speaker and camera pickers (one set of <select>s, shown in the lobby and moved into the
// call's "Devices" panel), the pre-join preview with a live microphone level meter, hot-plug (`devicechange`), and
// switching a live call's microphone or camera (replaceTrack on the same transceiver: no renegotiation).
//
// The level meter listens to a *clone* of the microphone track: muting disables the sending track, and the page
// still has to hear the user to say "You are muted" when they speak into a muted microphone.

import { publish } from "./media.js";
import { $, showError, clearError, state } from "./state.js";

const PREF_KEY = "callsd.devices";
const LEVEL_INTERVAL_MS = 50;
export const SPEAKING_LEVEL = 0.04; // RMS above this counts as speech (fake devices beep far above it)

const prefs = loadPrefs();
const meter = { ctx: null, source: null, analyser: null, timer: null, clone: null, listeners: new Set(), level: 0 };

function loadPrefs() {
  try {
    return JSON.parse(localStorage.getItem(PREF_KEY) || "{}") || {};
  } catch {
    return {};
  }
}

function savePrefs() {
  localStorage.setItem(PREF_KEY, JSON.stringify(prefs));
}

export function onLevel(fn) {
  meter.listeners.add(fn);
}

export function micConstraints() {
  return prefs.mic ? { deviceId: { exact: prefs.mic } } : true;
}

function camConstraints() {
  const base = { width: 640, height: 360 };
  return prefs.camera ? { ...base, deviceId: { exact: prefs.camera } } : base;
}

// Open the microphone (the chosen one, or the default if it is gone). Returns the track or null (blocked/absent).
// Single-flight: the lobby's preview and a join that follows at once share one getUserMedia.
let opening = null;
export function openMic() {
  if (state.micTrack && state.micTrack.readyState === "live") return Promise.resolve(state.micTrack);
  if (!opening) opening = openMicOnce().finally(() => (opening = null));
  return opening;
}

async function openMicOnce() {
  let stream = null;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraints(), video: false });
  } catch (err) {
    if (prefs.mic && (err.name === "OverconstrainedError" || err.name === "NotFoundError")) {
      delete prefs.mic; // the saved device is unplugged: use the default
      savePrefs();
      return openMicOnce();
    }
    console.warn("callsd: microphone", err);
    state.micBlocked = true;
    showError("media_denied");
    return null;
  }
  state.micBlocked = false;
  clearError("media_denied");
  setMic(stream);
  refreshDevices();
  return state.micTrack;
}

function setMic(stream) {
  const old = state.micTrack;
  state.micStream = stream;
  state.micTrack = stream.getAudioTracks()[0];
  state.micTrack.enabled = !state.muted;
  if (old && old !== state.micTrack) old.stop();
  startMeter(state.micTrack);
}

export async function openCamera() {
  const s = await navigator.mediaDevices.getUserMedia({ video: camConstraints(), audio: false });
  return s;
}

function startMeter(track) {
  stopMeter();
  try {
    meter.ctx = meter.ctx || new AudioContext();
    meter.ctx.resume?.().catch(() => {});
    meter.clone = track.clone();
    meter.clone.enabled = true;
    meter.source = meter.ctx.createMediaStreamSource(new MediaStream([meter.clone]));
    meter.analyser = meter.ctx.createAnalyser();
    meter.analyser.fftSize = 1024;
    meter.source.connect(meter.analyser);
  } catch (err) {
    console.warn("callsd: level meter", err);
    return;
  }
  const buf = new Float32Array(meter.analyser.fftSize);
  meter.timer = setInterval(() => {
    if (!meter.analyser) return;
    meter.analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    meter.level = Math.max(rms, meter.level * 0.8); // fall back slowly so the bar is readable
    const pct = Math.min(100, Math.round(meter.level * 400));
    const el = $("mic-level");
    el.setAttribute("aria-valuenow", String(pct));
    el.dataset.level = String(pct);
    el.firstElementChild.style.width = `${pct}%`;
    for (const fn of meter.listeners) fn(meter.level);
  }, LEVEL_INTERVAL_MS);
}

export function resumeAudio() {
  meter.ctx?.resume?.().catch(() => {});
}

export function stopMeter() {
  clearInterval(meter.timer);
  meter.timer = null;
  if (meter.source) meter.source.disconnect();
  if (meter.clone) meter.clone.stop();
  meter.source = meter.analyser = meter.clone = null;
  meter.level = 0;
}

// Fill the three pickers from enumerateDevices(); keep the user's choice when it is still plugged in.
export async function refreshDevices() {
  let devices = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch {
    return;
  }
  fill($("mic-select"), devices.filter((d) => d.kind === "audioinput"), prefs.mic, "Microphone");
  fill($("speaker-select"), devices.filter((d) => d.kind === "audiooutput"), prefs.speaker, "Speaker");
  fill($("camera-select"), devices.filter((d) => d.kind === "videoinput"), prefs.camera, "Camera");
  $("speaker-select").disabled = !("setSinkId" in HTMLMediaElement.prototype);
}

function fill(select, devices, chosen, noun) {
  const options = devices.map((d, i) => {
    const o = document.createElement("option");
    o.value = d.deviceId;
    o.textContent = d.label || `${noun} ${i + 1}`;
    return o;
  });
  if (!options.length) {
    const o = document.createElement("option");
    o.value = "";
    o.textContent = `No ${noun.toLowerCase()} found`;
    options.push(o);
  }
  select.replaceChildren(...options);
  select.value = devices.some((d) => d.deviceId === chosen) ? chosen : options[0].value;
}

export async function chooseMic(deviceId) {
  prefs.mic = deviceId;
  savePrefs();
  if (!state.micTrack) return;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraints(), video: false });
    setMic(stream);
    publish("mic", state.micTrack, stream);
    state.micSwitches += 1;
  } catch (err) {
    console.warn("callsd: switch microphone", err);
    showError("media_denied");
  }
}

export async function chooseCamera(deviceId) {
  prefs.camera = deviceId;
  savePrefs();
  const live = state.camTrack || state.previewStream;
  if (!live) return;
  try {
    const s = await openCamera();
    const track = s.getVideoTracks()[0];
    if (state.camTrack) {
      state.camTrack.stop();
      state.camTrack = track;
      state.camStream = s;
      $("local-video").srcObject = s;
      publish("cam", track, s);
    } else {
      for (const t of state.previewStream.getTracks()) t.stop();
      state.previewStream = s;
      $("preview-video").srcObject = s;
    }
  } catch (err) {
    console.warn("callsd: switch camera", err);
    showError("camera_denied");
  }
}

export function chooseSpeaker(deviceId) {
  prefs.speaker = deviceId;
  savePrefs();
  for (const el of document.querySelectorAll("audio[data-testid=remote-audio]")) applySink(el);
}

// Route one remote <audio> to the chosen speaker (Chromium's setSinkId; other browsers play on the default).
export function applySink(el) {
  if (!prefs.speaker || typeof el.setSinkId !== "function" || el.sinkId === prefs.speaker) return;
  el.setSinkId(prefs.speaker).catch((err) => console.warn("callsd: setSinkId", String(err)));
}

export async function togglePreviewCamera() {
  const btn = $("preview-camera-button");
  if (state.previewStream) {
    stopPreviewCamera();
    return;
  }
  try {
    state.previewStream = await openCamera();
    $("preview-video").srcObject = state.previewStream;
    $("preview-video").hidden = false;
    btn.setAttribute("aria-pressed", "true");
    btn.textContent = "Stop preview";
    refreshDevices();
  } catch (err) {
    console.warn("callsd: camera preview", err);
    showError("camera_denied");
  }
}

export function stopPreviewCamera() {
  if (state.previewStream) for (const t of state.previewStream.getTracks()) t.stop();
  state.previewStream = null;
  $("preview-video").srcObject = null;
  $("preview-video").hidden = true;
  $("preview-camera-button").setAttribute("aria-pressed", "false");
  $("preview-camera-button").textContent = "Preview camera";
}

export function wireDevices() {
  $("mic-select").onchange = (e) => chooseMic(e.target.value);
  $("speaker-select").onchange = (e) => chooseSpeaker(e.target.value);
  $("camera-select").onchange = (e) => chooseCamera(e.target.value);
  $("preview-camera-button").onclick = () => togglePreviewCamera();
  navigator.mediaDevices?.addEventListener?.("devicechange", async () => {
    state.deviceChanges += 1;
    await refreshDevices();
    // The microphone in use was unplugged: fall back to what is there now, keeping the mute state.
    if (state.micTrack && state.micTrack.readyState === "ended") {
      state.micTrack = null;
      const track = await openMic();
      if (track && state.pc) publish("mic", track, state.micStream);
    }
  });
  refreshDevices();
}

// Moving the one set of pickers between the lobby and the call's Devices panel keeps one source of truth.
export function placeDevices(where) {
  const box = $("devices");
  const slot = where === "call" ? $("device-slot") : $("join-form");
  if (box.parentElement !== slot) {
    if (where === "call") slot.appendChild(box);
    else slot.insertBefore(box, $("join-button"));
  }
}
