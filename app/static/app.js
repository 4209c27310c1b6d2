// callsd browser client: plain ES module, no build step.
//
// One WebSocket to /api/v1/websocket carries the signaling protocol of docs/protocol.md (JSON envelopes
// {"type": ..., "data": {...}}), and one RTCPeerConnection carries all media to and from the server's SFU.
// The client makes the first offer; the server may re-offer whenever the set of tracks it forwards changes; the
// client always answers. On glare (a server offer arrives while the client's own offer is being made or awaits its
// answer) the client is the *polite* side of perfect negotiation: it rolls its offer back, answers the server's, and
// offers again. The server is impolite: it ignores a client offer that crosses its own (adapters/media/plane.py),
// so it never answers the rolled-back offer.
//
// Reconnection: the session id is kept in sessionStorage, so that a dropped WebSocket (retried with capped
// exponential backoff for as long as the page is open) and a reload the page saw coming resume the same session with
// the `reconnect` action instead of joining anew; closing the tab sends `leave` on `pagehide` (docs/client.md).
// Tests drive the page through data-testid attributes (docs/client.md) and read `window.callsd`.
//
// Modules: state.js (shared state, banners, send), session.js (the WebSocket and server events), media.js (the peer
// connection), devices.js (pickers, preview, level meter), controls.js (the call's controls and shortcuts),
// render.js (participants, tiles, toasts, timer), names.js (the name rules); this file: lobby, joining, start-up.

import { teardownMedia } from "./media.js";
import {
  onLevel, openMic, placeDevices, refreshDevices, resumeAudio, stopPreviewCamera, wireDevices,
} from "./devices.js";
import {
  copyInvite, fullScreenShare, onKeyDown, onKeyUp, onLocalLevel, setCameraButton, setHandButton,
  setLocalMuted, setScreenButton, stopScreenShare, toggleCamera, toggleHand, toggleScreen,
} from "./controls.js";
import { channelProblem, cleanName, nameProblem } from "./names.js";
import { renderParticipants, stopTimer, toggleView } from "./render.js";
import { closeSocket, connect, retryNow, setOffline } from "./session.js";
import {
  $, $$, NAME_KEY, clearError, forgetSession, loadSession, params, send, showError, showStatus, state,
} from "./state.js";

// ---------------------------------------------------------------------------------------------------------------
// Lobby and call views
// ---------------------------------------------------------------------------------------------------------------

export function showLobby() {
  $("lobby").hidden = false;
  $("call-view").hidden = true;
  document.body.dataset.phase = "lobby";
  placeDevices("lobby");
  $("preview-camera-button").hidden = false;
  stopTimer();
  refreshChannels();
  // The pre-join preview opens the microphone for the level meter; after a call ends it stays closed (privacy).
  if (state.phase === "lobby" && (state.authMode !== "token" || params.get("token"))) {
    openMic().then(() => refreshDevices());
  }
}

export function showCall() {
  stopPreviewCamera();
  $("lobby").hidden = true;
  $("call-view").hidden = false;
  $("call-channel").textContent = state.channelId || "";
  $("my-session-id").dataset.sessionId = state.sessionId || "";
  document.body.dataset.phase = "in_call";
  placeDevices("call");
  $("preview-camera-button").hidden = true;
  renderParticipants();
}

const CHANNELS_REFRESH_MS = 5000;
setInterval(() => {
  if (!$("lobby").hidden && document.visibilityState === "visible") refreshChannels();
}, CHANNELS_REFRESH_MS);

async function refreshChannels() {
  const list = $("channel-list");
  let channels = [];
  try {
    const url = new URL("/api/v1/channels", location.origin);
    const token = params.get("token");
    if (token) url.searchParams.set("token", token);
    const res = await fetch(url);
    if (res.ok) {
      const body = await res.json();
      channels = Array.isArray(body) ? body : body.channels || [];
    }
  } catch {
    /* no channel listing on this server */
  }
  list.replaceChildren();
  for (const ch of channels) {
    const id = typeof ch === "string" ? ch : ch.channel_id || ch.id || ch.name;
    if (!id) continue;
    const count = typeof ch === "object" ? ch.participants ?? ch.participant_count : undefined;
    const li = document.createElement("li");
    const btn = document.createElement("button");
    btn.type = "button";
    btn.setAttribute("data-testid", "channel-item");
    btn.dataset.channelId = id;
    btn.textContent = count !== undefined ? `${id} (${count})` : id;
    btn.onclick = () => {
      $("channel-input").value = id;
      startJoin();
    };
    li.appendChild(btn);
    list.appendChild(li);
  }
  $("channel-list-empty").hidden = list.children.length > 0;
}

