// Auralis web player: plays /stream (and its level-matched ?variant=original twin for A/B) through an
// AudioWorklet, and drives the shared player over /control (msgpack-RPC in binary WebSocket frames).
// Wire formats: docs/protocol.md, "WebSocket audio".
import { encode, decodeAll } from "./msgpack.js";

const HEADER_BYTES = 16; // <IIQ: stream_epoch, sequence, offset_frames (little-endian)
const OPUS_HEADER_BYTES = 25; // <IIQBBHIB: epoch, sequence, offset (48 kHz), version, flags, skip, keep, packets
const OPUS_LAYOUT_VERSION = 1;
const OPUS_CONFIG = { codec: "opus", sampleRate: 48000, numberOfChannels: 2 };
const BAND_KEYS = ["sub_bass_pct", "bass_pct", "low_mid_pct", "mid_pct", "upper_mid_pct", "presence_pct", "air_pct"];
const BAND_LABELS = ["sub", "bass", "low-mid", "mid", "up-mid", "pres", "air"];
// 2D LWRP regions (LUFS x crest dB). The daemon sends them with every lwrp_decision; between decisions
// (a plan from a control event) they are rebuilt with the same rule as sessions.lwrp_regions().
let lwrpThresholds = { loud_lufs: -12, crest_db: 13, quiet_margin_lu: 1 }; // auralis.plan constants
function regionsFor(targetLufs) {
  const t = lwrpThresholds;
  const quietBelow = Math.min(targetLufs - t.quiet_margin_lu, t.loud_lufs);
  return [
    { name: "quiet", lufs: [-70, quietBelow], crest_db: [0, 40] },
    { name: "normal", lufs: [quietBelow, t.loud_lufs], crest_db: [0, 40] },
    { name: "dynamic_loud", lufs: [t.loud_lufs, 0], crest_db: [t.crest_db, 40] },
    { name: "compressed_loud", lufs: [t.loud_lufs, 0], crest_db: [0, t.crest_db] },
  ];
}
const DEFAULT_REGIONS = regionsFor(-14);
const REGION_LABELS = { compressed_loud: "comp. loud", dynamic_loud: "dyn. loud", quiet: "quiet", normal: "normal" };
const PLANE = { lufs: [-30, -4], crest: [4, 24], x0: 34, y0: 10, w: 276, h: 180 };

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token");
const wsBase = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
const withToken = (path) => (token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path);

// Everything the page knows; also read by the browser test (window.auralis).
const state = {
  framesReceived: 0, originalFramesReceived: 0, sequenceGaps: 0, underruns: 0, bufferedMs: 0,
  contextState: "off", variant: "mastered", abGain: 0, decision: null, plan: null, preset: null,
  status: null, queue: [], events: [], streamStarts: 0, sampleRate: null, errors: [],
  format: null, bytesReceived: 0, kbps: null, opusResets: 0,
};
window.auralis = state;

let ctx = null, node = null, gain = null;
let pendingFrames = []; // frames that arrived before the worklet existed (bounded)

function showError(message) {
  state.errors.push(message);
  $("error").textContent = message;
}

// ---------------------------------------------------------------- control (/control, msgpack-RPC)
class Control {
  constructor() { this.nextId = 1; this.pending = new Map(); this.handlers = {}; this.connect(); }
  connect() {
    const ws = new WebSocket(withToken(`${wsBase}/control`));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => { setConnection("open"); this.onopen && this.onopen(); };
    ws.onclose = () => {
      setConnection("closed");
      for (const { reject } of this.pending.values()) reject(new Error("control connection closed"));
      this.pending.clear();
      setTimeout(() => this.connect(), 2000);
    };
    ws.onmessage = (ev) => {
      for (const msg of decodeAll(new Uint8Array(ev.data))) {
        if (msg[0] === 1) {
          const p = this.pending.get(msg[1]);
          if (!p) continue;
          this.pending.delete(msg[1]);
          if (msg[2]) p.reject(Object.assign(new Error(msg[2].message), { code: msg[2].code }));
          else p.resolve(msg[3]);
        } else if (msg[0] === 2) {
          (this.handlers[msg[1]] || (() => {}))(msg[2]);
        }
      }
    };
  }
  call(method, params = {}) {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) { reject(new Error("not connected")); return; }
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.ws.send(encode([0, id, method, params]));
    });
  }
  on(event, fn) { this.handlers[event] = fn; }
}

