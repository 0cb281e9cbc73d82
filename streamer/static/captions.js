// Transcript downloads: SRT, WebVTT and TXT, with the same caption limits as clients/writers.py
// (42 characters a line, two lines, 7 s a cue; long segments split at word boundaries, timed by
// word timestamps when present and by character share otherwise; cues ordered, never overlapping).

export const LIMITS = Object.freeze({ maxLineChars: 42, maxLines: 2, maxDurationMs: 7000 });

const toMs = (seconds) => Math.max(0, Math.round(seconds * 1000));

function tokens(segment) {
  const start = toMs(segment.start);
  const end = toMs(segment.end);
  const words = (segment.words || []).filter((w) => w.word.trim());
  if (words.length) return words.map((w) => ({ text: w.word, start: toMs(w.start), end: toMs(w.end) }));
  const pieces = segment.text.match(/\s*\S+/g) || [];
  const total = pieces.reduce((n, p) => n + p.length, 0) || 1;
  let offset = 0;
  return pieces.map((text) => {
    const a = offset;
    offset += text.length;
    return { text, start: start + Math.floor(((end - start) * a) / total), end: start + Math.floor(((end - start) * offset) / total) };
  });
}

function hardSplit(token, width) {
  // A word wider than a line (a URL) is cut into line-sized pieces.
  const text = token.text.trim();
  if (text.length <= width) return [token];
  const count = Math.ceil(text.length / width);
  const span = token.end - token.start;
  return Array.from({ length: count }, (_, i) => ({
    text: " " + text.slice(i * width, (i + 1) * width),
    start: token.start + Math.floor((span * i) / count),
    end: token.start + Math.floor((span * (i + 1)) / count),
  }));
}

function wrap(group, width) {
  const lines = [];
  let current = "";
  for (const token of group) {
    const candidate = current ? current + token.text : token.text.trim();
    if (current && candidate.trim().length > width) {
      lines.push(current.trim());
      current = token.text.trim();
    } else {
      current = candidate;
    }
  }
  if (current.trim()) lines.push(current.trim());
  return lines;
}

function balancedLines(group, limits) {
  // Two lines are broken where the longer one is shortest: easier to read than greedy filling.
  const greedy = wrap(group, limits.maxLineChars);
  if (greedy.length !== 2) return greedy;
  let best = null;
  for (let cut = 1; cut < group.length; cut++) {
    const first = group.slice(0, cut).map((t) => t.text).join("").trim();
    const second = group.slice(cut).map((t) => t.text).join("").trim();
    if (first.length <= limits.maxLineChars && second.length <= limits.maxLineChars) {
      if (!best || Math.max(first.length, second.length) < Math.max(best[0].length, best[1].length)) best = [first, second];
    }
  }
  return best || greedy;
}

export function segmentCues(segment, limits = LIMITS) {
  const all = tokens(segment).flatMap((t) => hardSplit(t, limits.maxLineChars));
  if (!all.length) return [];
  const segStart = toMs(segment.start);
  const segEnd = toMs(segment.end);
  const groups = [[]];
  let groupStart = Math.min(segStart, all[0].start);
  for (const token of all) {
    const group = groups[groups.length - 1];
    const fitsText = wrap([...group, token], limits.maxLineChars).length <= limits.maxLines;
    const fitsTime = token.end - groupStart <= limits.maxDurationMs;
    if (group.length && !(fitsText && fitsTime)) {
      groups.push([token]);
      groupStart = token.start;
    } else {
      group.push(token);
    }
  }
  return groups.map((group, i) => {
    const start = Math.min(i === 0 ? segStart : group[0].start, group[0].start);
    // Cues tile the segment but never outlast the duration limit.
    let end = i === groups.length - 1 ? Math.max(segEnd, group[group.length - 1].end) : groups[i + 1][0].start;
    end = Math.min(end, start + limits.maxDurationMs);
    return { start, end, lines: balancedLines(group, limits) };
  });
}

export function captionCues(segments, limits = LIMITS) {
  const ordered = [...segments].sort((a, b) => a.start - b.start);
  const cues = [];
  for (const segment of ordered) {
    for (const cue of segmentCues(segment, limits)) {
      const previousEnd = cues.length ? cues[cues.length - 1].end : 0;
      const start = Math.max(cue.start, previousEnd);
      cues.push({ ...cue, start, end: Math.max(cue.end, start + 1) });
    }
  }
  return cues;
}

function clock(ms, separator) {
  const pad = (n, width) => String(n).padStart(width, "0");
  const hours = Math.floor(ms / 3600000);
  const minutes = Math.floor((ms % 3600000) / 60000);
  const seconds = Math.floor((ms % 60000) / 1000);
  return `${pad(hours, 2)}:${pad(minutes, 2)}:${pad(seconds, 2)}${separator}${pad(ms % 1000, 3)}`;
}

export const srtTimestamp = (ms) => clock(ms, ",");
export const vttTimestamp = (ms) => clock(ms, ".");

export function toSRT(segments, limits = LIMITS) {
  return captionCues(segments, limits)
    .map((cue, i) => `${i + 1}\n${srtTimestamp(cue.start)} --> ${srtTimestamp(cue.end)}\n${cue.lines.join("\n")}\n\n`)
    .join("");
}

const escapeVtt = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function toVTT(segments, limits = LIMITS) {
  return (
    "WEBVTT\n\n" +
    captionCues(segments, limits)
      .map((cue) => `${vttTimestamp(cue.start)} --> ${vttTimestamp(cue.end)}\n${cue.lines.map(escapeVtt).join("\n")}\n\n`)
      .join("")
  );
}

export function toTXT(segments) {
  return [...segments]
    .sort((a, b) => a.start - b.start)
    .filter((s) => s.text.trim())
    .map((s) => s.text.trim() + "\n")
    .join("");
}
