// The callsd client's media: one RTCPeerConnection to the server's SFU, outgoing sources on send-only
// transceivers, perfect negotiation (the client is the polite side), and the remote audio/video elements.

import { applySink, openMic, stopMeter } from "./devices.js";
import { tileMedia } from "./render.js";
import { $, clearError, send, showError, state } from "./state.js";


// Simulcast layers per source when the server allows it (join_ack.simulcast; docs/video.md, "Publishing"), lowest
// first. The server forwards one layer per receiver, chosen from that receiver's bandwidth, so a slow link gets a
// smaller picture instead of a frozen one. A screen sends half size at a few frames per second (text stays legible,
// motion does not matter) and full size: the full layer's bitrate goes to sharpness, the low one is for receivers
// that could not keep up otherwise.
// The camera sends these layers (lowest first) when the server allows simulcast; the server tells camera and
// screen layers apart by MID (both use q and f) and sends this page transport-cc feedback, so the browser's
// send-side estimate can carry them all (docs/video.md, "Publishing"). Chromium sends the top layer only from a
// large enough capture.
export const CAMERA_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 100_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 300_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 900_000 },
];
export const SIMULCAST_LAYERS = {
  cam: CAMERA_LAYERS,
  screen: [
    { rid: "q", scaleResolutionDownBy: 2, maxBitrate: 300_000, maxFramerate: 5 },
    { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 2_500_000 },
  ],
};

// The transceiver options that make `purpose` send simulcast, or none (one encoding, the browser's defaults).
function encodingsFor(purpose) {
  const layers = state.simulcast ? SIMULCAST_LAYERS[purpose] : undefined;
  return layers ? { sendEncodings: layers.map((layer) => ({ ...layer })) } : {};
}