function setConnection(s) { const el = $("connection"); el.dataset.state = s; el.textContent = s === "open" ? "connected" : s; }

const control = new Control();
const call = (method, p) => control.call(method, p).catch((e) => { showError(`${method}: ${e.message}`); throw e; });

control.onopen = async () => {
  if (token) await control.call("auth", { token }); // a non-loopback daemon asks /control for its token first
  await control.call("subscribe", {});
  const presets = await control.call("preset.list", {});
  const sel = $("preset");
  sel.replaceChildren(...presets.presets.map((p) => {
    const o = document.createElement("option");
    o.value = p.name; o.textContent = `${p.name} (${p.target_lufs} LUFS)`; o.title = p.description || "";
    return o;
  }));
  await refreshStatus();
  await refreshQueue();
};
control.on("player", () => refreshStatus());
control.on("options", () => refreshStatus());
control.on("volume", (d) => { if (d && typeof d.volume === "number") $("shared-volume").value = d.volume; });
control.on("queue", () => refreshQueue());
control.on("mastering", (d) => { if (d) { showDecision(d); showAlbumScope(d); } });
control.on("fingerprint_progress", (d) => showFingerprintProgress(d));
control.on("error", (d) => d && showError(d.message || String(d.code)));

async function refreshStatus() {
  const s = await control.call("status", {});
  state.status = s;
  state.preset = s.preset;
  const t = s.track;
  $("track-title").textContent = t ? (t.title || t.path.split("/").pop()) : "Nothing playing";
  $("track-meta").textContent = t ? [t.artist, t.album].filter(Boolean).join(" — ") : "";
  showCover(t ? t.track_id : null);
  $("duration").textContent = fmtTime(s.duration_s || 0);
  $("seek").max = s.duration_s || 1;
  $("preset").value = s.preset;
  if (s.album_mode) $("album-mode").value = s.album_mode;
  showAlbumScope(s);
  $("intensity").value = s.intensity;
  $("intensity-value").textContent = Number(s.intensity).toFixed(2);
  if (document.activeElement !== $("shared-volume")) $("shared-volume").value = s.volume;
  $("toggle-icon").setAttribute("d", s.state === "play" ? "M6 5h4v14H6zM14 5h4v14h-4z" : "M7 5v14l12-7z");
  elapsedBase = { elapsed: s.elapsed_s || 0, at: performance.now(), playing: s.state === "play" };
  if (s.plan) showDecision({ plan: s.plan, decision: s.decision });
}

// Which plan the playing track uses: its album's (album mode) or its own, and why.
function showAlbumScope(d) {
  const el = $("album-scope");
  if (!d || !d.plan_scope) { el.textContent = ""; return; }
  const a = d.album;
  el.textContent = a ? `Album plan: ${a.name} (track ${a.index + 1} of ${a.tracks}) — ${d.scope_reason || ""}`
    : `Track plan — ${d.scope_reason || ""}`;
}

// Cover art: GET /cover/<track_id> answers the picture (embedded, else cover.*/folder.* beside the file)
// or 204 when the track has none; fetched first so a track without one logs no failed image load.
let coverTrack = undefined, coverUrl = null;
async function showCover(trackId) {
  if (trackId === coverTrack) return;
  coverTrack = trackId;
  const img = $("cover");
  img.hidden = true;
  state.cover = null;
  if (coverUrl) { URL.revokeObjectURL(coverUrl); coverUrl = null; }
  if (trackId === null || trackId === undefined) { img.removeAttribute("src"); return; }
  try {
    const r = await fetch(withToken(`/cover/${trackId}`));
    if (r.status !== 200 || coverTrack !== trackId) return;
    const url = URL.createObjectURL(await r.blob());
    if (coverTrack !== trackId) { URL.revokeObjectURL(url); return; }
    coverUrl = url;
    img.onload = () => { if (coverTrack === trackId) { img.hidden = false; state.cover = trackId; } };
    img.src = url;
  } catch (e) { /* no cover: the card shows the text alone */ }
}

