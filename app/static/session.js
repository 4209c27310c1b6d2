// The callsd client's connection: one WebSocket carrying docs/protocol.md, resumed with `reconnect` after a drop
// (backoff without end, "Retry now", and at once when the browser comes back online or to the tab), and the
// handlers of the server's events, which update `state` and redraw.

import { mediaLostOnServer, onSignal, relabelRemoteMedia, startMedia, teardownMedia } from "./media.js";
import { endLocally, joinData, setAuthMode, showCall, showLobby } from "./app.js";
import { askAgain, setHandButton, setLocalMuted, showReaction, stopScreenShare } from "./controls.js";
import { renderParticipants, startTimer, toast } from "./render.js";
import {
  $, BACKOFF_MAX_MS, BACKOFF_MIN_MS, OFFER_RETRY_AFTER, clearError, forgetSession, params, remember, saveSession,
  send, setConnection, showError, showStatus, state,
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

export function connect() {
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
    // A `batch` frame (protocol 1.3) carries several events, in order: each is handled as if it came alone.
    const events = msg.type === "batch" && Array.isArray(msg.data?.events) ? msg.data.events : [msg];
    for (const event of events) receiveEvent(ws, event);
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

function receiveEvent(ws, msg) {
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

export function retryNow() {
  if (state.phase !== "reconnecting" || state.wsOpen) return;
  if (state.ws && state.ws.readyState === WebSocket.CONNECTING) return;
  connect();
}

// While disconnected, the call's controls would only drop clicks: disable them and say why (docs/client.md).
export function setOffline(offline) {
  state.offline = offline;
  $("call-view").dataset.offline = String(offline);
  $("offline-note").hidden = !offline;
  // Leave stays available: leaving works offline too (the server times the session out).
  for (const b of $("controls").querySelectorAll("button")) b.disabled = offline && b !== $("leave-button");
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
    send("reconnect", { session_id: state.sessionId, channel_id: state.channelId,
                        reconnect_secret: state.reconnectSecret, batch: true });
  } else if (state.phase === "joining") {
    send("join", joinData());
  }
}

export function closeSocket() {
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

export function nameOf(sid) {
  return state.labels.get(sid) || state.participants.get(sid)?.name || "Someone";
}

const HANDLERS = {
  hello(d) {
    state.protocolVersion = d.protocol ?? null;
    if (d.auth_mode) setAuthMode(d.auth_mode);
  },

  async join_ack(d) {
    if (d.reconnect_secret) state.reconnectSecret = d.reconnect_secret;
    state.sessionId = d.session_id;
    state.channelId = d.channel_id || state.channelId;
    state.callId = d.call_id || null;
    if (d.user_id) state.userId = d.user_id;
    state.iceServers = Array.isArray(d.ice_servers) ? d.ice_servers : [];
    state.simulcast = d.simulcast === true; // absent (an older server): one encoding
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

  user_media_state(d) {
    const before = state.participants.get(d.session_id);
    upsertParticipant(d.session_id, { media: d.state });
    if (d.session_id === state.sessionId && d.state === "disconnected") mediaLostOnServer();
    if (d.state === "failed" && before && before.media !== "failed") {
      const who = d.session_id === state.sessionId ? "You have" : `${nameOf(d.session_id)} has`;
      toast(`${who} no audio connection`, "notice");
    }
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
    // Protocol 1.1: a server offer names who publishes each section it sends (mid -> {session_id, kind, source}).
    // Protocol 1.2: `slots` says whose audio a pre-negotiated section carries now (session_id null: nobody's);
    // no SDP round goes with it (docs/adr/0020-receive-slots.md).
    if (Array.isArray(d.tracks)) {
      for (const t of d.tracks) {
        if (t.session_id) state.trackOwners.set(t.mid, t);
        else state.trackOwners.delete(t.mid);
      }
    }
    if (d.type === "slots") {
      state.slotUpdates += 1;
      relabelRemoteMedia();
      return;
    }
    await onSignal(d);
  },

  server_shutdown() {
    showError("server_shutdown");
  },

  error(d) {
    onServerError(d.code || "error", d.message || "", d.action ?? null);
  },
};

// An ask the server refused is settled: it is not asked again after the next resume.
const SETTLES = { raise_hand: "handWanted", lower_hand: "handWanted", mute: "mutedWanted", unmute: "mutedWanted" };

function onServerError(code, message, action) {
  if (SETTLES[action]) state[SETTLES[action]] = null;
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
        media: p.media || "connecting",
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
    askAgain(); // a click the server never saw (lost in a move or a reconnect)
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
