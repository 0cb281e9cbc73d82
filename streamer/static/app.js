// The caption page: microphone → AudioWorklet (16 kHz PCM) → websocket → captions on screen.
// Query options: autostart=1, overlay=1 (OBS browser source), chroma=RRGGBB, token=…, language=xx,
// json=1 (JSON framing instead of msgpack).

import { toSRT, toTXT, toVTT } from "./captions.js";
import { CaptionStream, streamUrl } from "./stream.js";

const TARGET_RATE = 16000;
const FRAME_SAMPLES = 640; // 40 ms at 16 kHz

const params = new URLSearchParams(location.search);
const overlay = params.get("overlay") === "1";
const $ = (id) => document.getElementById(id);
const ui = {
  toggle: $("toggle"),
  level: $("level"),
  language: $("language"),
  status: $("status"),
  captions: $("captions"),
  stable: $("stable"),
  partial: $("partial"),
};

const segments = []; // stable segments on the page's timeline, for downloads
let stream = null;
let capture = null;

function setStatus(text, kind = "") {
  ui.status.textContent = text;
  ui.status.className = `status ${kind}`.trim();
}

function setRunning(running) {
  ui.toggle.textContent = running ? "Stop" : "Start";
  ui.toggle.setAttribute("aria-pressed", String(running));
  ui.toggle.disabled = false;
}

function nearBottom() {
  const box = ui.captions;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
}

function showCaptions(update) {
  // Auto-scroll only when the reader is already at the bottom (not while they scroll back).
  const follow = nearBottom();
  update();
  if (follow) ui.captions.scrollTop = ui.captions.scrollHeight;
}

function addStable(segment) {
  segments.push(segment);
  showCaptions(() => {
    const span = document.createElement("span");
    span.className = "segment";
    span.textContent = segment.text; // Whisper's text carries its leading space
    ui.stable.append(span);
    ui.partial.textContent = "";
  });
}

function showPartial(message) {
  showCaptions(() => {
    ui.partial.textContent = message.text;
  });
}

async function startCapture(onFrame) {
  const media = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const context = new AudioContext();
  await context.audioWorklet.addModule("capture-worklet.js");
  const source = context.createMediaStreamSource(media);
  const node = new AudioWorkletNode(context, "capture", {
    numberOfInputs: 1,
    numberOfOutputs: 0,
    processorOptions: { targetRate: TARGET_RATE, frameSamples: FRAME_SAMPLES },
  });
  node.port.onmessage = (event) => {
    if (event.data.type === "audio") onFrame(event.data);
  };
  source.connect(node);
  if (context.state === "suspended") await context.resume();
  return {
    stop() {
      source.disconnect();
      node.port.onmessage = null;
      media.getTracks().forEach((track) => track.stop());
      return context.close();
    },
  };
}

function microphoneProblem(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return location.protocol === "http:" && location.hostname !== "localhost" && location.hostname !== "127.0.0.1"
        ? "The browser refused the microphone: pages served over plain http (other than localhost) may not use it. Serve the daemon over https."
        : "Microphone access was refused. Allow it in the browser's site settings, then press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one and press Start again.";
    case "NotReadableError":
      return "The microphone is in use by another application or could not be opened.";
    default:
      return `The microphone could not be started: ${error && error.message ? error.message : error}`;
  }
}

async function start() {
  ui.toggle.disabled = true;
  setStatus("Starting the microphone…");
  stream = new CaptionStream(
    streamUrl(location),
    {
      json: params.get("json") === "1",
      language: params.get("language") || "auto",
      sampleRate: TARGET_RATE,
      offset: segments.length ? segments[segments.length - 1].end : 0, // Start after Stop continues the timeline
    },
    {
      onReady: () => setStatus("Listening. Captions appear as you speak."),
      onLanguage: (message) => {
        ui.language.textContent = message.language;
        ui.language.hidden = false;
        document.documentElement.lang = message.language;
      },
      onPartial: showPartial,
      onStable: addStable,
      onStatus: setStatus,
      onEnd: () => finished("Stopped. The transcript can be downloaded below."),
      onFatal: (text) => finished(text, "error"),
    },
  );
  try {
    capture = await startCapture((frame) => {
      ui.level.value = Math.min(1, frame.rms * 4); // speech RMS sits around 0.05-0.2
      stream.sendAudio(frame.pcm);
    });
  } catch (error) {
    stream = null;
    setRunning(false);
    setStatus(microphoneProblem(error), "error");
    return;
  }
  setStatus("Connecting to the transcription daemon…");
  stream.connect();
  setRunning(true);
}

function finished(text, kind = "") {
  if (capture) capture.stop();
  capture = null;
  stream = null;
  ui.level.value = 0;
  ui.partial.textContent = "";
  setRunning(false);
  setStatus(text, kind);
}

function stop() {
  if (!stream) return;
  ui.toggle.disabled = true;
  setStatus("Finishing the last words…");
  if (capture) capture.stop();
  capture = null;
  stream.stop();
}

function download(format) {
  const writers = { srt: [toSRT, "application/x-subrip"], vtt: [toVTT, "text/vtt"], txt: [toTXT, "text/plain"] };
  const [write, type] = writers[format];
  const url = URL.createObjectURL(new Blob([write(segments)], { type: `${type};charset=utf-8` }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `transcript-${new Date().toISOString().slice(0, 19).replace(/[T:]/g, "-")}.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

ui.toggle.addEventListener("click", () => (stream ? stop() : start()));
document.querySelectorAll("button[data-format]").forEach((button) => {
  button.addEventListener("click", () => download(button.dataset.format));
});

if (overlay) {
  document.body.classList.add("overlay");
  const chroma = params.get("chroma");
  if (chroma && /^[0-9a-fA-F]{6}$/.test(chroma)) {
    document.body.classList.add("chroma");
    document.body.style.background = `#${chroma}`;
  }
}

// For scripts and tests: the transcript in each download format.
window.captionPage = { segments, srt: () => toSRT(segments), vtt: () => toVTT(segments), txt: () => toTXT(segments) };

// An overlay has nobody to press Start (OBS), so it starts by itself unless told not to.
if (params.get("autostart") === "1" || (overlay && params.get("autostart") !== "0")) start();
