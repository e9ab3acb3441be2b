// Counter-based random numbers: Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
// The stream of numbers is a pure function of (seed, stream, sample index, element index), so every backend and
// every batch split draws the same values: sample i gets the same noise in a batch of 1 or of 64.

const M0 = 0xd2511f53,
  M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9,
  W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32, exact in double arithmetic. */
function mulhi32(a: number, b: number): number {
  const al = a & 0xffff,
    ah = a >>> 16,
    bl = b & 0xffff,
    bh = b >>> 16;
  const ll = al * bl,
    lh = al * bh,
    hl = ah * bl,
    hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + Math.floor(lh / 65536) + Math.floor(hl / 65536) + Math.floor(mid / 65536)) >>> 0;
}

/** Philox 4x32 with 10 rounds: counter (4 words) and key (2 words) to 4 random words, written into out. */
export function philox4x32_10(
  ctr: ArrayLike<number>,
  key: ArrayLike<number>,
  out: Uint32Array = new Uint32Array(4),
): Uint32Array {
  let c0 = ctr[0] >>> 0,
    c1 = ctr[1] >>> 0,
    c2 = ctr[2] >>> 0,
    c3 = ctr[3] >>> 0;
  let k0 = key[0] >>> 0,
    k1 = key[1] >>> 0;
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi32(M0, c0),
      lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi32(M1, c2),
      lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

/** Where random numbers come from: a seed (up to 2^53) and a stream id (up to 2^53). */
export interface RandomKey {
  seed: number;
  stream: number;
}

const TWO32 = 4294967296;

function splitWords(x: number, what: string): [number, number] {
  if (!Number.isSafeInteger(x) || x < 0)
    throw new Error(`random: ${what} must be a non-negative safe integer, got ${x}`);
  return [(x % TWO32) >>> 0, Math.floor(x / TWO32) >>> 0];
}

/** The 32-bit words of a key as Philox takes them: [seed low, seed high, stream low, stream high]. */
export function keyWords(key: RandomKey): number[] {
  return [...splitWords(key.seed, 'seed'), ...splitWords(key.stream, 'stream')];
}

/** Uniform in the open interval (0, 1) from one 32-bit word. */
export function toUniform(u: number): number {
  return (u + 0.5) / TWO32;
}

/**
 * Fills `out` (viewed as [samples, perSample]) with values for samples sampleStart, sampleStart+1, ...
 * Element j of sample s comes from counter (j >> 2, s, stream_lo, stream_hi) under key (seed_lo, seed_hi), lane j & 3.
 * Normal values use Box-Muller on the lane pairs (0, 1) and (2, 3).
 */
export function fillRandom(
  out: Float32Array,
  perSample: number,
  key: RandomKey,
  sampleStart: number,
  dist: 'normal' | 'uniform',
): Float32Array {
  if (perSample <= 0 || out.length % perSample !== 0)
    throw new Error(`random: buffer of ${out.length} is not a whole number of samples of ${perSample}`);
  const [k0, k1] = splitWords(key.seed, 'seed');
  const [s0, s1] = splitWords(key.stream, 'stream');
  const ctr = [0, 0, s0, s1],
    kk = [k0, k1];
  const words = new Uint32Array(4);
  const nSamples = out.length / perSample;
  for (let s = 0; s < nSamples; s++) {
    ctr[1] = (sampleStart + s) >>> 0;
    const base = s * perSample;
    for (let j = 0; j < perSample; j += 4) {
      ctr[0] = j >>> 2;
      philox4x32_10(ctr, kk, words);
      if (dist === 'uniform') {
        for (let l = 0; l < 4 && j + l < perSample; l++) out[base + j + l] = toUniform(words[l]);
      } else {
        for (let l = 0; l < 4; l += 2) {
          const u1 = toUniform(words[l]),
            u2 = toUniform(words[l + 1]);
          const r = Math.sqrt(-2 * Math.log(u1)),
            th = 2 * Math.PI * u2;
          if (j + l < perSample) out[base + j + l] = r * Math.cos(th);
          if (j + l + 1 < perSample) out[base + j + l + 1] = r * Math.sin(th);
        }
      }
    }
  }
  return out;
}

/**
 * Integers uniform on [lo, hi] (inclusive), one per sample, from lane 0 of element 0 (bias below 2^-20 for hi-lo <
 * 4096).
 */
export function randomIntegers(count: number, lo: number, hi: number, key: RandomKey, sampleStart = 0): Int32Array {
  const [k0, k1] = splitWords(key.seed, 'seed');
  const [s0, s1] = splitWords(key.stream, 'stream');
  const out = new Int32Array(count);
  const words = new Uint32Array(4);
  const range = hi - lo + 1;
  for (let i = 0; i < count; i++) {
    philox4x32_10([0, (sampleStart + i) >>> 0, s0, s1], [k0, k1], words);
    // 53-bit uniform from two words keeps the modulo bias negligible
    const u = (words[0] * 2097152 + (words[1] >>> 11)) / 9007199254740992;
    out[i] = lo + Math.floor(u * range);
  }
  return out;
}

/** A uniformly random permutation of 0..n-1 (Fisher-Yates driven by the counter-based generator). */
export function randomPermutation(n: number, key: RandomKey): Int32Array {
  const u = new Float32Array(n);
  if (n) fillRandom(u, n, key, 0, 'uniform');
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(u[i] * (i + 1)));
    const tmp = p[i];
    p[i] = p[j];
    p[j] = tmp;
  }
  return p;
}