let elapsedBase = { elapsed: 0, at: 0, playing: false };
setInterval(() => {
  const e = elapsedBase.elapsed + (elapsedBase.playing ? (performance.now() - elapsedBase.at) / 1000 : 0);
  const d = Number($("seek").max) || 0;
  $("elapsed").textContent = fmtTime(Math.min(e, d || e));
  if (document.activeElement !== $("seek")) $("seek").value = Math.min(e, d);
}, 250);

async function refreshQueue() {
  const q = await control.call("queue.list", {});
  state.queue = q.items;
  const list = $("queue-list");
  list.replaceChildren(...q.items.map((item) => {
    const li = document.createElement("li");
    if (item.pos === q.current) li.className = "current";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${item.title || item.path.split("/").pop()}${item.artist ? " — " + item.artist : ""}`;
    const play = button("▶", `Play ${name.textContent}`, () => call("play", { pos: item.pos }));
    const del = button("✕", "Remove from queue", () => call("queue.delete", { positions: [item.pos] }));
    li.append(play, name, del);
    return li;
  }));
}

function button(text, label, onclick) {
  const b = document.createElement("button");
  b.textContent = text; b.title = label; b.setAttribute("aria-label", label);
  b.addEventListener("click", onclick);
  return b;
}

async function search(query) {
  const r = await call("library.search", { query, limit: 50 });
  // never cut in silence: say how many matched when only the first ones are shown
  $("results-count").textContent = r.truncated ? `first ${r.tracks.length} of ${r.total} matches` : "";
  $("results").replaceChildren(...r.tracks.map((t) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${t.title || t.path.split("/").pop()}${t.artist ? " — " + t.artist : ""}`;
    li.append(button("+", `Add ${name.textContent} to the queue`, () => call("queue.add", { track_ids: [t.track_id] })), name);
    return li;
  }));
}

// ---------------------------------------------------------------- audio (/stream, AudioWorklet)
const streams = {};

// The wire format: Opus (about 165 kbit/s) where the browser decodes it with WebCodecs, else float32 PCM
// (2.8 Mbit/s). `?format=f32|opus` in the page's address forces one.
async function pickFormat() {
  const asked = params.get("format");
  if (asked === "f32" || asked === "s16") return asked;
  try {
    if (typeof AudioDecoder === "function" && (await AudioDecoder.isConfigSupported(OPUS_CONFIG)).supported) return "opus";
  } catch (e) { /* no WebCodecs here */ }
  return "f32";
}

function openStream(variant) {
  const path = `/stream?format=${state.format}${variant === "original" ? "&variant=original" : ""}`;
  const ws = new WebSocket(withToken(`${wsBase}${path}`));
  ws.binaryType = "arraybuffer";
  // follows: epoch -> the epoch it follows (audio_stream_start's follows_epoch), for the worklet (a few kept)
  const info = { ws, channels: 2, format: state.format, lastEpoch: null, lastSeq: -1, opus: null, follows: new Map() };
  streams[variant] = info;
  ws.onmessage = (ev) => {
    if (variant === "mastered") countBytes(typeof ev.data === "string" ? ev.data.length : ev.data.byteLength);
    if (typeof ev.data === "string") { onStreamEvent(variant, JSON.parse(ev.data)); return; }
    if (info.format === "opus") onOpusFrame(variant, info, ev.data);
    else onAudioFrame(variant, info, ev.data);
  };
  ws.onclose = (ev) => {
    if (streams[variant] !== info) return;
    if (info.opus) { try { info.opus.decoder.close(); } catch (e) { /* already closed */ } info.opus = null; }
    if (variant === "mastered") setConnectionNote(`stream closed (${ev.code})`);
    setTimeout(() => { if (streams[variant] === info) openStream(variant); }, 1000);
  };
}

