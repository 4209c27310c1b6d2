// What the call looks like: the participant list, one presence tile per participant (avatar with initials and a
// stable colour, name, muted icon, hand, a speaking ring), grid and speaker views with pinning, toasts, the call
// timer and the presenter banner. Everything is drawn from `state`; server events change state, then call these.

import { avatarColour, displayLabels, initials } from "./names.js";
import { relabelRemoteMedia } from "./media.js";
import { $, $$, send, state } from "./state.js";

const TOAST_MS = 4000;

export function renderParticipants() {
  state.labels = displayLabels(state.participants);
  renderList();
  renderTiles();
  renderPresenter();
  relabelRemoteMedia();
}

function renderList() {
  const list = $("participant-list");
  const tpl = document.getElementById("participant-template");
  const amHost = !!state.sessionId && state.hostId === state.sessionId;
  const existing = new Map($$("participant", list).map((li) => [li.dataset.sessionId, li]));
  for (const [sid, p] of state.participants) {
    let li = existing.get(sid);
    if (!li) {
      li = tpl.content.firstElementChild.cloneNode(true);
      li.dataset.sessionId = sid;
      wireRowActions(li, sid);
      list.appendChild(li);
    }
    existing.delete(sid);
    const me = sid === state.sessionId;
    const label = state.labels.get(sid);
    $("participant-name", li).textContent = label;
    $("participant-name", li).title = label;
    $("host-badge", li).hidden = sid !== state.hostId;
    $("you-badge", li).hidden = !me;
    $("muted-indicator", li).hidden = !p.muted;
    $("hand-indicator", li).hidden = !p.hand;
    $("screen-indicator", li).hidden = !p.screen;
    $("video-indicator", li).hidden = !p.video;
    $("disconnected-indicator", li).hidden = !p.disconnected;
    // The server says this person's media never connected or dropped (user_media_state): say so instead of silence.
    const noMedia = p.media === "failed" || p.media === "disconnected";
    $("no-media-indicator", li).hidden = !noMedia || !!p.disconnected;
    li.dataset.media = p.media || "connecting";
    li.dataset.muted = String(!!p.muted);
    li.dataset.speaking = String(!!p.speaking);
    li.dataset.hand = String(!!p.hand);
    li.dataset.host = String(sid === state.hostId);
    li.dataset.me = String(me);
    li.classList.toggle("speaking", !!p.speaking);
    $("participant-host-actions", li).hidden = !amHost || me;
    $("host-mute-button", li).hidden = !!p.muted;
    $("host-lower-hand-button", li).hidden = !p.hand;
    for (const b of li.querySelectorAll(".row-actions button")) b.setAttribute("aria-label", `${b.textContent}: ${label}`);
  }
  for (const li of existing.values()) li.remove();
  $("participant-count").textContent = String(state.participants.size);
  $("host-controls").hidden = !amHost;
  const screenOwner = sharer();
  $("screen-button").disabled = state.offline || (!!screenOwner && screenOwner !== state.sessionId);
  $("host-stop-screen-button").disabled = !screenOwner;
}

function wireRowActions(li, sid) {
  $("host-mute-button", li).onclick = () => send("host_mute", { session_id: sid });
  $("host-lower-hand-button", li).onclick = () => send("host_lower_hand", { session_id: sid });
  $("host-make-button", li).onclick = () => send("host_make", { session_id: sid });
  $("host-remove-button", li).onclick = () => send("host_remove", { session_id: sid });
}

function renderTiles() {
  const box = $("tiles");
  const tpl = document.getElementById("tile-template");
  const existing = new Map($$("tile", box).map((t) => [t.dataset.sessionId, t]));
  if (state.pinned && !state.participants.has(state.pinned)) state.pinned = null;
  const featured = state.view === "speaker" ? state.pinned || state.lastSpeaker || firstOther() : null;
  for (const [sid, p] of state.participants) {
    let tile = existing.get(sid);
    if (!tile) {
      tile = tpl.content.firstElementChild.cloneNode(true);
      tile.dataset.sessionId = sid;
      wireTile(tile, sid);
      box.appendChild(tile);
    }
    existing.delete(sid);
    const label = state.labels.get(sid);
    const me = sid === state.sessionId;
    const avatar = $("tile-avatar", tile);
    avatar.textContent = initials(label);
    avatar.style.background = avatarColour(p.user_id || label);
    $("tile-name", tile).textContent = me ? `${label} (you)` : label;
    $("tile-name", tile).title = label;
    $("tile-muted", tile).hidden = !p.muted;
    $("tile-hand", tile).hidden = !p.hand;
    const speaking = !!p.speaking || (me && state.localSpeaking && !state.muted);
    tile.dataset.speaking = String(speaking);
    tile.dataset.muted = String(!!p.muted);
    tile.dataset.me = String(me);
    tile.dataset.pinned = String(state.pinned === sid);
    tile.dataset.away = String(!!p.disconnected);
    tile.classList.toggle("featured", featured === sid);
    const pin = $("pin-button", tile);
    pin.setAttribute("aria-pressed", String(state.pinned === sid));
    pin.setAttribute("aria-label", `${state.pinned === sid ? "Unpin" : "Pin"} ${label}`);
    pin.querySelector(".label").textContent = state.pinned === sid ? "Unpin" : "Pin";
    $("volume-control", tile).hidden = me;
    $("volume-slider", tile).setAttribute("aria-label", `Volume for ${label}`);
  }
  for (const t of existing.values()) {
    const local = t.querySelector("[data-testid=local-tile]");
    if (local) $("videos").appendChild(local); // the own camera preview outlives the tile
    t.remove();
  }
  placeLocalVideo();
  $("stage").dataset.view = state.view;
  const vb = $("view-button");
  vb.setAttribute("aria-pressed", String(state.view === "speaker"));
  const vlabel = state.view === "speaker" ? "Grid view" : "Speaker view";
  vb.setAttribute("aria-label", vlabel);
  vb.querySelector(".label").textContent = vlabel;
  vb.querySelector("use").setAttribute("href", state.view === "speaker" ? "#i-grid" : "#i-speaker-view");
}

