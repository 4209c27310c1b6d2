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

import { startMedia, onSignal, publish, unpublish, relabelRemoteMedia, teardownMedia } from "./media.js";
import {
  $, $$, BACKOFF_MAX_MS, BACKOFF_MIN_MS, MAX_RECONNECT_ATTEMPTS, NAME_KEY, REACTION_MS, clearError, forgetSession,
  loadSession, params, remember, saveSession, send, setConnection, showError, showStatus, state,
} from "./state.js";

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
      state.sessionId = null;
      state.participants.clear();
      teardownMedia();
      forgetSession();
      state.phase = "left";
      showLobby();
      showError("replaced");
      return;
    }
    setConnection("lost", "connection lost");
    if (state.sessionId && (state.phase === "in_call" || state.phase === "reconnecting")) {
      state.phase = "reconnecting";
      state.resumeOnOpen = true;
      showError("connection_lost");
      scheduleReconnect();
    } else if (state.phase === "joining") {
      state.phase = "lobby";
      showLobby();
      showError("connection_lost", "Could not reach the server.");
    }
  };
}

function scheduleReconnect() {
  clearTimeout(state.reconnectTimer);
  if (state.reconnectAttempt >= MAX_RECONNECT_ATTEMPTS) {
    showError("reconnect_failed");
    setConnection("failed", "disconnected");
    return;
  }
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.reconnectAttempt);
  const delay = base / 2 + Math.random() * (base / 2);
  state.reconnectAttempt += 1;
  showStatus(`Reconnecting (attempt ${state.reconnectAttempt})…`, "warn");
  state.reconnectTimer = setTimeout(connect, delay);
}

