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
// Reconnection: the session id is kept in sessionStorage, so that both a dropped WebSocket (retried with
// exponential backoff) and a page reload resume the same session with the `reconnect` action instead of joining
// anew. Tests drive the page through data-testid attributes (docs/client.md) and read `window.callsd`.
//
// Modules: state.js (shared state, banners, send), media.js (the peer connection), this file (the WebSocket,
// server events, rendering, controls, start-up).

import { startMedia, onSignal, publish, unpublish, teardownMedia } from "./media.js";
import {
  SPEAKING_LEVEL, onLevel, openCamera, openMic, placeDevices, refreshDevices, stopPreviewCamera, wireDevices,
} from "./devices.js";
import { channelProblem, cleanName, nameProblem } from "./names.js";
import { renderParticipants, startTimer, stopTimer, toast, toggleView } from "./render.js";
import {
  $, $$, BACKOFF_MAX_MS, BACKOFF_MIN_MS, NAME_KEY, OFFER_RETRY_AFTER, REACTION_MS, clearError, forgetSession,
  loadSession, params, remember, saveSession, send, setConnection, showError, showStatus, state,
} from "./state.js";

const RELOAD_KEY = "callsd.reloading"; // set just before a reload we know of, so `pagehide` does not leave

// ---------------------------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------------------------

function websocketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(`${scheme}//${location.host}/api/v1/websocket`);
  const token = params.get("token");
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

function connect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  state.intentionalClose = false;
  setConnection("connecting", "connecting…");
  let ws;
  try {
    ws = new WebSocket(websocketUrl());
  } catch (err) {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  ws.onopen = () => {
    if (state.ws !== ws) return;
    state.wsOpen = true;
    setConnection("connected", "connected");
    // Some servers greet first with `hello`; we act on open and treat `hello` as informational, so both orders work.
    afterOpen();
  };
  ws.onmessage = (ev) => {
    if (state.ws !== ws) return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      console.warn("callsd: non-JSON message ignored");
      return;
    }
    if (!msg || typeof msg.type !== "string") return;
    remember({ dir: "in", type: msg.type, data: msg.type === "signal" ? { type: msg.data?.type } : msg.data });
    const handler = HANDLERS[msg.type];
    if (handler) {
      // One message at a time, in order: a handler that awaits (setRemoteDescription, getUserMedia) must finish
      // before the next message is looked at, or a re-offer could overtake the answer it depends on.
      state.inbox = state.inbox
        .then(() => (state.ws === ws ? handler(msg.data || {}) : undefined))
        .catch((err) => console.error("callsd: handler", msg.type, String(err)));
    }
  };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    state.wsOpen = false;
    state.ws = null;
    if (state.intentionalClose) {
      setConnection("idle", "not connected");
      return;
    }
    if (ev.code === 4001) {
      // Another page took this session over ("replaced"): do not fight it.
      setConnection("idle", "not connected");
      endLocally("replaced");
      return;
    }
    setConnection("lost", "connection lost");
    if (state.sessionId && (state.phase === "in_call" || state.phase === "reconnecting")) {
      state.phase = "reconnecting";
      state.resumeOnOpen = true;
      setOffline(true);
      if (state.reconnectAttempt < OFFER_RETRY_AFTER) showError("connection_lost");
      scheduleReconnect();
    } else if (state.phase === "joining") {
      state.phase = "lobby";
      showLobby();
      showError("connection_lost", "Could not reach the server.");
    }
  };
}

// Retry for as long as the page is open: exponential backoff with jitter, capped at BACKOFF_MAX_MS. After a few
// failures the error banner says so once and offers "Retry now"; coming back online or to the tab retries at once.
function scheduleReconnect() {
  clearTimeout(state.reconnectTimer);
  if (state.reconnectAttempt >= OFFER_RETRY_AFTER) {
    showError("reconnect_failed");
    $("retry-button").hidden = false;
    setConnection("failed", "disconnected");
  }
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(state.reconnectAttempt, 10));
  const delay = base / 2 + Math.random() * (base / 2);
  state.reconnectAttempt += 1;
  showStatus(`Reconnecting: attempt ${state.reconnectAttempt} in ${Math.ceil(delay / 1000)} s…`, "warn");
  state.reconnectTimer = setTimeout(connect, delay);
}