// Bandwidth of the mastered stream (what one listener costs), over the last few seconds.
const byteLog = [];
function countBytes(n) {
  const now = performance.now();
  state.bytesReceived += n;
  byteLog.push([now, n]);
  while (byteLog.length && now - byteLog[0][0] > 5000) byteLog.shift();
}
setInterval(() => {
  if (byteLog.length < 2) return;
  const span = (performance.now() - byteLog[0][0]) / 1000;
  if (span < 1) return;
  state.kbps = (byteLog.reduce((sum, [, n]) => sum + n, 0) * 8) / span / 1000;
  $("stream-format").textContent = `${state.format === "opus" ? "Opus" : "PCM " + state.format} · ${Math.round(state.kbps)} kbit/s`;
}, 1000);

function setConnectionNote(text) { $("buffer-text").textContent = text; }

// Opus frames (docs/protocol.md, "Opus frames"): one WebCodecs decoder per Opus stream (a RESET starts a
// new one); each message's decoded output loses `skip` samples and keeps `keep`, at `offset` (48 kHz).
function newOpusDecoder(variant) {
  const pending = []; // per packet, in decode order: the message it belongs to
  const decoder = new AudioDecoder({
    output: (data) => {
      const msg = pending.shift();
      const n = data.numberOfFrames;
      const planes = [];
      for (let c = 0; c < 2; c++) {
        const plane = new Float32Array(n);
        data.copyTo(plane, { planeIndex: Math.min(c, data.numberOfChannels - 1), format: "f32-planar" });
        planes.push(plane);
      }
      data.close();
      if (!msg) return;
      const drop = Math.min(msg.skip, n);
      msg.skip -= drop;
      const take = Math.min(msg.keep, n - drop);
      msg.keep -= take;
      if (take <= 0) return;
      const out = new Float32Array(take * 2);
      for (let i = 0; i < take; i++) { out[2 * i] = planes[0][drop + i]; out[2 * i + 1] = planes[1][drop + i]; }
      postFrame(variant, msg.epoch, msg.offset, out);
      msg.offset += take;
    },
    error: (e) => showError(`opus decoder: ${e.message}`),
  });
  decoder.configure(OPUS_CONFIG);
  return { decoder, pending, timestamp: 0 };
}

function onOpusFrame(variant, info, buf) {
  const view = new DataView(buf);
  if (buf.byteLength < OPUS_HEADER_BYTES || view.getUint8(16) !== OPUS_LAYOUT_VERSION) {
    showError("the daemon sent an Opus frame this page cannot read");
    return;
  }
  const epoch = view.getUint32(0, true);
  const seq = view.getUint32(4, true);
  const offset = Number(view.getBigUint64(8, true));
  const reset = (view.getUint8(17) & 1) !== 0;
  const msg = { epoch, offset, skip: view.getUint16(18, true), keep: view.getUint32(20, true) };
  const count = view.getUint8(24);
  if (epoch === info.lastEpoch && seq !== info.lastSeq + 1) state.sequenceGaps++;
  info.lastEpoch = epoch; info.lastSeq = seq;
  if (reset || !info.opus) {
    const old = info.opus;
    if (old) old.decoder.flush().catch(() => {}).finally(() => { try { old.decoder.close(); } catch (e) { /* closed */ } });
    info.opus = newOpusDecoder(variant);
    if (variant === "mastered") state.opusResets++;
  }
  let pos = OPUS_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const length = view.getUint16(pos, true);
    const packet = new Uint8Array(buf, pos + 2, length);
    pos += 2 + length;
    info.opus.pending.push(msg);
    info.opus.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: info.opus.timestamp, data: packet }));
    info.opus.timestamp += 20000; // microseconds
  }
  if (variant === "original") state.originalFramesReceived++; else state.framesReceived++;
}

function postFrame(variant, epoch, offset, data) {
  const info = streams[variant];
  const follows = info && info.follows.has(epoch) ? info.follows.get(epoch) : null;
  const msg = { type: "frame", variant, epoch, offset, data, follows };
  if (node) node.port.postMessage(msg, [data.buffer]);
  else if (pendingFrames.length < 80) pendingFrames.push(msg);
}

