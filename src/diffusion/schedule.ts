// Noise schedules and the float64 tables of the diffusion process (as the official code computes them).

export type BetaSchedule = 'linear' | 'quad' | 'const' | 'jsd' | 'cosine' | 'sigmoid';
export const BETA_SCHEDULES: BetaSchedule[] = ['linear', 'quad', 'const', 'jsd', 'cosine', 'sigmoid'];

function linspace(a: number, b: number, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = n === 1 ? a : a + ((b - a) * i) / (n - 1);
  return out;
}

/**
 * beta_1..beta_T. The values are exactly what is asked for: no hidden rescaling with T. For T != 1000 use
 * scaledBetaRange(T) to keep the paper's linear schedule's shape (the rule of improved-diffusion).
 */
export function betaSchedule(name: BetaSchedule, T: number, betaStart = 1e-4, betaEnd = 0.02): Float64Array {
  if (!Number.isInteger(T) || T < 1)
    throw new Error(`betaSchedule: number of timesteps must be a positive integer, got ${T}`);
  switch (name) {
    case 'linear':
      return linspace(betaStart, betaEnd, T);
    case 'quad':
      return linspace(Math.sqrt(betaStart), Math.sqrt(betaEnd), T).map((x) => x * x);
    case 'const':
      return new Float64Array(T).fill(betaEnd);
    case 'jsd': // 1/T, 1/(T-1), ..., 1
      return linspace(T, 1, T).map((x) => 1 / x);
    case 'cosine':
      return cosineBetas(T);
    case 'sigmoid':
      return linspace(-6, 6, T).map((x) => (1 / (1 + Math.exp(-x))) * (betaEnd - betaStart) + betaStart);
    default:
      throw new Error(`betaSchedule: unknown schedule "${name}" (expected one of ${BETA_SCHEDULES.join(', ')})`);
  }
}

/** Improved DDPM's cosine schedule: alphabar(t) = cos^2(((t/T) + s) / (1 + s) * pi/2), betas capped at 0.999. */
export function cosineBetas(T: number, s = 0.008): Float64Array {
  const f = (t: number) => Math.cos((((t / T + s) / (1 + s)) * Math.PI) / 2) ** 2;
  const out = new Float64Array(T);
  for (let i = 0; i < T; i++) out[i] = Math.min(1 - f(i + 1) / f(i), 0.999);
  return out;
}

/** The paper's linear range (1e-4, 0.02) for T = 1000, scaled by 1000 / T for other T. */
export function scaledBetaRange(T: number): { betaStart: number; betaEnd: number } {
  const s = 1000 / T;
  return { betaStart: 1e-4 * s, betaEnd: 0.02 * s };
}

/** Every table of the process, float64, indexed by t = 0..T-1 (the paper's t = 1..T). */
export interface DiffusionTables {
  T: number;
  betas: Float64Array;
  alphas: Float64Array;
  alphasCumprod: Float64Array;
  alphasCumprodPrev: Float64Array;
  sqrtAlphasCumprod: Float64Array;
  sqrtOneMinusAlphasCumprod: Float64Array;
  logOneMinusAlphasCumprod: Float64Array;
  sqrtRecipAlphasCumprod: Float64Array;
  sqrtRecipm1AlphasCumprod: Float64Array;
  posteriorVariance: Float64Array;
  posteriorLogVarianceClipped: Float64Array;
  posteriorMeanCoef1: Float64Array;
  posteriorMeanCoef2: Float64Array;
  /** log(append(beta~_2, beta_2..beta_T)): the "fixedlarge" log-variance of the official code */
  fixedLargeLogVariance: Float64Array;
  /** log(beta_t): the upper end of the learned variance range */
  logBetas: Float64Array;
  oneMinusAlphasCumprod: Float64Array;
}