function retryNow() {
  if (state.phase !== "reconnecting" || state.wsOpen) return;
  if (state.ws && state.ws.readyState === WebSocket.CONNECTING) return;
  connect();
}

// While disconnected, the call's controls would only drop clicks: disable them and say why (docs/client.md).
function setOffline(offline) {
  state.offline = offline;
  $("call-view").dataset.offline = String(offline);
  $("offline-note").hidden = !offline;
  for (const b of $("controls").querySelectorAll("button")) b.disabled = offline;
  for (const b of $("call-view").querySelectorAll(".row-actions button, .host-controls button")) b.disabled = offline;
  if (offline) {
    // Nobody is known to be speaking while we cannot hear the server.
    for (const p of state.participants.values()) p.speaking = false;
    state.localSpeaking = false;
  } else {
    $("retry-button").hidden = true;
    clearError("reconnect_failed");
  }
  renderParticipants();
}

function afterOpen() {
  if (state.resumeOnOpen && state.sessionId) {
    send("reconnect", { session_id: state.sessionId, channel_id: state.channelId });
  } else if (state.phase === "joining") {
    send("join", joinData());
  }
}

function joinData() {
  const data = { channel_id: state.channelId };
  const name = currentName();
  if (name) data.display_name = name;
  return data;
}

function currentName() {
  return cleanName($("name-input").value || localStorage.getItem(NAME_KEY) || "");
}

function closeSocket() {
  state.intentionalClose = true;
  clearTimeout(state.reconnectTimer);
  if (state.ws) {
    try {
      state.ws.close(1000, "bye");
    } catch {
      /* already closed */
    }
  }
  state.ws = null;
  state.wsOpen = false;
  setConnection("idle", "not connected");
}

// ---------------------------------------------------------------------------------------------------------------
// Server events
// ---------------------------------------------------------------------------------------------------------------

function nameOf(sid) {
  return state.labels.get(sid) || state.participants.get(sid)?.name || "Someone";
}

