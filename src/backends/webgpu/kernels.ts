// WGSL sources of the WebGPU backend's kernels: element kernels (unary and binary ops, clamp, affine, the optimiser
// updates, copies, upsampling, pooling) and row kernels (sums, softmax, group norm), built from the blocks of
// wgsl.ts. The GEMM kernels (matrix products, convolutions) are in gemm-kernels.ts and re-exported here, so that
// K.* in index.ts names every kernel.
import { DOT, MAX_RANK, RWG, elementwise, perRow } from './wgsl.js';

export { MAX_RANK, WG } from './wgsl.js';
export * from './gemm-kernels.js';

export const UNARY: Record<string, string> = {
  exp: 'exp(v)',
  log: 'log(v)',
  sqrt: 'sqrt(v)',
  square: 'v * v',
  tanh: 'tanhs(v)',
  silu: 'v * sigm(v)',
  neg: '-v',
  ncdf: 'ncdf(v)',
};

/** d y / d x given v = x and w = y */
export const UNARY_GRAD: Record<string, string> = {
  exp: 'w',
  log: '1.0 / v',
  sqrt: '0.5 / w',
  square: '2.0 * v',
  tanh: '1.0 - w * w',
  silu: 'sigm(v) * (1.0 + v * (1.0 - sigm(v)))',
  neg: '-1.0',
  ncdf: 'ncdfGrad(v)',
};

const NCDF_GRAD = `fn ncdfGrad(v: f32) -> f32 {
  let th = tanhs(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v));
  return 0.5 * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * v * v);
}`;

export const unary = (op: string) =>
  elementwise(
    [
      ['x', 'read'],
      ['y', 'read_write'],
    ],
    `let v = x[i]; y[i] = ${UNARY[op]};`,
  );
export const unaryBackward = (op: string) =>
  elementwise(
    [
      ['x', 'read'],
      ['y', 'read'],
      ['dy', 'read'],
      ['dx', 'read_write'],
    ],
    `let v = x[i]; let w = y[i]; dx[i] = (${UNARY_GRAD[op]}) * dy[i];`,
    NCDF_GRAD,
  );
/** P: n, lo, hi */
export const clamp = elementwise(
  [
    ['x', 'read'],
    ['y', 'read_write'],
  ],
  'y[i] = min(pf(2u), max(pf(1u), x[i]));',
);
export const clampBackward = elementwise(
  [
    ['x', 'read'],
    ['dy', 'read'],
    ['dx', 'read_write'],
  ],
  'let v = x[i]; dx[i] = select(0.0, dy[i], v >= pf(1u) && v <= pf(2u));',
);
/** P: n, alpha, beta */
export const affine = elementwise(
  [
    ['x', 'read'],
    ['y', 'read_write'],
  ],
  'y[i] = pf(1u) * x[i] + pf(2u);',
);
/** P: n; x += y */
export const addInPlace = elementwise(
  [
    ['y', 'read'],
    ['x', 'read_write'],
  ],
  'x[i] = x[i] + y[i];',
);
/** P: n; x *= s[0] */
export const scaleInPlace = elementwise(
  [
    ['s', 'read'],
    ['x', 'read_write'],
  ],
  'x[i] = x[i] * s[0];',
);
/** P: n, decay */
export const emaUpdate = elementwise(
  [
    ['p', 'read'],
    ['e', 'read_write'],
  ],
  'let d = pf(1u); e[i] = d * e[i] + (1.0 - d) * p[i];',
);
/** P: n, lr, beta1, beta2, eps, weightDecay, bc1, bc2 (decoupled weight decay, as the CPU backends) */
export const adamStep = elementwise(
  [
    ['g', 'read'],
    ['p', 'read_write'],
    ['m', 'read_write'],
    ['v', 'read_write'],
  ],
  `let lr = pf(1u); let b1 = pf(2u); let b2 = pf(3u); let gi = g[i];
  let mi = b1 * m[i] + (1.0 - b1) * gi; let vi = b2 * v[i] + (1.0 - b2) * gi * gi;
  m[i] = mi; v[i] = vi;
  p[i] = p[i] * (1.0 - lr * pf(5u)) - lr * ((mi / pf(6u)) / (sqrt(vi / pf(7u)) + pf(4u)));`,
);

const BIN: Record<string, string> = {
  add: 'a[ia] + b[ib]',
  sub: 'a[ia] - b[ib]',
  mul: 'a[ia] * b[ib]',
  div: 'a[ia] / b[ib]',
};

/** P: n, rank, outShape[6], aStride[6], bStride[6]  (broadcast dims have stride 0; collapsed, rank <= 6) */
export const binary = (op: string) =>
  elementwise(
    [
      ['a', 'read'],
      ['b', 'read'],
      ['y', 'read_write'],
    ],
    `let r = P[1]; let ia = dotIdx(i, r, 2u, ${2 + MAX_RANK}u); let ib = dotIdx(i, r, 2u, ${2 + 2 * MAX_RANK}u);
  y[i] = ${BIN[op]};`,
    DOT,
  );
