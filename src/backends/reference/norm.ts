// The reference backend's row-wise normalisations: group norm (with its optional fused SiLU) and softmax, forward and
// backward. Each takes the backend's allocator; ReferenceBackend (index.ts) calls them.
import type { Alloc } from './conv.js';

type Storage = Float32Array;

/** The logistic function (SiLU is v * sigmoid(v)); index.ts uses it too. */
export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** a (summed in double precision) in a buffer of the backend's precision. */
function from(alloc: Alloc, a: Float64Array): Storage {
  const out = alloc(a.length);
  out.set(a);
  return out;
}

/** Group norm of [N, C, ...] over groups of C / groups channels, then gamma, beta and optionally SiLU. */
export function groupNorm(
  alloc: Alloc,
  x: Storage,
  xs: number[],
  gamma: Storage,
  beta: Storage,
  groups: number,
  eps: number,
  silu: boolean,
) {
  const [N, C] = xs;
  const S = xs.slice(2).reduce((p, q) => p * q, 1);
  const cg = C / groups,
    len = cg * S;
  const y = alloc(x.length);
  const mean = alloc(N * groups),
    rstd = alloc(N * groups);
  for (let n = 0; n < N; n++)
    for (let g = 0; g < groups; g++) {
      const off = (n * C + g * cg) * S;
      let s = 0;
      for (let i = 0; i < len; i++) s += x[off + i];
      const mu = s / len;
      let v = 0;
      for (let i = 0; i < len; i++) v += (x[off + i] - mu) ** 2;
      const r = 1 / Math.sqrt(v / len + eps);
      mean[n * groups + g] = mu;
      rstd[n * groups + g] = r;
      for (let c = 0; c < cg; c++) {
        const ch = g * cg + c;
        for (let i = 0; i < S; i++) {
          const j = off + c * S + i;
          const z = (x[j] - mu) * r * gamma[ch] + beta[ch];
          y[j] = silu ? z * sigmoid(z) : z;
        }
      }
    }
  return { y, mean, rstd };
}

/** groupNorm's gradients: dx, and dgamma and dbeta summed over the batch and positions. */
export function groupNormBackward(
  alloc: Alloc,
  x: Storage,
  xs: number[],
  gamma: Storage,
  beta: Storage,
  mean: Storage,
  rstd: Storage,
  groups: number,
  silu: boolean,
  dy: Storage,
) {
  const [N, C] = xs;
  const S = xs.slice(2).reduce((p, q) => p * q, 1);
  const cg = C / groups,
    len = cg * S;
  const dx = alloc(x.length);
  const dgamma = new Float64Array(C),
    dbeta = new Float64Array(C);
  const dz = new Float64Array(len),
    xhat = new Float64Array(len);
  for (let n = 0; n < N; n++)
    for (let g = 0; g < groups; g++) {
      const off = (n * C + g * cg) * S;
      const mu = mean[n * groups + g],
        r = rstd[n * groups + g];
      // dxhat = dz * gamma;  dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
      let s1 = 0,
        s2 = 0;
      for (let c = 0; c < cg; c++) {
        const ch = g * cg + c;
        for (let i = 0; i < S; i++) {
          const k = c * S + i,
            j = off + k;
          const xh = (x[j] - mu) * r;
          let d = dy[j];
          if (silu) {
            const z = xh * gamma[ch] + beta[ch];
            const sg = sigmoid(z);
            d *= sg * (1 + z * (1 - sg));
          }
          xhat[k] = xh;
          dz[k] = d;
          dgamma[ch] += d * xh;
          dbeta[ch] += d;
          const dxh = d * gamma[ch];
          s1 += dxh;
          s2 += dxh * xh;
        }
      }
      s1 /= len;
      s2 /= len;
      for (let c = 0; c < cg; c++) {
        const ch = g * cg + c;
        for (let i = 0; i < S; i++) {
          const k = c * S + i;
          dx[off + k] = r * (dz[k] * gamma[ch] - s1 - xhat[k] * s2);
        }
      }
    }
  return { dx, dgamma: from(alloc, dgamma), dbeta: from(alloc, dbeta) };
}

/** Softmax over each of `rows` rows of `cols` values (the maximum subtracted first). */
export function softmax(alloc: Alloc, x: Storage, rows: number, cols: number): Storage {
  const y = alloc(x.length);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let mx = -Infinity;
    for (let j = 0; j < cols; j++) mx = Math.max(mx, x[o + j]);
    let s = 0;
    for (let j = 0; j < cols; j++) {
      const e = Math.exp(x[o + j] - mx);
      y[o + j] = e;
      s += e;
    }
    for (let j = 0; j < cols; j++) y[o + j] /= s;
  }
  return y;
}

/** softmax's gradient, from its output y: dx = y * (dy - sum(y * dy)) per row. */
export function softmaxBackward(alloc: Alloc, y: Storage, dy: Storage, rows: number, cols: number): Storage {
  const dx = alloc(y.length);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let dot = 0;
    for (let j = 0; j < cols; j++) dot += y[o + j] * dy[o + j];
    for (let j = 0; j < cols; j++) dx[o + j] = y[o + j] * (dy[o + j] - dot);
  }
  return dx;
}