const HANDLERS = {
  hello(d) {
    state.protocolVersion = d.protocol ?? null;
    if (d.auth_mode) setAuthMode(d.auth_mode);
  },

  async join_ack(d) {
    state.sessionId = d.session_id;
    state.channelId = d.channel_id || state.channelId;
    state.callId = d.call_id || null;
    if (d.user_id) state.userId = d.user_id;
    state.iceServers = Array.isArray(d.ice_servers) ? d.ice_servers : [];
    state.phase = "in_call";
    state.resumeOnOpen = false;
    state.reconnectAttempt = 0;
    saveSession();
    clearError("connection_lost");
    clearError("server_shutdown");
    showStatus("");
    setOffline(false);
    if (d.state) applyCallState(d.state);
    if (!state.startAt) startTimer(Date.now()); // a server that does not say when the call began
    showCall();
    // Fresh join or reconnect: the server's side of any previous peer connection is gone, so negotiate anew.
    await startMedia();
  },

  call_state(d) {
    applyCallState(d.state || d);
  },

  call_start(d) {
    if (d.call_id) state.callId = d.call_id;
    if (d.start_at) startTimer(d.start_at);
    if (d.host_id) setHost(d.host_id);
  },

  call_end() {
    endLocally("call_ended");
  },

  call_host_changed(d) {
    setHost(d.host_id);
    if (d.host_id === state.sessionId) toast("You are now the host.");
  },

  user_joined(d) {
    // Sessions join muted (docs/protocol.md); a participant we already know keeps the state we have for it.
    const known = state.participants.has(d.session_id);
    upsertParticipant(d.session_id, {
      user_id: d.user_id,
      name: d.display_name || d.user_id,
      disconnected: false,
      ...(known ? {} : { muted: true }),
    });
    if (!known && d.session_id !== state.sessionId) toast(`${nameOf(d.session_id)} joined`, "join");
  },

  user_left(d) {
    if (d.session_id === state.sessionId) {
      endLocally(["removed", "timed_out", "call_ended"].includes(d.reason) ? d.reason : "left");
      return;
    }
    const who = nameOf(d.session_id);
    if (state.participants.has(d.session_id)) toast(`${who} left`, "leave");
    state.participants.delete(d.session_id);
    state.volumes.delete(d.session_id);
    if (state.lastSpeaker === d.session_id) state.lastSpeaker = null;
    for (const [sid, owner] of state.screenStreams) if (owner === d.session_id) state.screenStreams.delete(sid);
    renderParticipants();
  },

  user_disconnected(d) {
    upsertParticipant(d.session_id, { disconnected: true, speaking: false });
  },

  user_reconnected(d) {
    upsertParticipant(d.session_id, { disconnected: false });
  },

  user_muted(d) {
    upsertParticipant(d.session_id, { muted: true });
    if (d.session_id === state.sessionId) {
      setLocalMuted(true, { notify: false });
      if (d.by && d.by !== state.sessionId) toast(`${nameOf(d.by)} muted you.`, "notice");
    }
  },

  user_unmuted(d) {
    upsertParticipant(d.session_id, { muted: false });
    if (d.session_id === state.sessionId) setLocalMuted(false, { notify: false });
  },

  user_voice_on(d) {
    if (d.session_id !== state.sessionId) state.lastSpeaker = d.session_id;
    upsertParticipant(d.session_id, { speaking: true });
  },

  user_voice_off(d) {
    upsertParticipant(d.session_id, { speaking: false });
  },

  user_screen_on(d) {
    if (d.stream_id) state.screenStreams.set(d.stream_id, d.session_id);
    upsertParticipant(d.session_id, { screen: true });
    if (d.session_id !== state.sessionId) toast(`${nameOf(d.session_id)} is presenting`, "join");
  },

  user_screen_off(d) {
    for (const [sid, owner] of state.screenStreams) if (owner === d.session_id) state.screenStreams.delete(sid);
    if (d.session_id === state.sessionId && state.screenStream) {
      stopScreenShare({ notify: false });
      if (d.by && d.by !== state.sessionId) toast(`${nameOf(d.by)} stopped your screen share.`, "notice");
    }
    upsertParticipant(d.session_id, { screen: false });
  },

  user_video_on(d) {
    upsertParticipant(d.session_id, { video: true });
  },

  user_video_off(d) {
    upsertParticipant(d.session_id, { video: false });
  },

  user_raised_hand(d) {
    upsertParticipant(d.session_id, { hand: true });
    if (d.session_id === state.sessionId) setHandButton(true);
    else toast(`${nameOf(d.session_id)} raised their hand`, "hand");
  },

  user_lowered_hand(d) {
    upsertParticipant(d.session_id, { hand: false });
    if (d.session_id === state.sessionId) {
      setHandButton(false);
      if (d.by && d.by !== state.sessionId) toast(`${nameOf(d.by)} lowered your hand.`, "notice");
    }
  },

  user_reacted(d) {
    showReaction(d.session_id, d.emoji);
  },

  async signal(d) {
    await onSignal(d);
  },

  server_shutdown() {
    showError("server_shutdown");
  },

  error(d) {
    onServerError(d.code || "error", d.message || "", d.action ?? null);
  },
};

function onServerError(code, message, action) {
  // A `reconnect` the server cannot honour: the session has left the call (the reconnect window passed, the tab
  // left on close, or the server restarted). Join the same channel afresh.
  if (action === "reconnect" && state.resumeOnOpen) {
    state.resumeOnOpen = false;
    state.sessionId = null;
    forgetSession();
    teardownMedia();
    state.phase = "joining";
    if (code === "unknown_session" || code === "not_in_call" || code === "not_disconnected") {
      send("join", joinData());
      return;
    }
  }
  if (action === "join" || action === "reconnect" || state.phase === "joining") {
    if (state.phase === "joining" || state.phase === "reconnecting") {
      state.phase = "lobby";
      closeSocket();
      showLobby();
    }
  }
  if (code === "not_host") refreshState();
  showError(code, message);
}