function onAudioFrame(variant, info, buf) {
  const view = new DataView(buf);
  const epoch = view.getUint32(0, true);
  const seq = view.getUint32(4, true);
  const offset = Number(view.getBigUint64(8, true));
  if (epoch === info.lastEpoch && seq !== info.lastSeq + 1) state.sequenceGaps++;
  info.lastEpoch = epoch; info.lastSeq = seq;
  let data;
  if (info.format === "s16") {
    const ints = new Int16Array(buf.slice(HEADER_BYTES));
    data = new Float32Array(ints.length);
    for (let i = 0; i < ints.length; i++) data[i] = ints[i] / 32768;
  } else {
    data = new Float32Array(buf, HEADER_BYTES); // transferred with its buffer: no copy
  }
  if (variant === "original") state.originalFramesReceived++; else state.framesReceived++;
  postFrame(variant, epoch, offset, data);
}

function onStreamEvent(variant, ev) {
  if (ev.type === "audio_stream_start") { // a gapless track change names the epoch it follows: keep the queue
    const follows = streams[variant].follows;
    follows.set(ev.stream_epoch, typeof ev.follows_epoch === "number" ? ev.follows_epoch : null);
    if (follows.size > 16) follows.delete(follows.keys().next().value);
  }
  if (variant === "original") {
    if (ev.type === "audio_stream_start") { streams.original.format = ev.format; streams.original.channels = ev.channels; }
    return; // the mastered stream carries the status shown on the page
  }
  state.events.push(ev.type);
  if (state.events.length > 200) state.events.splice(0, 100);
  switch (ev.type) {
    case "audio_stream_start":
      state.streamStarts++;
      state.sampleRate = ev.sample_rate;
      streams.mastered.format = ev.format;
      streams.mastered.channels = ev.channels;
      $("mastering-status").hidden = true;
      if (ctx && ctx.sampleRate !== ev.sample_rate) rebuildAudio(ev.sample_rate);
      if (ev.plan) showDecision({ plan: ev.plan, decision: ev.decision });
      break;
    case "mastering_status":
      $("mastering-status").hidden = ev.status !== "preparing";
      break;
    case "lwrp_decision":
      showDecision(ev);
      break;
    case "fingerprint_progress":
      showFingerprintProgress(ev);
      break;
    case "audio_stream_end":
      if (node) node.port.postMessage({ type: "drain" });
      break;
    case "audio_stream_error":
      showError(`${ev.code}: ${ev.message}`);
      break;
    case "player_event":
      refreshStatus().catch(() => {});
      break;
  }
}

function currentTrackId() {
  return state.status && state.status.track ? state.status.track.track_id : null;
}

function showFingerprintProgress(d) {
  // Background analysis of other tracks is not news for this page: only the track being played.
  if (!d || d.track_id !== currentTrackId()) return;
  if (d.status === "analyzing") $("mastering-status").hidden = false;
  if (d.status === "complete") $("mastering-status").hidden = true;
  if (d.status === "failed") showError(`fingerprint failed: ${d.reason || "unknown"} (neutral plan)`);
}

async function buildAudio(sampleRate) {
  ctx = new AudioContext({ sampleRate, latencyHint: "playback" });
  await ctx.audioWorklet.addModule("worklet.js");
  node = new AudioWorkletNode(ctx, "auralis-stream", {
    numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [2], processorOptions: { channels: 2 },
  });
  gain = ctx.createGain();
  gain.gain.value = Number($("local-volume").value);
  node.connect(gain).connect(ctx.destination);
  node.port.onmessage = (ev) => onWorkletMessage(ev.data);
  node.port.postMessage({ type: "ab", variant: state.variant });
  if (captureWaiter) node.port.postMessage({ type: "capture", seconds: captureSeconds });
  ctx.onstatechange = () => { state.contextState = ctx.state; $("ctx-state").textContent = ctx.state; };
  for (const msg of pendingFrames) node.port.postMessage(msg, [msg.data.buffer]);
  pendingFrames = [];
  await ctx.resume();
  state.contextState = ctx.state;
  $("ctx-state").textContent = ctx.state;
}