/** P: n (operands of the output's shape) */
export const binarySame = (op: string) =>
  elementwise(
    [
      ['a', 'read'],
      ['b', 'read'],
      ['y', 'read_write'],
    ],
    `let ia = i; let ib = i; y[i] = ${BIN[op]};`,
  );

/** P: n, rank, outShape[6], inStride[6]  (y[i] = x[permuted offset]) */
export const permute = elementwise(
  [
    ['x', 'read'],
    ['y', 'read_write'],
  ],
  `y[i] = x[dotIdx(i, P[1], 2u, ${2 + MAX_RANK}u)];`,
  DOT,
);

/** P: n (= rows * len), len, srcRow, srcOff, dstRow, dstOff: y[r*dstRow + dstOff + j] = x[r*srcRow + srcOff + j] */
export const blockCopy = elementwise(
  [
    ['x', 'read'],
    ['y', 'read_write'],
  ],
  'let r = i / P[1]; let j = i % P[1]; y[r * P[4] + P[5] + j] = x[r * P[2] + P[3] + j];',
);

/** P: n (= N*C*2H*2W), H, W */
export const upsample2x = elementwise(
  [
    ['x', 'read'],
    ['y', 'read_write'],
  ],
  `let W2 = 2u * P[2]; let H2 = 2u * P[1]; let w = i % W2; let h = (i / W2) % H2; let nc = i / (W2 * H2);
  y[i] = x[(nc * P[1] + h / 2u) * P[2] + w / 2u];`,
);
/** P: n (= N*C*H*W), H, W */
export const upsample2xBackward = elementwise(
  [
    ['dy', 'read'],
    ['dx', 'read_write'],
  ],
  `let W = P[2]; let H = P[1]; let w = i % W; let h = (i / W) % H; let nc = i / (W * H);
  let o = (nc * 2u * H + 2u * h) * 2u * W + 2u * w;
  dx[i] = dy[o] + dy[o + 1u] + dy[o + 2u * W] + dy[o + 2u * W + 1u];`,
);
/** P: n (= N*C*Ho*Wo), H, W, Ho, Wo, k, stride, pad, max (1/0), countPad (1/0) */
export const pool2d = elementwise(
  [
    ['x', 'read'],
    ['y', 'read_write'],
  ],
  `let H = i32(P[1]); let W = i32(P[2]); let Ho = P[3]; let Wo = P[4];
  let k = i32(P[5]); let s = i32(P[6]); let pad = i32(P[7]);
  let ow = i32(i % Wo); let oh = i32((i / Wo) % Ho); let nc = i / (Wo * Ho);
  var acc = select(0.0, -3.4e38, P[8] == 1u); var cnt = 0.0;
  for (var a = 0; a < k; a++) { for (var b = 0; b < k; b++) {
    let h = oh * s - pad + a; let w = ow * s - pad + b;
    if (h < 0 || h >= H || w < 0 || w >= W) { continue; }
    let v = x[(nc * u32(H) + u32(h)) * u32(W) + u32(w)];
    if (P[8] == 1u) { acc = max(acc, v); } else { acc += v; }
    cnt += 1.0;
  } }
  if (P[8] == 1u) { y[i] = acc; } else { y[i] = acc / select(cnt, f32(k * k), P[9] == 1u); }`,
);

/**
 * P: nOut, rank, nRed, square (1/0), keptShape[6], redShape[6], keptStride[6], redStride[6]. out[o] = sum over the
 * reduced index r of x[off(o) + off(r)] (squared when square), each offset decoded over its shape with its strides.
 */
export const reduceSum = perRow(
  [
    ['x', 'read'],
    ['y', 'read_write'],
  ],
  `let rank = P[1]; let base = dotIdx(row, rank, 4u, ${4 + 2 * MAX_RANK}u);
  var acc = 0.0;
  for (var r = t; r < P[2]; r += ${RWG}u) {
    let v = x[base + dotIdx(r, rank, ${4 + MAX_RANK}u, ${4 + 3 * MAX_RANK}u)]; acc += select(v, v * v, P[3] == 1u);
  }
  let s = wgSum(acc, t);
  if (t == 0u) { y[row] = s; }`,
);

