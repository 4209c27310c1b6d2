// The name rules the server enforces (adapters/signaling_names.py, docs/protocol.md "Names"), checked here first so
// the page can explain a bad name before it ever reaches the server; the server's answer still wins. Also how a
// name is shown: invisible and direction-changing characters removed, initials and a stable colour for avatars, and
// "Ada (2)" when two people share a name.

export const CHANNEL_MAX = 64;
export const NAME_MAX = 64;
const CHANNEL_RE = /^[A-Za-z0-9._-]{1,64}$/;
// Controls, bidi marks/embeddings/overrides/isolates, zero-width spaces, word joiners, BOM, soft hyphen.
const INVISIBLE_RE = /[\u0000-\u0008\u000e-\u001f\u007f-\u009f\u00ad\u061c\u200b\u200c\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]/g;

export const CHANNEL_RULE = "Channel names use letters A-Z, digits, dots, dashes and underscores, up to 64 characters.";

// null when the channel name is fine, else the sentence to show.
export function channelProblem(channel) {
  if (!channel) return "Type a channel name.";
  if (channel.length > CHANNEL_MAX) return `That channel name is ${channel.length} characters long. ${CHANNEL_RULE}`;
  if (!CHANNEL_RE.test(channel)) return `"${cleanName(channel).slice(0, 40)}" is not a valid channel name. ${CHANNEL_RULE}`;
  return null;
}

export function cleanName(raw) {
  return String(raw ?? "").replace(INVISIBLE_RE, "").replace(/\s+/g, " ").trim();
}

// null when the display name is fine (after cleaning), else the sentence to show.
export function nameProblem(raw) {
  const name = cleanName(raw);
  if (!name) return "Type your name: it is how the others will see you.";
  if (name.length > NAME_MAX) return `Names can be at most ${NAME_MAX} characters (this one has ${name.length}).`;
  return null;
}

export function initials(name) {
  const words = cleanName(name).split(" ").filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : [words[0] || "?"];
  return letters.map((w) => [...w][0]).join("").toUpperCase();
}

// A stable colour per name (the same person gets the same colour on every page): a hash picks a hue.
export function avatarColour(key) {
  let h = 2166136261;
  for (const ch of String(key)) h = Math.imul(h ^ ch.codePointAt(0), 16777619) >>> 0;
  return `hsl(${h % 360} 55% 32%)`;
}

// session id -> the label to show: the cleaned name, with " (2)", " (3)" for later sessions sharing it.
export function displayLabels(participants) {
  const seen = new Map();
  const labels = new Map();
  for (const [sid, p] of participants) {
    const base = cleanName(p.name || p.user_id || sid) || "guest";
    const n = (seen.get(base) || 0) + 1;
    seen.set(base, n);
    labels.set(sid, n === 1 ? base : `${base} (${n})`);
  }
  return labels;
}