export function makeTables(betas: Float64Array): DiffusionTables {
  const T = betas.length;
  for (let i = 0; i < T; i++)
    if (!(betas[i] > 0 && betas[i] <= 1)) throw new Error(`diffusion: beta[${i}] = ${betas[i]} is outside (0, 1]`);
  const map = (f: (i: number) => number) => Float64Array.from({ length: T }, (_, i) => f(i));
  const alphas = map((i) => 1 - betas[i]);
  const ac = new Float64Array(T);
  let p = 1;
  for (let i = 0; i < T; i++) ac[i] = p *= alphas[i];
  const acPrev = map((i) => (i === 0 ? 1 : ac[i - 1]));
  // posterior q(x_{t-1} | x_t, x_0), eq. (6), (7)
  const postVar = map((i) => (betas[i] * (1 - acPrev[i])) / (1 - ac[i]));
  const postLogVarClipped = map((i) => Math.log(T > 1 && i === 0 ? postVar[1] : postVar[i]));
  return {
    T,
    betas,
    alphas,
    alphasCumprod: ac,
    alphasCumprodPrev: acPrev,
    sqrtAlphasCumprod: map((i) => Math.sqrt(ac[i])),
    sqrtOneMinusAlphasCumprod: map((i) => Math.sqrt(1 - ac[i])),
    logOneMinusAlphasCumprod: map((i) => Math.log(1 - ac[i])),
    sqrtRecipAlphasCumprod: map((i) => Math.sqrt(1 / ac[i])),
    sqrtRecipm1AlphasCumprod: map((i) => Math.sqrt(1 / ac[i] - 1)),
    posteriorVariance: postVar,
    posteriorLogVarianceClipped: postLogVarClipped,
    posteriorMeanCoef1: map((i) => (betas[i] * Math.sqrt(acPrev[i])) / (1 - ac[i])),
    posteriorMeanCoef2: map((i) => ((1 - acPrev[i]) * Math.sqrt(alphas[i])) / (1 - ac[i])),
    fixedLargeLogVariance: map((i) => Math.log(T > 1 && i === 0 ? postVar[1] : betas[i])),
    logBetas: map((i) => Math.log(betas[i])),
    oneMinusAlphasCumprod: map((i) => 1 - ac[i]),
  };
}

/** Python's round() on a float: to the nearest integer, halves to even. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/**
 * The timesteps kept by a respaced process, ascending, exactly as improved-diffusion's space_timesteps
 * (respace.py): `spec` is a count ("50"), comma-separated counts per equal section of [0, T) ("10,15,20"), or
 * "ddimN" (the integer stride that gives exactly N steps, starting at 0). Within a section of `size` steps, count
 * steps are taken at round(k * (size - 1) / (count - 1)) accumulated in floating point and rounded as Python does.
 */
export function spaceTimesteps(T: number, spec: string | number): number[] {
  const str = String(spec).trim();
  const bad = (msg: string) => new Error(`respacing "${str}": ${msg}`);
  if (str.startsWith('ddim')) {
    const want = Number(str.slice(4));
    if (!Number.isInteger(want) || want < 1) throw bad('expected ddimN with N a positive integer');
    for (let i = 1; i < T; i++) {
      if (Math.ceil(T / i) === want) return Array.from({ length: want }, (_, k) => k * i);
    }
    throw bad(`cannot create exactly ${want} steps out of ${T} with an integer stride`);
  }
  if (!/^\d+(,\d+)*$/.test(str))
    throw bad('expected a step count, comma-separated counts per section ("10,15,20"), or ddimN');
  const counts = str.split(',').map(Number);
  const sizePer = Math.floor(T / counts.length),
    extra = T % counts.length;
  const out = new Set<number>();
  let start = 0;
  counts.forEach((count, i) => {
    const size = sizePer + (i < extra ? 1 : 0);
    if (count < 1) throw bad(`section ${i} asks for ${count} steps`);
    if (size < count) throw bad(`cannot divide a section of ${size} steps into ${count}`);
    const frac = count <= 1 ? 1 : (size - 1) / (count - 1);
    let cur = 0;
    for (let k = 0; k < count; k++) {
      out.add(start + roundHalfEven(cur));
      cur += frac;
    }
    start += size;
  });
  return [...out].sort((a, b) => a - b);
}

/** Betas of the respaced process that keeps `use` (ascending) and matches alphabar at those steps. */
export function respacedBetas(alphasCumprod: Float64Array, use: number[]): Float64Array {
  const out = new Float64Array(use.length);
  let last = 1;
  use.forEach((t, i) => {
    out[i] = 1 - alphasCumprod[t] / last;
    last = alphasCumprod[t];
  });
  return out;
}
