// Protocol v1 (docs/protocol.md) for the page: one websocket session at a time, reconnecting
// with backoff when the daemon goes away, resuming the lost session when the daemon (or, behind a
// load balancer, another replica sharing its store) still has it. The audio sent since the last
// stable segment is kept and sent again from where the resumed session's `ready` says the server's
// audio ends, so nothing is heard twice or lost (docs/deploy.md). No DOM here: the page listens
// to the callbacks.

const MOVED = 4503; // the replica drains: its text is committed, resume elsewhere at once
const RETRY_CODES = new Set([1001, 1006, 1011, 1012, 1013, 4429, MOVED]); // worth trying again
const KEEP_BEFORE_STABLE_S = 5; // audio kept before the last stable's end (a new replica hears it again)
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10000];
const MAX_PENDING_SECONDS = 30; // audio held while (re)connecting

export const CLOSE_MEANINGS = {
  4400: "the daemon could not read a message",
  4401: "missing or invalid API key or token",
  4403: "this page's origin is not allowed for the key",
  4404: "the session expired",
  4408: "the session reached its maximum length",
  4409: "messages out of order",
  4413: "a frame was too large",
  4415: "unsupported audio format or language",
  4429: "the daemon is busy or over its limits",
  4503: "this replica is draining; moving to another",
};

export function streamUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = new URLSearchParams(location.search).get("token");
  return `${scheme}//${location.host}/v1/stream` + (token ? `?token=${encodeURIComponent(token)}` : "");
}

export class CaptionStream {
  // callbacks: onReady(ready), onLanguage(msg), onPartial(msg), onStable(segment with times on the
  // page's timeline), onStatus(text, kind), onEnd(), onFatal(text)
  constructor(url, { json = false, language = "auto", sampleRate = 16000, offset = 0 }, callbacks) {
    this.url = url;
    this.json = json;
    this.language = language;
    this.sampleRate = sampleRate;
    this.on = callbacks;
    this.socket = null;
    this.ready = false;
    this.stopping = false;
    this.attempt = 0;
    this.retryTimer = null;
    this.sessionId = null;
    this.lastStableId = -1;
    this.offset = offset; // seconds: where the current session's time 0 lies on the page's timeline
    this.sessionSamples = 0;
    this.pending = []; // audio captured before the session is ready
    this.pendingBytes = 0;
    this.kept = []; // {at: session sample index, pcm}: sent since the last stable, for a resume
  }

  encode(message) {
    return this.json ? JSON.stringify(message) : MessagePack.encode(message);
  }

  decode(data) {
    return this.json ? JSON.parse(data) : MessagePack.decode(new Uint8Array(data));
  }