export function joinData() {
  // batch: the server may send the events waiting for us as one `batch` frame (protocol 1.3).
  const data = { channel_id: state.channelId, batch: true };
  const name = currentName();
  if (name) data.display_name = name;
  return data;
}

function currentName() {
  return cleanName($("name-input").value || localStorage.getItem(NAME_KEY) || "");
}

function leave() {
  send("leave");
  endLocally("left");
}

export function endLocally(reason) {
  teardownMedia();
  closeSocket();
  forgetSession();
  state.sessionId = null;
  state.callId = null;
  state.hostId = null;
  state.participants.clear();
  state.screenStreams.clear();
  state.volumes.clear();
  state.pinned = state.lastSpeaker = null;
  state.phase = "left";
  setOffline(false);
  setLocalMuted(true, { notify: false });
  state.handWanted = state.mutedWanted = null;
  setHandButton(false);
  setCameraButton(false);
  setScreenButton(false);
  showStatus("");
  clearError();
  if (reason !== "left") showError(reason);
  showLobby();
}

export function setAuthMode(mode) {
  state.authMode = mode;
  // In token mode the user id comes from the token; in open mode the user picks a display name.
  $("name-field").hidden = mode === "token";
  document.body.dataset.authMode = mode;
  const needToken = mode === "token" && !params.get("token");
  $("token-needed").hidden = !needToken;
  $("join-button").disabled = needToken;
  $("channel-list-empty").textContent = needToken
    ? "Open your invite link to see and join calls."
    : "No active calls yet. Type a channel name to start one.";
}

async function loadServerConfig() {
  try {
    const res = await fetch("/api/v1/config");
    if (!res.ok) return;
    const cfg = await res.json();
    if (cfg.auth_mode) setAuthMode(cfg.auth_mode);
    if (cfg.allow_screen_sharing === false) $("screen-button").hidden = true;
  } catch {
    /* older server: assume open mode */
  }
}

function fieldProblem(testid, text) {
  const el = $(testid);
  el.textContent = text || "";
  el.hidden = !text;
}

// Check the form by the server's rules (names.js) and say what is wrong in plain words; true when it may join.
function validateForm() {
  const channel = $("channel-input").value.trim();
  const tokenMode = state.authMode === "token" || !!params.get("token");
  const channelText = channelProblem(channel);
  const nameText = tokenMode ? null : nameProblem($("name-input").value);
  fieldProblem("channel-error", channelText);
  fieldProblem("name-error", nameText);
  $("channel-input").setAttribute("aria-invalid", String(!!channelText));
  $("name-input").setAttribute("aria-invalid", String(!!nameText));
  if (nameText) $("name-input").focus();
  else if (channelText) $("channel-input").focus();
  return !channelText && !nameText;
}

function startJoin({ check = true } = {}) {
  if (state.authMode === "token" && !params.get("token")) {
    showError("token_needed");
    return;
  }
  if (check && !validateForm()) return;
  resumeAudio(); // a click: the browser now lets the level meter's AudioContext run
  const name = cleanName($("name-input").value);
  if (name) localStorage.setItem(NAME_KEY, name);
  clearError();
  state.channelId = $("channel-input").value.trim();
  state.phase = "joining";
  state.resumeOnOpen = false;
  state.reconnectAttempt = 0;
  if (state.ws && state.wsOpen) send("join", joinData());
  else connect();
}

// Closing the tab leaves the call within 3 s (others would otherwise see a reconnecting participant for 30 s); a
// reload resumes the same session (docs/protocol.md, `going_away`).
function onPageHide(ev) {
  // Closing and reloading look the same here, so tell the server `going_away`: it keeps our place for 3 s. A reload
  // reconnects within that and resumes the session; a closed tab is gone 3 s later instead of "reconnecting" for the
  // whole window. A page kept in the back/forward cache (`persisted`) stays in the call.
  if (ev.persisted) return;
  if (state.sessionId && state.phase === "in_call") {
    send("going_away");
  }
}