async function rebuildAudio(sampleRate) {
  const old = ctx;
  node = null; ctx = null;
  if (old) await old.close();
  await buildAudio(sampleRate);
}

async function listen() {
  const btn = $("listen");
  if (ctx) {
    if (ctx.state === "running") { await ctx.suspend(); btn.dataset.on = "false"; btn.textContent = "▶ Listen"; }
    else { await ctx.resume(); btn.dataset.on = "true"; btn.textContent = "❚❚ Listening"; }
    state.contextState = ctx.state; $("ctx-state").textContent = ctx.state;
    return;
  }
  // Created inside the click handler: browsers only start audio after a user gesture.
  await buildAudio(state.sampleRate || 44100);
  btn.dataset.on = "true"; btn.textContent = "❚❚ Listening";
}

// Capture what the worklet plays (diagnostics; the browser tests use it): window.auralis.capture(seconds)
// resolves with {left, right (Float32Array), frames, marks: [{at, epoch, offset, frames}], flushes,
// starts, underruns, drops, notes, sampleRate} (worklet.js) once `seconds` are recorded or window.auralis.stopCapture().
let captureWaiter = null, captureSeconds = 0; // a new AudioContext (the stream's rate) captures anew
state.capture = (seconds) => new Promise((resolve, reject) => {
  if (!node) { reject(new Error("no audio yet: press Listen first")); return; }
  captureWaiter = resolve; captureSeconds = seconds;
  node.port.postMessage({ type: "capture", seconds });
});
state.stopCapture = () => { if (node) node.port.postMessage({ type: "capture_stop" }); };
// A note in the capture (its output frame): where the page did something, e.g. "seek" (seek-to-sound latency).
const captureNote = (label) => { if (node && captureWaiter) node.port.postMessage({ type: "note", label }); };
state.captureNote = captureNote;

function onWorkletMessage(msg) {
  if (msg.type === "capture") {
    const done = captureWaiter;
    captureWaiter = null;
    if (done) done({ ...msg, sampleRate: ctx ? ctx.sampleRate : null });
    return;
  }
  onStats(msg);
}

function onStats(s) {
  if (s.type !== "stats") return;
  state.underruns = s.underruns;
  state.bufferedMs = s.bufferedMs;
  state.abGain = s.abGain;
  state.playedOffset = s.offset;
  state.playedEpoch = s.epoch;
  $("underruns").textContent = s.underruns;
  $("frames").textContent = state.framesReceived;
  const fill = $("buffer-fill");
  fill.style.width = `${Math.min(100, (s.bufferedMs / 1000) * 100)}%`;
  fill.dataset.level = s.bufferedMs < 20 ? "empty" : s.bufferedMs < 250 ? "low" : "ok";
  $("buffer-text").textContent = `buffer ${Math.round(s.bufferedMs)} ms`;
}

function setVariant(variant) {
  state.variant = variant;
  $("ab").setAttribute("aria-pressed", variant === "original" ? "true" : "false");
  if (node) node.port.postMessage({ type: "ab", variant });
}

