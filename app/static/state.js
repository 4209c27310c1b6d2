// Shared state of the callsd client, the message banners and the signaling `send`; imported by app.js and media.js.

export const STORAGE_KEY = "callsd.session";
export const NAME_KEY = "callsd.name";
export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 10_000;
export const OFFER_RETRY_AFTER = 3; // failed reconnect attempts before the page offers "Retry now"
export const REACTION_MS = 4000;

export const ERROR_TEXT = {
  call_full: "The call is full: no more participants can join.",
  screen_already_shared: "Someone is already sharing their screen.",
  screen_sharing_disabled: "Screen sharing is disabled on this server.",
  not_host: "Only the host can do that.",
  not_in_call: "You are not in this call.",
  already_in_call: "You are already in this call.",
  unknown_target: "That participant is no longer in the call.",
  rate_limited: "Too many actions: slow down a little.",
  shutting_down: "The server is shutting down; joining is not possible right now.",
  unauthorized: "Your invite link was not accepted. Ask for a new one.",
  token_needed: "This server only admits people with an invite link. Ask the call's organiser for one.",
  invalid_channel: "Channel names use letters A-Z, digits, dots, dashes and underscores, up to 64 characters.",
  invalid_name: "Names need at least one visible character, and at most 64.",
  bad_request: "The server could not accept that request.",
  token_expired: "Your access token has expired.",
  token_invalid: "Your access token is not valid.",
  channel_forbidden: "Your token does not allow this channel.",
  unknown_session: "Your previous session has expired; joining again.",
  not_joined: "You are not in a call.",
  sdp_rejected: "The server could not use this browser's media description.",
  media_unavailable: "The server has no media service running; audio and video will not work.",
  replaced: "This call was opened in another tab or window.",
  connection_lost: "Lost connection to the server. Reconnecting…",
  reconnect_failed: "Can't reach the server. The page keeps trying; you can also retry now.",
  media_denied: "Could not open your microphone.",
  media_failed: "The media connection could not be restored. Reload the page to try again.",
  screen_denied: "Screen sharing was cancelled or refused.",
  camera_denied: "Could not open your camera.",
  removed: "The host removed you from the call.",
  mic_needed: "Your microphone is blocked, so you cannot unmute. Allow it in the browser's site settings, then try again.",
  call_ended: "The call has ended.",
  timed_out: "You were disconnected for too long and left the call.",
  server_shutdown: "The server is shutting down: the call may end soon. The page reconnects when it is back.",
};

export const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);
export const $$ = (testid, root = document) => [...root.querySelectorAll(`[data-testid="${testid}"]`)];

export const params = new URLSearchParams(location.search);

// ---------------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------------

export const state = {
  ws: null,
  wsOpen: false,
  phase: "lobby", // lobby | joining | in_call | reconnecting | left
  sessionId: null,
  reconnectSecret: "", // from join_ack; sent with `reconnect` (never shown, never broadcast)
  slotTransceivers: [], // our recvonly audio transceivers, offered as receive slots in our first offer (1.4)
  slotUpdates: 0, // `slots` signals received: a track moved onto a pre-negotiated section without an SDP round
  offersReceived: 0, // server offers received (each one an SDP round)
  trackOwners: new Map(), // mid -> {mid, session_id, kind, source}, from the `tracks` of server offers
  channelId: null,
  callId: null,
  hostId: null,
  userId: null,
  protocolVersion: null,
  iceServers: [],
  simulcast: false, // join_ack.simulcast: the server forwards one simulcast layer per receiver (docs/video.md)
  participants: new Map(), // session_id -> {user_id, name, muted, speaking, hand, screen, video, disconnected}
  screenStreams: new Map(), // stream id -> session id (from user_screen_on)
  pc: null,
  makingOffer: false,
  glares: 0, // server offers that crossed ours (we rolled back)
  mediaRecoveries: 0, // times the media path failed while the socket was up and an ICE restart began
  iceRestarts: 0, // ICE restarts attempted (pc.restartIce())
  pendingCandidates: [],
  micStream: null,
  micTrack: null,
  camTrack: null,
  camStream: null,
  outgoing: {}, // "mic" | "cam" | "screen" -> the RTCRtpTransceiver that publishes it
  screenStream: null,
  muted: true, // sessions join muted (docs/protocol.md)
  micBlocked: false, // the last getUserMedia for the microphone failed
  micSwitches: 0, // microphone changes applied to a live call (tests)
  deviceChanges: 0, // devicechange events seen (tests)
  previewStream: null, // the lobby's camera preview
  labels: new Map(), // session id -> shown name ("Ada (2)" when names repeat)
  volumes: new Map(), // session id -> playback volume 0..1 chosen on this page
  pinned: null, // session id shown large in speaker view
  view: "grid", // grid | speaker
  startAt: null, // the call's start (ms since the epoch) for the timer
  lastSpeaker: null,
  hand: false, // the server's word (its broadcasts)
  handWanted: null, // a raise (true) or lower (false) the user asked for and the server has not confirmed yet
  mutedWanted: null, // likewise a mute (true) or unmute (false)
  authMode: null,
  reconnectAttempt: 0,
  reconnectTimer: null,
  intentionalClose: false,
  resumeOnOpen: false, // the next socket should send `reconnect` for state.sessionId
  inbox: Promise.resolve(), // serialises the handling of server messages
  log: [], // last signaling messages, for debugging and tests
  errorsShown: [], // codes of every error message shown, for tests
};

export function remember(entry) {
  state.log.push(entry);
  if (state.log.length > 200) state.log.shift();
}

export function saveSession() {
  if (state.sessionId && state.channelId) {
    // reconnect_secret (join_ack, issue 8 item 4): only this tab's storage holds it; `reconnect` must present it.
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ session_id: state.sessionId, channel_id: state.channelId,
                                                         reconnect_secret: state.reconnectSecret }));
  }
}

export function loadSession() {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

export function forgetSession() {
  sessionStorage.removeItem(STORAGE_KEY);
}

// ---------------------------------------------------------------------------------------------------------------
// Messages and status
// ---------------------------------------------------------------------------------------------------------------

export function showError(code, message) {
  const banner = $("error-banner");
  banner.dataset.code = code;
  state.errorsShown.push(code);
  $("error-text").textContent = ERROR_TEXT[code] || message || code;
  banner.hidden = false;
}

export function clearError(code) {
  const banner = $("error-banner");
  if (code === undefined || banner.dataset.code === code) {
    banner.hidden = true;
    delete banner.dataset.code;
  }
}

export function showStatus(text, kind = "info") {
  const banner = $("status-banner");
  if (!text) {
    banner.hidden = true;
    banner.textContent = "";
    delete banner.dataset.kind;
    return;
  }
  banner.textContent = text;
  banner.dataset.kind = kind;
  banner.hidden = false;
}

export function setConnection(stateName, text) {
  const el = $("connection-status");
  el.dataset.state = stateName;
  el.textContent = text;
}


export function send(type, data = {}) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  const msg = { type, data };
  remember({ dir: "out", type, data: type === "sdp" ? { type: data.type } : data });
  state.ws.send(JSON.stringify(msg));
  return true;
}