function refreshState() {
  send("get_state");
}

function applyCallState(s) {
  if (!s) return;
  if (s.call_id) state.callId = s.call_id;
  if (s.start_at) startTimer(s.start_at);
  const list = s.participants || s.sessions || [];
  const seen = new Set();
  const entries = Array.isArray(list) ? list : Object.entries(list).map(([sid, p]) => ({ session_id: sid, ...p }));
  for (const p of entries) {
    seen.add(p.session_id);
    upsertParticipant(
      p.session_id,
      {
        user_id: p.user_id,
        name: p.display_name || p.user_id,
        muted: !!p.muted,
        hand: !!p.raised_hand,
        screen: !!p.screen,
        video: !!p.video,
        speaking: !!p.speaking,
        disconnected: p.connected === false,
      },
      false,
    );
    if (p.screen_stream_id) state.screenStreams.set(p.screen_stream_id, p.session_id);
  }
  if (entries.length) for (const sid of [...state.participants.keys()]) if (!seen.has(sid)) state.participants.delete(sid);
  if (s.screen && s.screen.stream_id) state.screenStreams.set(s.screen.stream_id, s.screen.session_id);
  if (s.host_id !== undefined) state.hostId = s.host_id;
  const me = state.participants.get(state.sessionId);
  if (me) {
    setLocalMuted(me.muted, { notify: false });
    setHandButton(me.hand);
  }
  renderParticipants();
}

function setHost(hostId) {
  state.hostId = hostId;
  renderParticipants();
}

function upsertParticipant(sessionId, patch, render = true) {
  if (!sessionId) return;
  const prev = state.participants.get(sessionId) || {
    user_id: sessionId,
    name: sessionId,
    muted: false,
    speaking: false,
    hand: false,
    screen: false,
    video: false,
    disconnected: false,
  };
  const next = { ...prev };
  for (const [k, v] of Object.entries(patch)) if (v !== undefined) next[k] = v;
  state.participants.set(sessionId, next);
  if (render) renderParticipants();
}

// ---------------------------------------------------------------------------------------------------------------
// Lobby and call views
// ---------------------------------------------------------------------------------------------------------------

function showLobby() {
  $("lobby").hidden = false;
  $("call-view").hidden = true;
  document.body.dataset.phase = "lobby";
  placeDevices("lobby");
  $("preview-camera-button").hidden = false;
  stopTimer();
  refreshChannels();
  if (state.authMode !== "token" || params.get("token")) openMic().then(() => refreshDevices());
}