// ---------------------------------------------------------------- what the mastering does
function showDecision(d) {
  const plan = d.plan || {};
  state.plan = plan;
  state.decision = d.decision || plan.decision || null;
  $("decision").textContent = state.decision || "—";
  const inLufs = d.input_lufs ?? plan.input_lufs;
  const outLufs = d.output_lufs ?? plan.output_lufs ?? plan.target_lufs;
  $("in-lufs").textContent = fmt(inLufs);
  $("out-lufs").textContent = fmt(outLufs);
  $("gain-db").textContent = fmt(d.gain_db ?? plan.gain_db, true);
  if (d.regions && d.regions.length === 4) {
    const comp = d.regions.find((r) => r.name === "compressed_loud");
    const quiet = d.regions.find((r) => r.name === "quiet");
    if (comp && quiet && typeof d.target_lufs === "number") {
      const margin = quiet.lufs[1] < comp.lufs[0] ? d.target_lufs - quiet.lufs[1] : lwrpThresholds.quiet_margin_lu;
      lwrpThresholds = { loud_lufs: comp.lufs[0], crest_db: comp.crest_db[1], quiet_margin_lu: margin };
    }
  }
  const target = d.target_lufs ?? plan.preset_target_lufs;
  drawPlane(d.regions || (typeof target === "number" ? regionsFor(target) : DEFAULT_REGIONS), inLufs, d.input_crest_db ?? plan.input_crest_db, outLufs,
    d.output_crest_db ?? plan.output_crest_db, d.region || plan.region);
  if (d.bands) drawBands(d.bands);
  if (d.measurements) showMeasurements(d.measurements, d.bands);
}

const fmt = (v, signed = false) => (typeof v === "number" && isFinite(v) ? `${signed && v > 0 ? "+" : ""}${v.toFixed(1)}` : "—");
const fmtTime = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