function afterOpen() {
  if (state.resumeOnOpen && state.sessionId) {
    send("reconnect", { session_id: state.sessionId, channel_id: state.channelId,
                        reconnect_secret: state.reconnectSecret });
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
  return ($("name-input").value || localStorage.getItem(NAME_KEY) || "").trim();
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

const HANDLERS = {
  hello(d) {
    state.protocolVersion = d.protocol ?? null;
    if (d.auth_mode) setAuthMode(d.auth_mode);
  },

  async join_ack(d) {
    state.sessionId = d.session_id;
    if (d.reconnect_secret) state.reconnectSecret = d.reconnect_secret;
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
    if (d.state) applyCallState(d.state);
    showCall();
    // Fresh join or reconnect: the server's side of any previous peer connection is gone, so negotiate anew.
    await startMedia();
  },

  call_state(d) {
    applyCallState(d.state || d);
  },

  call_start(d) {
    if (d.call_id) state.callId = d.call_id;
    if (d.host_id) setHost(d.host_id);
  },

  call_end() {
    endLocally("call_ended");
  },

  call_host_changed(d) {
    setHost(d.host_id);
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
  },

  user_left(d) {
    if (d.session_id === state.sessionId) {
      endLocally(["removed", "timed_out", "call_ended"].includes(d.reason) ? d.reason : "left");
      return;
    }
    state.participants.delete(d.session_id);
    for (const [sid, owner] of state.screenStreams) if (owner === d.session_id) state.screenStreams.delete(sid);
    renderParticipants();
  },

  user_disconnected(d) {
    upsertParticipant(d.session_id, { disconnected: true });
  },

  user_reconnected(d) {
    upsertParticipant(d.session_id, { disconnected: false });
  },

  user_muted(d) {
    upsertParticipant(d.session_id, { muted: true });
    if (d.session_id === state.sessionId) setLocalMuted(true, { notify: false });
  },

  user_unmuted(d) {
    upsertParticipant(d.session_id, { muted: false });
    if (d.session_id === state.sessionId) setLocalMuted(false, { notify: false });
  },

  user_voice_on(d) {
    upsertParticipant(d.session_id, { speaking: true });
  },

  user_voice_off(d) {
    upsertParticipant(d.session_id, { speaking: false });
  },

  user_screen_on(d) {
    if (d.stream_id) state.screenStreams.set(d.stream_id, d.session_id);
    upsertParticipant(d.session_id, { screen: true });
    relabelRemoteMedia();
  },

  user_screen_off(d) {
    upsertParticipant(d.session_id, { screen: false });
    for (const [sid, owner] of state.screenStreams) if (owner === d.session_id) state.screenStreams.delete(sid);
    if (d.session_id === state.sessionId && state.screenStream) stopScreenShare({ notify: false });
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
  },

  user_lowered_hand(d) {
    upsertParticipant(d.session_id, { hand: false });
    if (d.session_id === state.sessionId) setHandButton(false);
  },

  user_reacted(d) {
    showReaction(d.session_id, d.emoji);
  },

  async signal(d) {
    // Protocol 1.1: a server offer names who publishes each section it sends (mid -> {session_id, kind, source}).
    if (Array.isArray(d.tracks)) for (const t of d.tracks) state.trackOwners.set(t.mid, t);
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
  // A `reconnect` the server cannot honour: the session has left the call (the reconnect window passed, or the
  // server restarted). Join the same channel afresh.
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
  relabelRemoteMedia();
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
// Rendering
// ---------------------------------------------------------------------------------------------------------------

function showLobby() {
  $("lobby").hidden = false;
  $("call-view").hidden = true;
  document.body.dataset.phase = "lobby";
  refreshChannels();
}

function showCall() {
  $("lobby").hidden = true;
  $("call-view").hidden = false;
  $("call-channel").textContent = state.channelId || "";
  $("my-session-id").textContent = state.sessionId || "";
  $("my-session-id").dataset.sessionId = state.sessionId || "";
  document.body.dataset.phase = "in_call";
  renderParticipants();
}

function renderParticipants() {
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
    $("participant-name", li).textContent = p.name || p.user_id || sid;
    $("host-badge", li).hidden = sid !== state.hostId;
    $("you-badge", li).hidden = !me;
    $("muted-indicator", li).hidden = !p.muted;
    $("hand-indicator", li).hidden = !p.hand;
    $("screen-indicator", li).hidden = !p.screen;
    $("video-indicator", li).hidden = !p.video;
    $("disconnected-indicator", li).hidden = !p.disconnected;
    li.dataset.muted = String(!!p.muted);
    li.dataset.speaking = String(!!p.speaking);
    li.dataset.hand = String(!!p.hand);
    li.dataset.host = String(sid === state.hostId);
    li.dataset.me = String(me);
    li.classList.toggle("speaking", !!p.speaking);
    $("participant-host-actions", li).hidden = !amHost || me;
    $("host-mute-button", li).hidden = !!p.muted;
    $("host-lower-hand-button", li).hidden = !p.hand;
  }
  for (const li of existing.values()) li.remove();
  $("participant-count").textContent = String(state.participants.size);
  $("host-controls").hidden = !amHost;
  const screenOwner = [...state.participants.entries()].find(([, p]) => p.screen)?.[0];
  $("screen-button").disabled = !!screenOwner && screenOwner !== state.sessionId;
  $("host-stop-screen-button").disabled = !screenOwner;
}

function wireRowActions(li, sid) {
  $("host-mute-button", li).onclick = () => send("host_mute", { session_id: sid });
  $("host-lower-hand-button", li).onclick = () => send("host_lower_hand", { session_id: sid });
  $("host-make-button", li).onclick = () => send("host_make", { session_id: sid });
  $("host-remove-button", li).onclick = () => send("host_remove", { session_id: sid });
}

function showReaction(sessionId, emoji) {
  const who = state.participants.get(sessionId);
  const el = document.createElement("div");
  el.className = "reaction";
  el.dataset.testid = "reaction";
  el.setAttribute("data-testid", "reaction");
  el.dataset.sessionId = sessionId;
  el.textContent = `${emoji} ${who ? who.name : ""}`;
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
// unmuting waits for the server's confirmation, so a refused or lost `unmute` never leaves a live microphone.
function setLocalMuted(muted, { notify = true } = {}) {
  if (notify) {
    if (muted && state.micTrack) state.micTrack.enabled = false;
    send(muted ? "mute" : "unmute");
    return;
  }
  state.muted = muted;
  if (state.micTrack) state.micTrack.enabled = !muted;
  const btn = $("mute-button");
  btn.textContent = muted ? "Unmute" : "Mute";
  btn.setAttribute("aria-pressed", String(muted));
  btn.dataset.muted = String(muted);
}

function setHandButton(raised) {
  state.hand = raised;
  const btn = $("hand-button");
  btn.textContent = raised ? "Lower hand" : "Raise hand";
  btn.setAttribute("aria-pressed", String(raised));
}

async function toggleCamera() {
  const btn = $("camera-button");
  if (state.camTrack) {
    const track = state.camTrack;
    state.camTrack = null;
    state.camStream = null;
    track.stop();
    unpublish("cam");
    $("local-video").srcObject = null;
    $("local-tile").hidden = true;
    send("video_off");
    btn.textContent = "Start camera";
    btn.setAttribute("aria-pressed", "false");
    return;
  }
  try {
    const s = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: false });
    state.camTrack = s.getVideoTracks()[0];
    state.camStream = s;
    $("local-video").srcObject = s;
    $("local-tile").hidden = false;
    send("video_on");
    publish("cam", state.camTrack, s);
    btn.textContent = "Stop camera";
    btn.setAttribute("aria-pressed", "true");
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
  const btn = $("screen-button");
  btn.textContent = "Stop sharing";
  btn.setAttribute("aria-pressed", "true");
}

function stopScreenShare({ notify }) {
  const stream = state.screenStream;
  if (!stream) return;
  state.screenStream = null;
  for (const t of stream.getTracks()) t.stop();
  unpublish("screen");
  if (notify) send("screen_off");
  const btn = $("screen-button");
  btn.textContent = "Share screen";
  btn.setAttribute("aria-pressed", "false");
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
  state.phase = "left";
  setLocalMuted(true, { notify: false });
  setHandButton(false);
  $("camera-button").textContent = "Start camera";
  $("screen-button").textContent = "Share screen";
  showStatus("");
  clearError();
  if (reason !== "left") showError(reason);
  showLobby();
}

function setAuthMode(mode) {
  state.authMode = mode;
  // In token mode the user id comes from the token; in open mode the user picks a display name.
  $("name-field").hidden = mode === "token";
  $("name-input").required = mode !== "token";
  document.body.dataset.authMode = mode;
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

function startJoin() {
  const name = $("name-input").value.trim();
  const channel = $("channel-input").value.trim();
  if (!channel) return;
  if (state.authMode !== "token" && !params.get("token") && !name) {
    $("name-input").focus();
    return;
  }
  if (name) localStorage.setItem(NAME_KEY, name);
  clearError();
  state.channelId = channel;
  state.phase = "joining";
  state.resumeOnOpen = false;
  state.reconnectAttempt = 0;
  if (state.ws && state.wsOpen) send("join", joinData());
  else connect();
}

function wireControls() {
  $("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    startJoin();
  });
  $("error-dismiss").onclick = () => clearError();
  $("mute-button").onclick = () => setLocalMuted(!state.muted);
  $("camera-button").onclick = () => toggleCamera();
  $("screen-button").onclick = () => toggleScreen();
  $("hand-button").onclick = () => send(state.hand ? "lower_hand" : "raise_hand");
  for (const b of $$("reaction-button")) b.onclick = () => send("react", { emoji: b.dataset.emoji });
  $("leave-button").onclick = () => leave();
  $("host-mute-others-button").onclick = () => send("host_mute_others");
  $("host-stop-screen-button").onclick = () => send("host_screen_off");
  $("host-end-button").onclick = () => send("host_end");
}

// ---------------------------------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------------------------------

function boot() {
  wireControls();
  loadServerConfig();
  const channel = params.get("channel");
  const savedName = localStorage.getItem(NAME_KEY);
  if (savedName) $("name-input").value = savedName;
  if (params.get("name")) $("name-input").value = params.get("name");
  if (params.get("token")) $("name-field").hidden = true;
  if (channel) $("channel-input").value = channel;
  const saved = loadSession();
  if (saved && saved.session_id && (!channel || saved.channel_id === channel)) {
    // A reload (or a restored tab): resume the same session rather than joining again.
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
  if (channel && (params.get("token") || params.get("autojoin") === "1") && (params.get("token") || savedName)) {
    startJoin();
  }
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
  send,
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