function showCall() {
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

function showReaction(sessionId, emoji) {
  const el = document.createElement("div");
  el.className = "reaction";
  el.setAttribute("data-testid", "reaction");
  el.dataset.sessionId = sessionId;
  el.textContent = `${emoji} ${nameOf(sessionId)}`;
  $("reactions").appendChild(el);
  setTimeout(() => el.remove(), REACTION_MS);
}

// While the lobby shows, keep its list of calls in progress fresh.
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

// ---------------------------------------------------------------------------------------------------------------
// Local controls
// ---------------------------------------------------------------------------------------------------------------

// The button reflects the server's broadcasts (user_muted/user_unmuted). Muting silences the microphone at once;
// unmuting waits for the server's confirmation, so a refused or lost `unmute` never leaves a live microphone, and
// is not even asked for without a working microphone.
async function setLocalMuted(muted, { notify = true } = {}) {
  if (notify) {
    if (state.offline) return;
    if (muted) {
      if (state.micTrack) state.micTrack.enabled = false;
      send("mute");
      return;
    }
    const track = await openMic();
    if (!track) {
      showError("mic_needed");
      return;
    }
    if (state.pc && !state.outgoing.mic) publish("mic", track, state.micStream);
    send("unmute");
    return;
  }
  state.muted = muted;
  if (state.micTrack) state.micTrack.enabled = !muted;
  if (!muted) $("muted-hint").hidden = true;
  const btn = $("mute-button");
  btn.querySelector(".label").textContent = muted ? "Unmute" : "Mute";
  btn.querySelector("use").setAttribute("href", muted ? "#i-mic-off" : "#i-mic");
  btn.setAttribute("aria-pressed", String(muted));
  btn.dataset.muted = String(muted);
}

function setHandButton(raised) {
  state.hand = raised;
  const btn = $("hand-button");
  btn.querySelector(".label").textContent = raised ? "Lower hand" : "Raise hand";
  btn.setAttribute("aria-pressed", String(raised));
}

function setCameraButton(on) {
  const btn = $("camera-button");
  btn.querySelector(".label").textContent = on ? "Stop camera" : "Start camera";
  btn.querySelector("use").setAttribute("href", on ? "#i-cam" : "#i-cam-off");
  btn.setAttribute("aria-pressed", String(on));
}

function setScreenButton(on) {
  const btn = $("screen-button");
  btn.querySelector(".label").textContent = on ? "Stop sharing" : "Share screen";
  btn.setAttribute("aria-pressed", String(on));
}

async function toggleCamera() {
  if (state.camTrack) {
    const track = state.camTrack;
    state.camTrack = null;
    state.camStream = null;
    track.stop();
    unpublish("cam");
    $("local-video").srcObject = null;
    $("local-tile").hidden = true;
    send("video_off");
    setCameraButton(false);
    return;
  }
  try {
    const s = await openCamera();
    state.camTrack = s.getVideoTracks()[0];
    state.camStream = s;
    $("local-video").srcObject = s;
    $("local-tile").hidden = false;
    send("video_on");
    publish("cam", state.camTrack, s);
    setCameraButton(true);
    refreshDevices();
  } catch (err) {
    console.warn("callsd: camera", err);
    showError("camera_denied");
  }
}

async function toggleScreen() {
  if (state.screenStream) {
    stopScreenShare({ notify: true });
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (err) {
    console.warn("callsd: screen", err);
    showError("screen_denied");
    return;
  }
  state.screenStream = stream;
  // Announce the stream id first so the server classifies the coming track as a screen share.
  send("screen_on", { stream_id: stream.id });
  for (const t of stream.getTracks()) t.addEventListener("ended", () => stopScreenShare({ notify: true }));
  publish("screen", stream.getVideoTracks()[0], stream);
  setScreenButton(true);
  renderParticipants();
}

function stopScreenShare({ notify }) {
  const stream = state.screenStream;
  if (!stream) return;
  state.screenStream = null;
  for (const t of stream.getTracks()) t.stop();
  unpublish("screen");
  if (notify) send("screen_off");
  setScreenButton(false);
  renderParticipants();
}

function fullScreenShare() {
  const video = document.querySelector("[data-testid=remote-screen]");
  const target = video?.closest("figure") || video;
  if (target?.requestFullscreen) target.requestFullscreen().catch((err) => console.warn("callsd: fullscreen", err));
}

function leave() {
  send("leave");
  endLocally("left");
}

function endLocally(reason) {
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
  setHandButton(false);
  setCameraButton(false);
  setScreenButton(false);
  showStatus("");
  clearError();
  if (reason !== "left") showError(reason);
  showLobby();
}

function setAuthMode(mode) {
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

// ---------------------------------------------------------------------------------------------------------------
// Keyboard: M toggles mute, H the hand, holding Space talks while muted (push-to-talk). Ignored while typing, and
// Space is left alone on buttons and links, where it means "press".
// ---------------------------------------------------------------------------------------------------------------

const pushToTalk = { active: false };

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

function onKeyDown(ev) {
  if (ev.key === "F5" || ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "r")) {
    sessionStorage.setItem(RELOAD_KEY, "1"); // a reload: keep the session for the next page
    return;
  }
  if (state.phase !== "in_call" || state.offline || ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) return;
  const key = ev.key.toLowerCase();
  if (key === "m" && !ev.repeat) {
    setLocalMuted(!state.muted);
  } else if (key === "h" && !ev.repeat) {
    send(state.hand ? "lower_hand" : "raise_hand");
  } else if (key === " " && !(ev.target instanceof HTMLButtonElement || ev.target instanceof HTMLAnchorElement)) {
    ev.preventDefault();
    if (!ev.repeat && state.muted && !pushToTalk.active) {
      pushToTalk.active = true;
      setLocalMuted(false);
    }
  }
}

function onKeyUp(ev) {
  if (ev.key === " " && pushToTalk.active) {
    pushToTalk.active = false;
    setLocalMuted(true);
  }
}

// Speaking into a muted microphone: say so (the level meter listens to a clone of the track, see devices.js). The
// level is smoothed (a peak decays over ~200 ms); three loud samples in a row (150 ms) count as speech.
let loudSamples = 0;
function onLocalLevel(level) {
  if (state.phase !== "in_call") return;
  const loud = level > SPEAKING_LEVEL;
  loudSamples = loud ? loudSamples + 1 : 0;
  if (loudSamples >= 3 && state.muted && $("muted-hint").hidden) {
    $("muted-hint").hidden = false;
    state.mutedHints += 1;
    setTimeout(() => ($("muted-hint").hidden = true), 3000);
  }
  const speaking = loudSamples >= 3 && !state.muted;
  if (speaking !== !!state.localSpeaking) {
    state.localSpeaking = speaking;
    renderParticipants();
  }
}

// Copy an invite link to this call: in token mode it carries this page's token (whoever opens it joins as the
// token's user: share it only with people you trust with it). The link is also shown, to copy by hand.
async function copyInvite() {
  const url = new URL("/", location.origin);
  url.searchParams.set("channel", state.channelId || "");
  if (params.get("token")) url.searchParams.set("token", params.get("token"));
  const link = url.toString();
  $("invite").hidden = false;
  $("invite-link").value = link;
  try {
    await navigator.clipboard.writeText(link);
    $("invite-status").textContent = "Copied to the clipboard.";
  } catch {
    $("invite-link").select();
    $("invite-status").textContent = "Select the link and copy it.";
  }
}

// Closing the tab leaves the call at once (others would otherwise see a reconnecting participant for 30 s). A page
// kept in the back/forward cache (`persisted`) or a reload we saw coming (F5, Ctrl/Cmd+R) keeps its session; any
// other reload finds its session gone and joins the same channel again by itself (boot()).
function onPageHide(ev) {
  if (ev.persisted || sessionStorage.getItem(RELOAD_KEY) === "1") return;
  if (state.sessionId && state.phase === "in_call") {
    send("leave");
    sessionStorage.setItem("callsd.rejoin", JSON.stringify({ channel_id: state.channelId }));
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
  $("hand-button").onclick = () => send(state.hand ? "lower_hand" : "raise_hand");
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
  const reloading = sessionStorage.getItem(RELOAD_KEY) === "1";
  sessionStorage.removeItem(RELOAD_KEY);
  const rejoin = sessionStorage.getItem("callsd.rejoin");
  sessionStorage.removeItem("callsd.rejoin");
  const saved = loadSession();
  if (saved && saved.session_id && (!channel || saved.channel_id === channel)) {
    // A reload (or a restored tab): resume the same session rather than joining again. If the previous page left on
    // `pagehide` (a reload it could not foresee), the server answers unknown_session and we join afresh.
    state.sessionId = saved.session_id;
    state.channelId = saved.channel_id;
    state.phase = "reconnecting";
    state.resumeOnOpen = true;
    state.rejoined = !!rejoin && !reloading;
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