// The own camera preview sits in one's own tile, like everyone else's camera (media.js places remote ones).
function placeLocalVideo() {
  const local = $("local-tile");
  const mine = state.sessionId ? tileMedia(state.sessionId) : null;
  const home = mine || $("videos");
  if (local && local.parentElement !== home) home.appendChild(local);
}

// The slot of a participant's tile where their camera video goes, or null when they have no tile.
export function tileMedia(sid) {
  const tile = document.querySelector(`[data-testid=tile][data-session-id="${CSS.escape(sid)}"]`);
  return tile ? tile.querySelector("[data-testid=tile-media]") : null;
}

function firstOther() {
  for (const sid of state.participants.keys()) if (sid !== state.sessionId) return sid;
  return state.sessionId;
}

function wireTile(tile, sid) {
  $("pin-button", tile).onclick = () => {
    state.pinned = state.pinned === sid ? null : sid;
    if (state.pinned) state.view = "speaker";
    renderTiles();
  };
  $("volume-slider", tile).oninput = (e) => setVolume(sid, Number(e.target.value) / 100);
}

export function setVolume(sid, volume) {
  state.volumes.set(sid, volume);
  for (const el of document.querySelectorAll(`audio[data-session-id="${CSS.escape(sid)}"]`)) el.volume = volume;
}

export function toggleView() {
  state.view = state.view === "grid" ? "speaker" : "grid";
  if (state.view === "grid") state.pinned = null;
  renderTiles();
}

function sharer() {
  return [...state.participants.entries()].find(([, p]) => p.screen)?.[0] ?? null;
}

function renderPresenter() {
  const owner = sharer();
  const banner = $("presenter-banner");
  const mine = !!state.screenStream && (owner === state.sessionId || owner === null);
  banner.hidden = !owner && !mine;
  if (banner.hidden) return;
  const preview = $("presenter-preview");
  if (mine) {
    $("presenter-text").textContent = "You are presenting your screen to everyone.";
    if (preview.srcObject !== state.screenStream) preview.srcObject = state.screenStream;
  } else {
    $("presenter-text").textContent = `${state.labels.get(owner) || "Someone"} is presenting.`;
    preview.srcObject = null;
  }
  preview.hidden = !mine;
  $("presenter-stop-button").hidden = !mine;
  $("fullscreen-button").hidden = mine;
}

export function toast(text, kind = "info") {
  const el = document.createElement("div");
  el.className = "toast";
  el.setAttribute("data-testid", "toast");
  el.dataset.kind = kind;
  el.textContent = text;
  $("toasts").appendChild(el);
  setTimeout(() => el.remove(), TOAST_MS);
}

// The call timer: seconds since the call started (the server's start_at), as m:ss or h:mm:ss.
let timerHandle = null;
export function startTimer(startAt) {
  if (startAt) state.startAt = startAt;
  clearInterval(timerHandle);
  const el = $("call-timer");
  const tick = () => {
    if (!state.startAt) return;
    const s = Math.max(0, Math.floor((Date.now() - state.startAt) / 1000));
    const hh = Math.floor(s / 3600);
    const mm = Math.floor((s % 3600) / 60);
    const ss = String(s % 60).padStart(2, "0");
    el.textContent = hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
    el.dataset.seconds = String(s);
  };
  tick();
  el.hidden = !state.startAt;
  timerHandle = setInterval(tick, 1000);
}

export function stopTimer() {
  clearInterval(timerHandle);
  state.startAt = null;
  $("call-timer").hidden = true;
}