function svgEl(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawPlane(regions, inLufs, inCrest, outLufs, outCrest, activeRegion) {
  const { x0, y0, w, h } = PLANE;
  const [l0, l1] = PLANE.lufs, [c0, c1] = PLANE.crest;
  const x = (lufs) => x0 + ((Math.max(l0, Math.min(l1, lufs)) - l0) / (l1 - l0)) * w;
  const y = (crest) => y0 + h - ((Math.max(c0, Math.min(c1, crest)) - c0) / (c1 - c0)) * h;
  const svg = $("plane");
  const colours = ["#24406a", "#2a5a4a", "#5a4a24", "#6a2a2a", "#4a2a6a", "#2a4a6a"];
  const nodes = [];
  regions.forEach((r, i) => {
    const xa = x(r.lufs[0]), xb = x(r.lufs[1]), ya = y(r.crest_db[1]), yb = y(r.crest_db[0]);
    nodes.push(svgEl("rect", { x: xa, y: ya, width: Math.max(0, xb - xa), height: Math.max(0, yb - ya),
      fill: colours[i % colours.length], opacity: r.name === activeRegion ? 0.95 : 0.45, "data-region": r.name }));
    nodes.push(svgEl("text", { x: xa + 3, y: yb - 4, class: "region-label" }, REGION_LABELS[r.name] || r.name));
  });
  for (let l = l0; l <= l1; l += 4) nodes.push(svgEl("text", { x: x(l) - 8, y: y0 + h + 14 }, String(l)));
  for (let c = c0; c <= c1; c += 4) nodes.push(svgEl("text", { x: 4, y: y(c) + 3 }, String(c)));
  nodes.push(svgEl("text", { x: x0 + w - 40, y: y0 + h + 26 }, "LUFS"));
  nodes.push(svgEl("text", { x: x0 + 4, y: y0 + 12 }, "crest dB"));
  if (typeof inLufs === "number" && typeof inCrest === "number") {
    if (typeof outLufs === "number") {
      nodes.push(svgEl("line", { x1: x(inLufs), y1: y(inCrest), x2: x(outLufs), y2: y(typeof outCrest === "number" ? outCrest : inCrest),
        stroke: "#6ac5ff", "stroke-width": 1.5, "stroke-dasharray": "4 3" }));
      nodes.push(svgEl("circle", { cx: x(outLufs), cy: y(typeof outCrest === "number" ? outCrest : inCrest), r: 4, fill: "#7ddc8a", id: "plane-output" }));
    }
    nodes.push(svgEl("circle", { cx: x(inLufs), cy: y(inCrest), r: 5, fill: "#ffb454", stroke: "#fff", id: "plane-track" }));
  }
  svg.replaceChildren(...nodes);
}

function drawBands(bands) {
  const svg = $("bands");
  let values = BAND_KEYS.map((k) => Number(bands[k]) || 0);
  if (values.reduce((a, b) => a + b, 0) <= 1.5) values = values.map((v) => v * 100); // fractions -> percent
  const max = Math.max(1, ...values);
  const bw = 300 / values.length;
  const nodes = [];
  values.forEach((v, i) => {
    const bh = (v / max) * 170;
    nodes.push(svgEl("rect", { x: 12 + i * bw, y: 190 - bh, width: bw - 8, height: bh, fill: "#6ac5ff", "data-band": BAND_KEYS[i] }));
    nodes.push(svgEl("text", { x: 12 + i * bw, y: 204 }, BAND_LABELS[i]));
    nodes.push(svgEl("text", { x: 12 + i * bw, y: 186 - bh }, `${v.toFixed(0)}%`));
  });
  svg.replaceChildren(...nodes);
}

function showMeasurements(m) {
  const rows = [["LUFS", m.integrated_lufs], ["true peak dBTP", m.true_peak_dbtp], ["LRA LU", m.loudness_range_lu],
    ["PLR dB", m.plr_db], ["crest dB", m.crest_db], ["max S LUFS", m.max_short_term_lufs]];
  $("measurements").replaceChildren(...rows.filter(([, v]) => v !== undefined).map(([k, v]) => {
    const div = document.createElement("div");
    div.append(Object.assign(document.createElement("dt"), { textContent: k }), Object.assign(document.createElement("dd"), { textContent: fmt(v) }));
    return div;
  }));
}

// ---------------------------------------------------------------- wiring
$("listen").addEventListener("click", () => listen().catch((e) => showError(`audio: ${e.message}`)));
$("toggle").addEventListener("click", () => call("toggle"));
$("stop").addEventListener("click", () => call("stop"));
$("next").addEventListener("click", () => call("next"));
$("prev").addEventListener("click", () => call("previous"));
function seekTo(positionS) { captureNote("seek"); return call("seek", { position_s: positionS }); }
$("seek").addEventListener("change", (e) => seekTo(Number(e.target.value)));
$("preset").addEventListener("change", (e) => call("preset.set", { name: e.target.value }));
$("album-mode").addEventListener("change", (e) => call("album_mode.set", { mode: e.target.value }));
$("intensity").addEventListener("input", (e) => { $("intensity-value").textContent = Number(e.target.value).toFixed(2); });
$("intensity").addEventListener("change", (e) => call("intensity.set", { value: Number(e.target.value) }));
$("local-volume").addEventListener("input", (e) => { if (gain) gain.gain.setTargetAtTime(Number(e.target.value), ctx.currentTime, 0.01); });
$("shared-volume").addEventListener("change", (e) => call("volume.set", { percent: Number(e.target.value) }));
$("ab").addEventListener("click", () => setVariant(state.variant === "mastered" ? "original" : "mastered"));
$("queue-clear").addEventListener("click", () => call("queue.clear"));
$("search-form").addEventListener("submit", (e) => { e.preventDefault(); search($("search").value).catch(() => {}); });

document.addEventListener("keydown", (e) => {
  if (e.target.closest && e.target.closest("input, select, textarea")) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const elapsed = Number($("seek").value);
  const keys = {
    " ": () => call("toggle"), n: () => call("next"), p: () => call("previous"), s: () => call("stop"),
    ArrowLeft: () => seekTo(Math.max(0, elapsed - 5)),
    ArrowRight: () => seekTo(elapsed + 5),
    a: () => $("ab").click(), l: () => $("listen").click(), "/": () => $("search").focus(),
    ArrowUp: () => { const v = $("local-volume"); v.value = Math.min(1, Number(v.value) + 0.05); v.dispatchEvent(new Event("input")); },
    ArrowDown: () => { const v = $("local-volume"); v.value = Math.max(0, Number(v.value) - 0.05); v.dispatchEvent(new Event("input")); },
  };
  const fn = keys[e.key];
  if (fn) { e.preventDefault(); Promise.resolve().then(fn).catch(() => {}); }
});

drawPlane(DEFAULT_REGIONS);
pickFormat().then((format) => {
  state.format = format;
  $("stream-format").textContent = format === "opus" ? "Opus" : `PCM ${format}`;
  openStream("mastered");
  openStream("original");
});
