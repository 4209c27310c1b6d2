// The call's own controls: microphone (server-confirmed unmute, never without a working microphone), hand, camera,
// screen share, full screen, reactions, keyboard shortcuts (M, H, Space push-to-talk), the "You are muted" hint
// and the invite link.

import { openCamera, openMic, refreshDevices, SPEAKING_LEVEL } from "./devices.js";
import { publish, unpublish } from "./media.js";
import { nameOf } from "./session.js";
import { renderParticipants } from "./render.js";
import { $, params, REACTION_MS, send, showError, state } from "./state.js";

// ---------------------------------------------------------------------------------------------------------------
// Local controls
// ---------------------------------------------------------------------------------------------------------------

// The button reflects the server's broadcasts (user_muted/user_unmuted). Muting silences the microphone at once;
// unmuting waits for the server's confirmation, so a refused or lost `unmute` never leaves a live microphone, and
// is not even asked for without a working microphone. Like the hand's, the ask is kept until the server confirms
// it, and asked again when the session's state next arrives (``askAgain``).
export async function setLocalMuted(muted, { notify = true } = {}) {
  if (notify) {
    if (state.offline) return;
    if (muted) {
      if (state.micTrack) state.micTrack.enabled = false;
      state.mutedWanted = true;
      send("mute");
      return;
    }
    const track = await openMic();
    if (!track) {
      showError("mic_needed");
      return;
    }
    if (state.pc && !state.outgoing.mic) publish("mic", track, state.micStream);
    state.mutedWanted = false;
    send("unmute");
    return;
  }
  state.muted = muted;
  if (state.mutedWanted === muted) state.mutedWanted = null;
  if (state.micTrack) state.micTrack.enabled = !muted;
  if (!muted) $("muted-hint").hidden = true;
  const btn = $("mute-button");
  btn.querySelector(".label").textContent = muted ? "Unmute" : "Mute";
  btn.querySelector("use").setAttribute("href", muted ? "#i-mic-off" : "#i-mic");
  btn.setAttribute("aria-pressed", String(muted));
  btn.dataset.muted = String(muted);
}

// The hand button, like the microphone's, shows what the server confirmed. A click is kept as an intent until the
// server's broadcast confirms it: one lost with the socket, or with a call's owner that stopped acting for it (a
// cluster moving the session to another node), is asked again when the session's state next arrives
// (``askAgain``), so a click is never silently dropped. Every such ask is idempotent on the server.
export function toggleHand() {
  const want = !(state.handWanted ?? state.hand);
  state.handWanted = want;
  send(want ? "raise_hand" : "lower_hand"); // no socket now: asked again once the session is resumed
}

// The session's state arrived (a join, a resume) and the buttons show it: ask again what it does not show yet.
export function askAgain() {
  if (state.handWanted !== null) send(state.handWanted ? "raise_hand" : "lower_hand");
  if (state.mutedWanted === false && !state.micTrack) state.mutedWanted = null; // no microphone to unmute any more
  if (state.mutedWanted !== null) send(state.mutedWanted ? "mute" : "unmute");
}

export function setHandButton(raised) {
  state.hand = raised;
  if (state.handWanted === raised) state.handWanted = null;
  const btn = $("hand-button");
  btn.querySelector(".label").textContent = raised ? "Lower hand" : "Raise hand";
  btn.setAttribute("aria-pressed", String(raised));
}

export function setCameraButton(on) {
  const btn = $("camera-button");
  btn.querySelector(".label").textContent = on ? "Stop camera" : "Start camera";
  btn.querySelector("use").setAttribute("href", on ? "#i-cam" : "#i-cam-off");
  btn.setAttribute("aria-pressed", String(on));
}

export function setScreenButton(on) {
  const btn = $("screen-button");
  btn.querySelector(".label").textContent = on ? "Stop sharing" : "Share screen";
  btn.setAttribute("aria-pressed", String(on));
}

export async function toggleCamera() {
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

export async function toggleScreen() {
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

export function stopScreenShare({ notify }) {
  const stream = state.screenStream;
  if (!stream) return;
  state.screenStream = null;
  for (const t of stream.getTracks()) t.stop();
  unpublish("screen");
  if (notify) send("screen_off");
  setScreenButton(false);
  renderParticipants();
}

export function fullScreenShare() {
  const video = document.querySelector("[data-testid=remote-screen]");
  const target = video?.closest("figure") || video;
  if (target?.requestFullscreen) target.requestFullscreen().catch((err) => console.warn("callsd: fullscreen", err));
}

export function showReaction(sessionId, emoji) {
  const el = document.createElement("div");
  el.className = "reaction";
  el.setAttribute("data-testid", "reaction");
  el.dataset.sessionId = sessionId;
  // Known reactions are drawn with the picker's icon (no emoji font needed); others as the text received.
  const icon = document.querySelector(`[data-testid=reaction-button][data-emoji="${CSS.escape(emoji)}"] svg`);
  const who = document.createElement("span");
  who.className = "name";
  who.textContent = nameOf(sessionId);
  const what = icon ? icon.cloneNode(true) : document.createTextNode(emoji);
  if (icon) {
    what.setAttribute("role", "img");
    what.setAttribute("aria-label", emoji);
  }
  el.dataset.emoji = emoji;
  el.append(what, " ", who);
  $("reactions").appendChild(el);
  setTimeout(() => el.remove(), REACTION_MS);
}

// While the lobby shows, keep its list of calls in progress fresh.
// ---------------------------------------------------------------------------------------------------------------
// Keyboard: M toggles mute, H the hand, holding Space talks while muted (push-to-talk). Ignored while typing, and
// Space is left alone on buttons and links, where it means "press".
// ---------------------------------------------------------------------------------------------------------------

const pushToTalk = { active: false };

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

export function onKeyDown(ev) {
  if (state.phase !== "in_call" || state.offline || ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) return;
  const key = ev.key.toLowerCase();
  if (key === "m" && !ev.repeat) {
    setLocalMuted(!state.muted);
  } else if (key === "h" && !ev.repeat) {
    toggleHand();
  } else if (key === " " && !(ev.target instanceof HTMLButtonElement || ev.target instanceof HTMLAnchorElement)) {
    ev.preventDefault();
    if (!ev.repeat && state.muted && !pushToTalk.active) {
      pushToTalk.active = true;
      setLocalMuted(false);
    }
  }
}

export function onKeyUp(ev) {
  if (ev.key === " " && pushToTalk.active) {
    pushToTalk.active = false;
    setLocalMuted(true);
  }
}

// Speaking into a muted microphone: say so (the level meter listens to a clone of the track, see devices.js). The
// level is smoothed (a peak decays over ~200 ms); three loud samples in a row (150 ms) count as speech.
let loudSamples = 0;
let lastHintAt = 0;
const HINT_QUIET_MS = 20_000; // say it once, not at every word
export function onLocalLevel(level) {
  if (state.phase !== "in_call") return;
  const loud = level > SPEAKING_LEVEL;
  loudSamples = loud ? loudSamples + 1 : 0;
  if (loudSamples >= 3 && state.muted && $("muted-hint").hidden && Date.now() - lastHintAt > HINT_QUIET_MS) {
    lastHintAt = Date.now();
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
export async function copyInvite() {
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