  connect() {
    clearTimeout(this.retryTimer);
    const socket = new WebSocket(this.url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.ready = false;
    socket.onopen = () => {
      const start = { type: "start", version: 1, sample_rate: this.sampleRate, encoding: "pcm_s16le", channels: 1, language: this.language, word_timestamps: true };
      if (this.sessionId !== null) start.resume = { session_id: this.sessionId, last_stable_id: this.lastStableId };
      socket.send(this.encode(start));
    };
    socket.onmessage = (event) => this.receive(this.decode(event.data));
    socket.onclose = (event) => this.closed(socket, event);
  }

  receive(message) {
    switch (message.type) {
      case "ready":
        if (this.sessionId !== message.session_id) {
          // A fresh session: its clock starts at 0 where the previous one stopped.
          this.offset += this.sessionSamples / this.sampleRate;
          this.sessionSamples = 0;
          this.lastStableId = -1;
          this.kept = [];
        }
        this.sessionId = message.session_id;
        this.ready = true;
        this.attempt = 0;
        this.on.onReady(message);
        if (message.resumed) this.replayKept(message.audio_seconds || 0);
        this.flushPending();
        break;
      case "language":
        this.on.onLanguage(message);
        break;
      case "partial":
        this.on.onPartial(message);
        break;
      case "stable":
        if (message.id <= this.lastStableId) break; // already shown before a reconnect
        this.lastStableId = message.id;
        this.acknowledge(message.end);
        this.on.onStable(this.shifted(message));
        break;
      case "error":
        if (message.fatal === false) this.on.onStatus(`Warning: ${message.message}`, "warning");
        else this.lastError = message.message;
        break;
      case "end":
        break; // the close that follows ends the stream (see `closed`)
      default:
        break; // vad and future events are not shown
    }
  }

  shifted(segment) {
    const shift = (t) => t + this.offset;
    return {
      ...segment,
      start: shift(segment.start),
      end: shift(segment.end),
      words: (segment.words || []).map((w) => ({ ...w, start: shift(w.start), end: shift(w.end) })),
    };
  }

  sendAudio(pcm) {
    if (this.stopping) return;
    if (!this.ready) {
      // Held while (re)connecting and sent once the session is ready, so the first words
      // (spoken while the socket opens) are not lost; bounded so a long outage drops the
      // oldest audio rather than growing without end.
      this.pending.push(pcm);
      this.pendingBytes += pcm.byteLength;
      while (this.pendingBytes > MAX_PENDING_SECONDS * this.sampleRate * 2) this.pendingBytes -= this.pending.shift().byteLength;
      return;
    }
    this.kept.push({ at: this.sessionSamples, pcm });
    this.socket.send(this.json ? pcm : MessagePack.encode({ type: "audio", data: new Uint8Array(pcm) }));
    this.sessionSamples += pcm.byteLength / 2;
  }

  acknowledge(stableEnd) {
    // Audio older than the stable segment (less a margin) is committed on the server's side.
    const keepFrom = (stableEnd - KEEP_BEFORE_STABLE_S) * this.sampleRate;
    while (this.kept.length && this.kept[0].at + this.kept[0].pcm.byteLength / 2 <= keepFrom) this.kept.shift();
  }

  replayKept(fromSeconds) {
    // The resumed session holds audio up to `fromSeconds`: what this page sent after is sent again.
    const from = Math.round(fromSeconds * this.sampleRate);
    const kept = this.kept;
    this.kept = [];
    this.sessionSamples = from;
    for (const { at, pcm } of kept) {
      const skip = Math.max(0, from - at);
      if (skip * 2 < pcm.byteLength) this.sendAudio(skip ? pcm.slice(skip * 2) : pcm);
    }
  }

  flushPending() {
    const held = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    for (const pcm of held) this.sendAudio(pcm);
  }

  stop() {
    // Finalise: the daemon sends the last stable segments and `end`, then closes.
    this.stopping = true;
    clearTimeout(this.retryTimer);
    if (this.socket && this.ready) this.socket.send(this.encode({ type: "stop" }));
    else this.finish();
  }

  finish() {
    this.stopping = true;
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close();
    this.socket = null;
    this.on.onEnd();
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    this.ready = false;
    if (this.stopping) {
      this.socket = null;
      this.on.onEnd();
      return;
    }
    if (event.code === 4404) {
      this.sessionId = null; // the daemon forgot the session: start a new one
      this.offset += this.sessionSamples / this.sampleRate;
      this.sessionSamples = 0;
      this.lastStableId = -1;
      this.connect();
      return;
    }
    const reason = this.lastError || event.reason || CLOSE_MEANINGS[event.code];
    this.lastError = null;
    if (event.code !== 1000 && !RETRY_CODES.has(event.code)) {
      this.socket = null;
      this.on.onFatal(`The daemon closed the stream (${event.code}): ${reason || "no reason given"}.`);
      return;
    }
    // A draining replica asks to move now: the first try is immediate (another replica is there).
    const delay = event.code === MOVED && this.attempt === 0 ? 0 : BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (0.8 + 0.4 * Math.random());
    this.attempt += 1;
    const what = event.code === 1006 ? "Cannot reach the transcription daemon" : `The daemon closed the stream (${event.code}${reason ? ": " + reason : ""})`;
    this.on.onStatus(`${what}. Reconnecting in ${Math.ceil(delay / 1000)} s…`, "error");
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