function wireControls() {
  $("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    startJoin();
  });
  $("error-dismiss").onclick = () => clearError();
  $("retry-button").onclick = () => retryNow();
  $("mute-button").onclick = () => setLocalMuted(!state.muted);
  $("camera-button").onclick = () => toggleCamera();
  $("screen-button").onclick = () => toggleScreen();
  $("presenter-stop-button").onclick = () => stopScreenShare({ notify: true });
  $("fullscreen-button").onclick = () => fullScreenShare();
  $("hand-button").onclick = () => toggleHand();
  for (const b of $$("reaction-button")) b.onclick = () => send("react", { emoji: b.dataset.emoji });
  $("leave-button").onclick = () => leave();
  $("host-mute-others-button").onclick = () => send("host_mute_others");
  $("host-stop-screen-button").onclick = () => send("host_screen_off");
  $("host-end-button").onclick = () => send("host_end");
  $("view-button").onclick = () => toggleView();
  $("invite-button").onclick = () => copyInvite();
  $("devices-button").onclick = () => {
    const slot = $("device-slot");
    slot.hidden = !slot.hidden;
    $("devices-button").setAttribute("aria-expanded", String(!slot.hidden));
    if (!slot.hidden) refreshDevices();
  };
  $("channel-input").addEventListener("input", () => fieldProblem("channel-error", null));
  $("name-input").addEventListener("input", () => fieldProblem("name-error", null));
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("keyup", onKeyUp);
  addEventListener("pagehide", onPageHide);
  addEventListener("online", () => retryNow());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") retryNow();
  });
  onLevel(onLocalLevel);
  wireDevices();
}

// ---------------------------------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------------------------------

async function boot() {
  state.mutedHints = 0;
  state.offline = false;
  wireControls();
  const config = loadServerConfig();
  const channel = params.get("channel");
  const savedName = localStorage.getItem(NAME_KEY);
  if (savedName) $("name-input").value = savedName;
  if (params.get("name") !== null) $("name-input").value = params.get("name");
  if (params.get("token")) $("name-field").hidden = true;
  if (channel !== null) $("channel-input").value = channel;
  const saved = loadSession();
  if (saved && saved.session_id && (!channel || saved.channel_id === channel)) {
    // A reload (or a restored tab): resume the same session rather than joining again. If it came back too late (the
    // previous page said `going_away`), the server answers unknown_session and we join afresh.
    state.sessionId = saved.session_id;
    state.reconnectSecret = saved.reconnect_secret || "";
    state.channelId = saved.channel_id;
    state.phase = "reconnecting";
    state.resumeOnOpen = true;
    showStatus("Rejoining your call…");
    connect();
    return;
  }
  showLobby();
  await config;
  if (channel && (params.get("token") || params.get("autojoin") === "1")) startJoin();
}

// The test and debugging surface: read-only views of the client's state.
window.callsd = {
  get pc() {
    return state.pc;
  },
  get simulcast() {
    return state.simulcast;
  },
  get ws() {
    return state.ws;
  },
  get sessionId() {
    return state.sessionId;
  },
  get channelId() {
    return state.channelId;
  },
  get hostId() {
    return state.hostId;
  },
  get phase() {
    return state.phase;
  },
  get participants() {
    return Object.fromEntries(state.participants);
  },
  get log() {
    return state.log.slice();
  },
  get glares() {
    return state.glares;
  },
  get offersReceived() {
    return state.offersReceived;
  },
  get slotUpdates() {
    return state.slotUpdates;
  },
  get mediaRecoveries() {
    return state.mediaRecoveries;
  },
  get iceRestarts() {
    return state.iceRestarts;
  },
  get errorsShown() {
    return state.errorsShown.slice();
  },
  get offline() {
    return !!state.offline;
  },
  get reconnectAttempt() {
    return state.reconnectAttempt;
  },
  get labels() {
    return Object.fromEntries(state.labels);
  },
  get micSwitches() {
    return state.micSwitches;
  },
  get deviceChanges() {
    return state.deviceChanges;
  },
  get mutedHints() {
    return state.mutedHints;
  },
  get outgoing() {
    return state.outgoing;
  },
  send,
  // Join a channel without the form's checks, as a client that does not know the rules would (tests of the
  // server's refusals).
  join(channel) {
    $("channel-input").value = channel;
    startJoin({ check: false });
  },
  // Drop the WebSocket as if the network failed (tests of automatic reconnect).
  dropConnection() {
    if (state.ws) state.ws.close(4000, "test drop");
  },
  // Sums of inbound/outbound RTP counters by kind, from pc.getStats().
  async rtpStats() {
    const out = { inbound: {}, outbound: {} };
    if (!state.pc) return out;
    const report = await state.pc.getStats();
    report.forEach((r) => {
      if (r.type !== "inbound-rtp" && r.type !== "outbound-rtp") return;
      const side = r.type === "inbound-rtp" ? out.inbound : out.outbound;
      const kind = r.kind || r.mediaType;
      const cur = side[kind] || { packets: 0, bytes: 0, frames: 0, streams: 0 };
      cur.packets += r.packetsReceived ?? r.packetsSent ?? 0;
      cur.bytes += r.bytesReceived ?? r.bytesSent ?? 0;
      cur.frames += r.framesDecoded ?? r.framesEncoded ?? 0;
      cur.streams += 1;
      side[kind] = cur;
    });
    return out;
  },
};

boot();
