// AudioWorklet: jitter buffer, underrun counter and the A/B crossfade for the Auralis stream.
//
// The page posts decoded frames: {type: "frame", variant: "mastered"|"original", epoch, offset, data}
// where data is interleaved Float32 samples. The mastered stream is the clock: the playhead is
// (epoch, offset) of the next mastered frame. The original stream (same epochs and offsets,
// level-matched by the server) is looked up at the same offset, so switching A/B is sample aligned;
// the switch is a 20 ms linear crossfade (both sides are correlated, so equal-gain is right).
//
// A new epoch either continues the queue or flushes it. It continues when the server says it follows the
// epoch being queued (`follows`, from audio_stream_start's follows_epoch: a gapless track change, a preset
// crossfade) or when it starts where the queued audio ends (a resume); then nothing is dropped and no
// re-buffering happens, so a gapless track change plays gaplessly. Anything else (a seek, a track chosen
// by a command) flushes at once and re-buffers PREBUFFER_S from the new position: the daemon mixes the shared
// stream its `lead_s` (audio_stream_start; equal to PREBUFFER_S) ahead of its play time and sends a new
// position's first lead_s at once, so that takes as long as the network does, not PREBUFFER_S, and the page
// then plays each frame at its play time with PREBUFFER_S of protection against a late network.
//
// Capture (diagnostics and the browser tests): {type: "capture", seconds} records what process() outputs
// (both channels) and which chunk (epoch, offset) starts at which output frame (the rest of a chunk playing
// when the capture starts counts as one), until the buffer is full
// or {type: "capture_stop"}; then it posts {type: "capture", left, right, frames, marks, flushes, starts
// (where playing started and how much was queued then), underruns (where it ran dry), drops (audio
// dropped because more than MAX_BUFFER_S was queued: the audio thread fell behind), notes ({type: "note",
// label} posted while capturing: where the page did something, e.g. "seek" when the user asked for one)}.

const PREBUFFER_S = 0.5; // start (and restart after an underrun) once this much is queued (the daemon's lead, auralisd/actors/player.py STREAM_LEAD_S)
const MAX_BUFFER_S = 2.0; // beyond this (clock drift), drop the oldest audio
const CROSSFADE_S = 0.02; // A/B crossfade length (issue 5)
const STATS_EVERY_QUANTA = 12; // ~35 ms at 44.1 kHz

class AuralisStreamProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.channels = (options.processorOptions && options.processorOptions.channels) || 2;
    this.prebufferFrames = Math.round(PREBUFFER_S * sampleRate);
    this.maxFrames = Math.round(MAX_BUFFER_S * sampleRate);
    this.fadeStep = 1 / Math.max(1, Math.round(CROSSFADE_S * sampleRate));
    this.mastered = []; // chunks {epoch, offset, frames, data, read}
    this.original = [];
    this.buffered = 0; // mastered frames queued
    this.epoch = null;
    this.pos = 0; // track offset (frames) of the next mastered frame to play
    this.playing = false;
    this.draining = false; // the stream ended or paused on purpose: running dry is not an underrun
    this.underruns = 0;
    this.framesPlayed = 0;
    this.dropped = 0;
    this.abTarget = 0; // 0 = mastered (A), 1 = original (B)
    this.abGain = 0;
    this.quanta = 0;
    this.capture = null; // {left, right, frames, marks, flushes} while capturing
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(msg) {
    if (msg.type === "frame") {
      const frames = msg.data.length / this.channels;
      const chunk = { epoch: msg.epoch, offset: msg.offset, frames, data: msg.data, read: 0 };
      if (msg.variant === "original") {
        const playing = this.mastered.length ? this.mastered[0].epoch : this.epoch;
        if (playing === null || msg.epoch >= playing) this.original.push(chunk);
        if (this.original.length > 400) this.original.shift(); // bounded (~20 s) if A is far behind B
        return;
      }
      if (this.epoch === null || msg.epoch > this.epoch) {
        const last = this.mastered[this.mastered.length - 1];
        const queuedEnd = last ? last.offset + last.frames : this.pos;
        // It follows the epoch being queued (gapless track change, preset crossfade), or starts where the
        // queued audio ends (resume): a continuation, keep the queue. Else (seek, skip): flush.
        if (this.epoch !== null && (msg.follows === this.epoch || msg.offset === queuedEnd)) this.epoch = msg.epoch;
        else this.startEpoch(msg.epoch, msg.offset);
      } else if (msg.epoch < this.epoch) return; // stale frame from before a seek or track change
      this.mastered.push(chunk);
      this.buffered += frames;
      this.draining = false;
      while (this.buffered > this.maxFrames && this.mastered.length > 1) {
        const old = this.mastered.shift();
        this.buffered -= old.frames - old.read;
        this.dropped += old.frames - old.read;
        if (this.capture) this.capture.drops.push({ at: this.capture.frames, frames: old.frames - old.read });
        this.pos = this.mastered[0].offset;
      }
    } else if (msg.type === "ab") {
      this.abTarget = msg.variant === "original" ? 1 : 0;
    } else if (msg.type === "drain") {
      this.draining = true; // paused / stopped / track over: play what is queued, count no underrun
    } else if (msg.type === "flush") {
      this.mastered = []; this.original = []; this.buffered = 0; this.playing = false;
    } else if (msg.type === "capture") {
      const n = Math.max(1, Math.round(Math.min(msg.seconds, 60) * sampleRate));
      this.capture = { left: new Float32Array(n), right: new Float32Array(n), frames: 0, marks: [], flushes: [],
        starts: [], underruns: [], drops: [], notes: [] };
      // A chunk already part played: its rest is what plays first, so the capture says where it is (without
      // this, a seek before the next chunk boundary would leave no record of what played before it).
      const m = this.mastered[0];
      if (this.playing && m && m.read > 0) {
        this.capture.marks.push({ at: 0, epoch: m.epoch, offset: m.offset + m.read, frames: m.frames - m.read });
      }
    } else if (msg.type === "note") {
      if (this.capture) this.capture.notes.push({ at: this.capture.frames, label: String(msg.label) });
    } else if (msg.type === "capture_stop") {
      this.endCapture();
    }
  }

  endCapture() {
    const cap = this.capture;
    if (!cap) return;
    this.capture = null;
    const left = cap.left.slice(0, cap.frames), right = cap.right.slice(0, cap.frames);
    this.port.postMessage({ type: "capture", left, right, frames: cap.frames, marks: cap.marks, flushes: cap.flushes,
      starts: cap.starts, underruns: cap.underruns, drops: cap.drops, notes: cap.notes }, [left.buffer, right.buffer]);
  }

  startEpoch(epoch, offset) {
    if (this.capture) this.capture.flushes.push({ at: this.capture.frames, epoch, offset, dropped: this.buffered });
    this.epoch = epoch;
    this.mastered = [];
    this.buffered = 0;
    this.original = this.original.filter((c) => c.epoch >= epoch);
    this.pos = offset;
    this.playing = false;
  }

  originalSampleIndex(epoch) {
    // Index into the original chunk that holds frame this.pos of `epoch` (the chunk being played), or -1.
    while (this.original.length) {
      const c = this.original[0];
      if (c.epoch < epoch || (c.epoch === epoch && c.offset + c.frames <= this.pos)) {
        this.original.shift();
        continue;
      }
      if (c.epoch === epoch && c.offset <= this.pos) return (this.pos - c.offset) * this.channels;
      return -1;
    }
    return -1;
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const n = out[0].length;
    const ch = Math.min(this.channels, out.length);
    if (!this.playing && this.buffered >= (this.draining ? 1 : this.prebufferFrames)) {
      this.playing = true;
      if (this.capture) this.capture.starts.push({ at: this.capture.frames, queued: this.buffered });
    }
    for (let i = 0; i < n; i++) {
      if (!this.playing || this.mastered.length === 0) {
        if (this.playing) {
          this.playing = false;
          if (!this.draining) {
            this.underruns++;
            if (this.capture) this.capture.underruns.push(this.capture.frames + i);
          }
        }
        for (let c = 0; c < out.length; c++) out[c][i] = 0;
        continue;
      }
      const m = this.mastered[0];
      if (m.read === 0 && this.capture) this.capture.marks.push({ at: this.capture.frames + i, epoch: m.epoch, offset: m.offset, frames: m.frames });
      const mi = m.read * this.channels;
      const oi = this.abTarget || this.abGain > 0 ? this.originalSampleIndex(m.epoch) : -1;
      const target = oi >= 0 ? this.abTarget : 0;
      if (this.abGain < target) this.abGain = Math.min(target, this.abGain + this.fadeStep);
      else if (this.abGain > target) this.abGain = Math.max(target, this.abGain - this.fadeStep);
      const g = this.abGain;
      for (let c = 0; c < ch; c++) {
        let v = m.data[mi + c];
        if (g > 0 && oi >= 0) v = v * (1 - g) + this.original[0].data[oi + c] * g;
        out[c][i] = v;
      }
      for (let c = ch; c < out.length; c++) out[c][i] = out[0][i];
      m.read++;
      this.pos++;
      this.buffered--;
      this.framesPlayed++;
      if (m.read >= m.frames) {
        this.mastered.shift();
        if (this.mastered.length) this.pos = this.mastered[0].offset;
      }
    }
    const cap = this.capture;
    if (cap) {
      const take = Math.min(n, cap.left.length - cap.frames);
      cap.left.set(out[0].subarray(0, take), cap.frames);
      cap.right.set(out[Math.min(1, out.length - 1)].subarray(0, take), cap.frames);
      cap.frames += take;
      if (cap.frames >= cap.left.length) this.endCapture();
    }
    if (++this.quanta % STATS_EVERY_QUANTA === 0) {
      this.port.postMessage({
        type: "stats",
        bufferedMs: (1000 * this.buffered) / sampleRate,
        underruns: this.underruns,
        playing: this.playing,
        framesPlayed: this.framesPlayed,
        epoch: this.epoch,
        offset: this.pos,
        abGain: this.abGain,
        originalBufferedMs: (1000 * this.original.reduce((s, c) => s + c.frames, 0)) / sampleRate,
        dropped: this.dropped,
      });
    }
    return true;
  }
}

registerProcessor("auralis-stream", AuralisStreamProcessor);