/** P: rows, cols */
export const softmax = perRow(
  [
    ['x', 'read'],
    ['y', 'read_write'],
  ],
  `let n = P[1]; let o = row * n;
  var m = -3.4e38; for (var j = t; j < n; j += ${RWG}u) { m = max(m, x[o + j]); }
  m = wgMax(m, t);
  var s = 0.0; for (var j = t; j < n; j += ${RWG}u) { let e = exp(x[o + j] - m); y[o + j] = e; s += e; }
  s = wgSum(s, t);
  for (var j = t; j < n; j += ${RWG}u) { y[o + j] = y[o + j] / s; }`,
);
/** P: rows, cols */
export const softmaxBackward = perRow(
  [
    ['y', 'read'],
    ['dy', 'read'],
    ['dx', 'read_write'],
  ],
  `let n = P[1]; let o = row * n;
  var d = 0.0; for (var j = t; j < n; j += ${RWG}u) { d += y[o + j] * dy[o + j]; }
  d = wgSum(d, t);
  for (var j = t; j < n; j += ${RWG}u) { dx[o + j] = y[o + j] * (dy[o + j] - d); }`,
);

/** P: N*groups, C, S, groups, eps, silu. One workgroup per (n, g): two-pass mean and variance, as the reference. */
export const groupNorm = perRow(
  [
    ['x', 'read'],
    ['gamma', 'read'],
    ['beta', 'read'],
    ['y', 'read_write'],
    ['mean', 'read_write'],
    ['rstd', 'read_write'],
  ],
  `let C = P[1]; let S = P[2]; let G = P[3]; let cg = C / G; let len = cg * S; let g = row % G; let n = row / G;
  let off = (n * C + g * cg) * S;
  var s = 0.0; for (var j = t; j < len; j += ${RWG}u) { s += x[off + j]; }
  let mu = wgSum(s, t) / f32(len);
  var v = 0.0; for (var j = t; j < len; j += ${RWG}u) { let d = x[off + j] - mu; v += d * d; }
  let r = 1.0 / sqrt(wgSum(v, t) / f32(len) + pf(4u));
  if (t == 0u) { mean[row] = mu; rstd[row] = r; }
  for (var j = t; j < len; j += ${RWG}u) {
    let ch = g * cg + j / S;
    let z = (x[off + j] - mu) * r * gamma[ch] + beta[ch];
    y[off + j] = select(z, z * sigm(z), P[5] == 1u);
  }`,
);

/** dL/dz of the normalised, affine value z (through SiLU when P[4] == 1) */
const GN_GRAD = `fn gnGrad(d: f32, xh: f32, ga: f32, be: f32) -> f32 {
  if (P[4] == 0u) { return d; }
  let z = xh * ga + be; let sg = sigm(z); return d * sg * (1.0 + z * (1.0 - sg));
}`;

/** P: N*groups, C, S, groups, silu. dx per (n, g), as the reference backend's formula. */
export const groupNormBackwardData = perRow(
  [
    ['x', 'read'],
    ['gamma', 'read'],
    ['beta', 'read'],
    ['mean', 'read'],
    ['rstd', 'read'],
    ['dy', 'read'],
    ['dx', 'read_write'],
  ],
  `let C = P[1]; let S = P[2]; let G = P[3]; let cg = C / G; let len = cg * S; let g = row % G; let n = row / G;
  let off = (n * C + g * cg) * S; let mu = mean[row]; let r = rstd[row];
  var s1 = 0.0; var s2 = 0.0;
  for (var j = t; j < len; j += ${RWG}u) {
    let ch = g * cg + j / S; let xh = (x[off + j] - mu) * r;
    let dxh = gnGrad(dy[off + j], xh, gamma[ch], beta[ch]) * gamma[ch];
    s1 += dxh; s2 += dxh * xh;
  }
  s1 = wgSum(s1, t) / f32(len); s2 = wgSum(s2, t) / f32(len);
  for (var j = t; j < len; j += ${RWG}u) {
    let ch = g * cg + j / S; let xh = (x[off + j] - mu) * r;
    dx[off + j] = r * (gnGrad(dy[off + j], xh, gamma[ch], beta[ch]) * gamma[ch] - s1 - xh * s2);
  }`,
  GN_GRAD,
);

/** P: C (rows), N, S, groups, silu. dgamma, dbeta per channel, summed over the batch and positions. */
export const groupNormBackwardAffine = perRow(
  [
    ['x', 'read'],
    ['gamma', 'read'],
    ['beta', 'read'],
    ['mean', 'read'],
    ['rstd', 'read'],
    ['dy', 'read'],
    ['dgamma', 'read_write'],
    ['dbeta', 'read_write'],
  ],
  `let C = P[0]; let N = P[1]; let S = P[2]; let G = P[3]; let ch = row; let g = ch / (C / G);
  var sg = 0.0; var sb = 0.0;
  for (var j = t; j < N * S; j += ${RWG}u) {
    let n = j / S; let k = (n * C + ch) * S + j % S; let ng = n * G + g;
    let xh = (x[k] - mean[ng]) * rstd[ng];
    let d = gnGrad(dy[k], xh, gamma[ch], beta[ch]);
    sg += d * xh; sb += d;
  }
  sg = wgSum(sg, t); sb = wgSum(sb, t);
  if (t == 0u) { dgamma[ch] = sg; dbeta[ch] = sb; }`,
  GN_GRAD,
);