export async function startMedia() {
  teardownPeerConnection();
  const pc = new RTCPeerConnection({ iceServers: state.iceServers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
  state.pc = pc;
  state.makingOffer = false;
  pc.onicecandidate = ({ candidate }) => {
    if (state.pc !== pc) return;
    if (candidate && candidate.candidate) send("ice", { candidate: candidate.toJSON() });
  };
  pc.onnegotiationneeded = () => negotiate(pc);
  pc.ontrack = (ev) => onRemoteTrack(ev);
  pc.onconnectionstatechange = () => {
    document.body.dataset.media = pc.connectionState;
    watchMedia(pc);
  };
  pc.oniceconnectionstatechange = () => watchMedia(pc);
  await openMic();
  if (state.pc !== pc) return;
  if (state.micTrack) {
    state.micTrack.enabled = !state.muted;
    publish("mic", state.micTrack, state.micStream);
  }
  if (state.camTrack && state.camTrack.readyState === "live") publish("cam", state.camTrack, state.camStream);
  else {
    // Negotiate the camera's slot up front, inactive: the server learns how this browser numbers its video header
    // extensions before it forwards anyone's video to us, and turning the camera on later is a direction change.
    // A simulcast camera's layers would be declared here: a transceiver's encodings cannot be added later.
    state.outgoing.cam = pc.addTransceiver("video", { direction: "inactive", ...encodingsFor("cam") });
  }
  if (state.screenStream) publish("screen", state.screenStream.getVideoTracks()[0], state.screenStream);
  // Our audio receive slots go in our first offer (protocol 1.4): the server answers them with the audio of
  // those already in the call, and a join costs one offer/answer round instead of two. Added in the same task as
  // the transceivers above, so the one `negotiationneeded` offers them all.
  state.slotTransceivers = Array.from({ length: AUDIO_SLOTS }, () => pc.addTransceiver("audio", { direction: "recvonly" }));
}

// Outgoing media uses its own send-only transceivers, one per purpose, reused when the same source comes back.
// (`addTrack` would recycle a transceiver the server created to send us someone else's media, and the server
// would never see our track.) Stopping a source sets its transceiver inactive, which unpublishes it at the server.
export function publish(purpose, track, stream) {
  const pc = state.pc;
  if (!pc || !track) return;
  const tr = state.outgoing[purpose];
  if (tr && !tr.stopped) {
    tr.sender.replaceTrack(track).catch((err) => console.warn("callsd: replaceTrack", String(err)));
    // The msid stream id must be the new stream's: the server recognises the screen share by it.
    if (tr.sender.setStreams) tr.sender.setStreams(stream);
    tr.direction = "sendonly";
    return;
  }
  state.outgoing[purpose] = pc.addTransceiver(track, { direction: "sendonly", streams: [stream], ...encodingsFor(purpose) });
}

export function unpublish(purpose) {
  const tr = state.outgoing[purpose];
  if (!tr || tr.stopped || !state.pc) return;
  if (tr.mid === null) {
    // Never negotiated: nothing to tell the server; forget it so the next publish makes a fresh one.
    tr.stop();
    delete state.outgoing[purpose];
    return;
  }
  tr.sender.replaceTrack(null).catch(() => {});
  tr.direction = "inactive";
}

// Audio slots in our first offer: a call of up to this many others fits without a renegotiation per join.
const AUDIO_SLOTS = 8;

// The mids of our slot sections in the offer just made (the server reads them from the session's first offer).
function slotMids() {
  return (state.slotTransceivers || []).map((tr) => tr.mid).filter((mid) => mid !== null);
}

async function negotiate(pc) {
  // Only offer from stable: setLocalDescription() in have-remote-offer would make an answer instead.
  if (state.pc !== pc || pc.signalingState !== "stable" || state.makingOffer) return;
  try {
    state.makingOffer = true;
    await pc.setLocalDescription();
    if (state.pc !== pc || pc.signalingState !== "have-local-offer") return;
    // Pre-negotiated audio sections: someone joining later then costs us no SDP round (protocol 1.2), and ours
    // are in this offer (1.4: `slot_mids`), so the server does not offer them (a server before 1.4 still does).
    const mids = slotMids();
    send("sdp", { type: pc.localDescription.type, sdp: pc.localDescription.sdp, audio_slots: mids.length || AUDIO_SLOTS,
                  ...(mids.length ? { slot_mids: mids } : {}) });
  } catch (err) {
    console.error("callsd: negotiation", err);
  } finally {
    state.makingOffer = false;
  }
}

export async function onSignal(d) {
  const pc = state.pc;
  if (!pc) return;
  const desc = d.sdp !== undefined && (d.type === "offer" || d.type === "answer") ? { type: d.type, sdp: d.sdp } : null;
  if (desc) {
    // Polite peer: a server offer that collides with ours wins. Roll ours back (explicitly when it is already set;
    // setRemoteDescription rolls back implicitly when our setLocalDescription is still in flight), then answer.
    // Our transceivers still want negotiation, so `negotiationneeded` fires again once we are stable.
    const collision = desc.type === "offer" && (state.makingOffer || pc.signalingState !== "stable");
    if (desc.type === "answer" && pc.signalingState !== "have-local-offer") return; // stale answer
    if (collision) {
      state.glares += 1;
      if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
    }
    if (desc.type === "offer") state.offersReceived += 1;
    await pc.setRemoteDescription(desc);
    for (const c of state.pendingCandidates.splice(0)) await pc.addIceCandidate(c).catch(() => {});
    if (desc.type === "offer") {
      await pc.setLocalDescription();
      send("sdp", { type: pc.localDescription.type, sdp: pc.localDescription.sdp });
    }
    // Back to stable. A rolled-back offer of ours (glare) may have left changes unnegotiated, and the browser does
    // not always fire `negotiationneeded` again (its flag stays set from the rolled-back round): check ourselves.
    if (pc.signalingState === "stable") setTimeout(() => renegotiateIfNeeded(pc), 0);
    return;
  }
  const cand = d.candidate ?? (d.type === "candidate" ? d : null);
  if (cand) {
    const init = typeof cand === "string" ? { candidate: cand, sdpMid: d.sdpMid ?? "0", sdpMLineIndex: d.sdpMLineIndex ?? 0 } : cand;
    if (!pc.remoteDescription) state.pendingCandidates.push(init);
    else await pc.addIceCandidate(init).catch((err) => console.warn("callsd: candidate", err));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Media recovery: the media path failed while the WebSocket stays up (the server's media worker died, or the
// server's consent check expired). The server drops our published tracks and keeps the session; a fresh offer with
// new ICE credentials (an ICE restart) makes it re-register us, on a live worker if ours died, and re-publish our
// tracks. `pc.restartIce()` marks the connection as needing negotiation, so the offer goes through `negotiate`
// (perfect negotiation, we stay polite). Retries are bounded, with backoff; the WebSocket's own reconnect (a new
// peer connection) takes over if the socket drops meanwhile.
// ---------------------------------------------------------------------------------------------------------------

export const MEDIA_DISCONNECTED_GRACE_MS = 4000; // "disconnected" this long counts as failed
export const MEDIA_RESTART_DELAYS_MS = [0, 2000, 4000, 8000, 8000, 8000]; // before each attempt; then give up
const MEDIA_ATTEMPT_TIMEOUT_MS = 6000; // an attempt that has not connected by then is retried

const recovery = { pc: null, attempt: 0, timer: null, graceTimer: null, active: false, serverSaid: false };

function mediaDown(pc) {
  return pc.connectionState === "failed" || pc.iceConnectionState === "failed";
}

function mediaUp(pc) {
  return pc.connectionState === "connected" && (pc.iceConnectionState === "connected" || pc.iceConnectionState === "completed");
}

function watchMedia(pc) {
  if (state.pc !== pc) return;
  if (mediaUp(pc)) {
    clearTimeout(recovery.graceTimer);
    recovery.graceTimer = null;
    if (recovery.active && recovery.pc === pc) endMediaRecovery();
    return;
  }
  if (mediaDown(pc)) {
    clearTimeout(recovery.graceTimer);
    recovery.graceTimer = null;
    if (!recovery.active) beginMediaRecovery(pc);
    return;
  }
  const disconnected = pc.connectionState === "disconnected" || pc.iceConnectionState === "disconnected";
  if (disconnected && !recovery.active && recovery.graceTimer === null) {
    recovery.graceTimer = setTimeout(() => {
      recovery.graceTimer = null;
      if (state.pc === pc && !mediaUp(pc) && !recovery.active) beginMediaRecovery(pc);
    }, MEDIA_DISCONNECTED_GRACE_MS);
  }
}

// The server saw our media path end (`user_media_state` "disconnected" for our own session: its media host died,
// or its consent check expired). It knows seconds before the browser's own checks would (~3 s to "disconnected",
// then the grace above), and the browser may still call the dead path connected: restart ICE now regardless.
export function mediaLostOnServer() {
  const pc = state.pc;
  if (!pc || recovery.active) return;
  clearTimeout(recovery.graceTimer);
  recovery.graceTimer = null;
  beginMediaRecovery(pc, true);
}

function beginMediaRecovery(pc, serverSaid = false) {
  // Without the socket there is nobody to send an offer to: the WebSocket reconnect renegotiates from scratch.
  if (!state.wsOpen || state.phase !== "in_call") return;
  recovery.pc = pc;
  recovery.attempt = 0;
  recovery.serverSaid = serverSaid;
  recovery.active = true;
  state.mediaRecoveries += 1;
  showMediaStatus("reconnecting", "Reconnecting media…");
  scheduleIceRestart(pc);
}

function scheduleIceRestart(pc) {
  clearTimeout(recovery.timer);
  if (recovery.attempt >= MEDIA_RESTART_DELAYS_MS.length) {
    recovery.timer = null;
    showMediaStatus("failed", "Media connection lost");
    showError("media_failed");
    return;
  }
  const delay = MEDIA_RESTART_DELAYS_MS[recovery.attempt];
  recovery.timer = setTimeout(() => restartIce(pc), delay);
}

function restartIce(pc) {
  recovery.timer = null;
  if (state.pc !== pc || !recovery.active) return;
  if (mediaUp(pc) && !recovery.serverSaid) {
    endMediaRecovery();
    return;
  }
  recovery.serverSaid = false; // later attempts trust the browser's view again
  if (!state.wsOpen || state.phase !== "in_call") {
    // The socket is down: its reconnect makes a new peer connection; stop here.
    return;
  }
  recovery.attempt += 1;
  state.iceRestarts += 1;
  showMediaStatus("reconnecting", `Reconnecting media (attempt ${recovery.attempt})…`);
  const ufragBefore = localUfrag(pc);
  pc.restartIce();
  // `negotiationneeded` normally follows; if a rolled-back round swallowed it, offer ourselves.
  setTimeout(() => {
    if (state.pc !== pc || pc.signalingState !== "stable" || state.makingOffer || mediaUp(pc)) return;
    if (localUfrag(pc) === ufragBefore) negotiate(pc);
  }, 1000);
  recovery.timer = setTimeout(() => {
    if (state.pc !== pc || !recovery.active) return;
    if (mediaUp(pc)) endMediaRecovery();
    else scheduleIceRestart(pc);
  }, MEDIA_ATTEMPT_TIMEOUT_MS);
}

function localUfrag(pc) {
  const m = /a=ice-ufrag:(\S+)/.exec(pc.localDescription?.sdp || "");
  return m ? m[1] : null;
}

function endMediaRecovery() {
  const wasFailed = $("media-status")?.dataset.state === "failed";
  clearTimeout(recovery.timer);
  clearTimeout(recovery.graceTimer);
  recovery.timer = recovery.graceTimer = null;
  recovery.active = false;
  recovery.pc = null;
  recovery.attempt = 0;
  showMediaStatus("connected", "");
  if (wasFailed) clearError("media_failed");
}

function showMediaStatus(name, text) {
  const el = $("media-status");
  if (!el) return;
  el.dataset.state = name;
  el.textContent = text;
  el.hidden = name === "connected";
  document.body.dataset.mediaRecovery = name;
}

const renegotiations = new WeakMap(); // transceiver -> times we re-offered it because it looked unnegotiated

function renegotiateIfNeeded(pc) {
  if (state.pc !== pc || pc.signalingState !== "stable" || state.makingOffer) return;
  for (const tr of Object.values(state.outgoing)) {
    if (!tr || tr.stopped) continue;
    const pending = tr.mid === null || (tr.direction !== tr.currentDirection && tr.direction !== "recvonly");
    if (!pending) {
      renegotiations.delete(tr);
      continue;
    }
    const n = renegotiations.get(tr) || 0;
    if (n >= 3) continue; // the server keeps answering otherwise: do not loop
    renegotiations.set(tr, n + 1);
    negotiate(pc);
    return;
  }
}

function onRemoteTrack(ev) {
  const track = ev.track;
  const stream = ev.streams[0] || new MediaStream([track]);
  const key = `${stream.id}/${track.id}`;
  if (document.querySelector(`[data-media-key="${CSS.escape(key)}"]`)) return;
  let el;
  if (track.kind === "audio") {
    el = document.createElement("audio");
    el.setAttribute("data-testid", "remote-audio");
    el.autoplay = true;
    $("audios").appendChild(el);
    applySink(el);
  } else {
    el = document.createElement("video");
    el.autoplay = true;
    el.playsInline = true;
    el.muted = true;
    const fig = document.createElement("figure");
    fig.className = "tile";
    const cap = document.createElement("figcaption");
    fig.append(el, cap);
    $("videos").appendChild(fig);
  }
  el.dataset.mediaKey = key;
  el.dataset.mid = (ev.transceiver && ev.transceiver.mid) || "";
  el.dataset.streamId = stream.id;
  el.dataset.trackId = track.id;
  el.srcObject = new MediaStream([track]);
  const remove = () => {
    const box = el.closest("figure") || el;
    box.remove();
  };
  track.addEventListener("ended", remove);
  stream.addEventListener("removetrack", (e) => {
    if (e.track === track) remove();
  });
  // With an SFU, a forwarded track stays `live` but goes `muted` when its transceiver stops receiving.
  track.addEventListener("mute", () => {
    const tr = state.pc?.getTransceivers().find((t) => t.receiver.track === track);
    if (tr && (tr.currentDirection === "inactive" || tr.currentDirection === "sendonly" || tr.stopped)) remove();
  });
  el.play?.().catch(() => {});
  relabelRemoteMedia();
}

// Decide which remote videos are screen shares and whose they are, from the stream ids the server announced.
export function relabelRemoteMedia() {
  for (const el of document.querySelectorAll("video[data-stream-id], audio[data-stream-id]")) {
    const sid = el.dataset.streamId;
    const announced = state.trackOwners.get(el.dataset.mid); // the server said whose it is (protocol 1.1)
    let owner = announced ? announced.session_id : state.screenStreams.get(sid);
    let isScreen = announced ? announced.source === "screen" : owner !== undefined;
    if (!announced && !isScreen) {
      for (const [screenId, who] of state.screenStreams) {
        if (sid.includes(screenId) || screenId.includes(sid)) {
          owner = who;
          isScreen = true;
        }
      }
    }
    if (!owner) {
      // The server names forwarded tracks after their publisher ("<session id>_<n>" in a=msid); fall back on that.
      const trackId = el.dataset.trackId || "";
      for (const psid of state.participants.keys()) {
        if (trackId.startsWith(`${psid}_`) || sid.includes(psid)) owner = psid;
      }
    }
    if (!announced && !isScreen && /screen/i.test(sid)) isScreen = true;
    if (owner) el.dataset.sessionId = owner;
    else delete el.dataset.sessionId; // a pre-negotiated section whose owner left (protocol 1.2 `slots`)
    if (el.tagName === "AUDIO") {
      el.volume = owner && state.volumes.has(owner) ? state.volumes.get(owner) : 1;
      continue;
    }
    el.setAttribute("data-testid", isScreen ? "remote-screen" : "remote-video");
    const fig = el.closest("figure");
    if (!fig) continue;
    // A camera goes into its owner's tile (render.js draws the tiles); one whose owner is unknown waits in `videos`.
    const home = isScreen ? $("screens") : (owner && tileMedia(owner)) || $("videos");
    if (fig.parentElement !== home) home.appendChild(fig);
    const p = owner ? state.participants.get(owner) : null;
    const label = (owner && state.labels.get(owner)) || (p ? p.name : "participant");
    fig.querySelector("figcaption").textContent = `${label}${isScreen ? " (screen)" : ""}`;
  }
}

export function teardownPeerConnection() {
  if (state.pc) {
    const pc = state.pc;
    state.pc = null;
    pc.onicecandidate = pc.onnegotiationneeded = pc.ontrack = pc.onconnectionstatechange = null;
    pc.oniceconnectionstatechange = null;
    pc.close();
  }
  endMediaRecovery();
  state.pendingCandidates = [];
  state.outgoing = {};
  for (const el of document.querySelectorAll("[data-media-key]")) (el.closest("figure") || el).remove();
}

export function teardownMedia() {
  teardownPeerConnection();
  stopMeter();
  for (const t of [state.micTrack, state.camTrack]) if (t) t.stop();
  if (state.screenStream) for (const t of state.screenStream.getTracks()) t.stop();
  state.micTrack = state.micStream = state.camTrack = state.camStream = state.screenStream = null;
  $("local-video").srcObject = null;
  $("local-tile").hidden = true;
}

