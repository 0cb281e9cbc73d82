// Microphone capture on the audio thread: downmix to mono, resample to 16 kHz, convert to
// 16-bit PCM, and post 40 ms frames (with their level) to the page. Runs as an AudioWorklet,
// so capture never waits on the page's main thread.

const HALF_WIDTH = 8; // zero crossings of the sinc kernel on each side (a 16-tap filter at 1:1)

class Resampler {
  // Windowed-sinc interpolation with the cutoff at the lower of the two Nyquist rates:
  // it low-passes (no aliasing when going down to 16 kHz) and interpolates in one step.
  constructor(inRate, outRate) {
    this.step = inRate / outRate; // input samples per output sample
    this.cutoff = Math.min(1, outRate / inRate) * 0.95;
    this.reach = Math.ceil(HALF_WIDTH / this.cutoff); // input samples each side of an output
    this.pending = new Float32Array(0);
    this.position = this.reach; // of the next output, in `pending` coordinates
  }

  kernel(x) {
    if (x === 0) return this.cutoff;
    const t = x * this.cutoff;
    if (Math.abs(t) >= HALF_WIDTH) return 0;
    const window = 0.5 + 0.5 * Math.cos((Math.PI * t) / HALF_WIDTH); // Hann
    return (this.cutoff * Math.sin(Math.PI * t)) / (Math.PI * t) * window;
  }

  push(input) {
    const joined = new Float32Array(this.pending.length + input.length);
    joined.set(this.pending);
    joined.set(input, this.pending.length);
    const out = [];
    while (Math.floor(this.position) + this.reach < joined.length) {
      const centre = Math.floor(this.position);
      let sum = 0;
      for (let k = centre - this.reach + 1; k <= centre + this.reach; k++) {
        sum += joined[k] * this.kernel(this.position - k);
      }
      out.push(sum);
      this.position += this.step;
    }
    // Keep what the next outputs still need.
    const keepFrom = Math.max(0, Math.floor(this.position) - this.reach);
    this.pending = joined.slice(keepFrom);
    this.position -= keepFrom;
    return out;
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate = 16000, frameSamples = 640 } = options.processorOptions || {};
    this.resampler = sampleRate === targetRate ? null : new Resampler(sampleRate, targetRate);
    this.frame = new Int16Array(frameSamples);
    this.filled = 0;
    this.peak = 0;
    this.sumSquares = 0;
    this.port.postMessage({ type: "format", inputRate: sampleRate, outputRate: targetRate });
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // no input connected yet
    const length = channels[0].length;
    const mono = new Float32Array(length);
    for (const channel of channels) {
      for (let i = 0; i < length; i++) mono[i] += channel[i] / channels.length;
    }
    const samples = this.resampler ? this.resampler.push(mono) : mono;
    for (const value of samples) {
      const clipped = Math.max(-1, Math.min(1, value));
      this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
      this.peak = Math.max(this.peak, Math.abs(clipped));
      this.sumSquares += clipped * clipped;
      if (this.filled === this.frame.length) this.flush();
    }
    return true;
  }

  flush() {
    const pcm = this.frame.buffer.slice(0);
    const rms = Math.sqrt(this.sumSquares / this.frame.length);
    this.port.postMessage({ type: "audio", pcm, peak: this.peak, rms }, [pcm]);
    this.filled = 0;
    this.peak = 0;
    this.sumSquares = 0;
  }
}

registerProcessor("capture", CaptureProcessor);
