// WGSL sources of the WebGPU backend's kernels. Every kernel reads its parameters from binding 0, a read-only
// array<u32> (floats bit-cast), so no kernel depends on uniform-buffer alignment rules. Inputs follow as read-only
// storage buffers, outputs as read_write. Element kernels index a 2-D grid of 256-thread workgroups (more than
// 65,535 workgroups in one dimension are not allowed), so the linear index is (wid.y * nwg.x + wid.x) * 256 + lid.x.

export const WG = 256;

const HEAD = /* wgsl */ `
@group(0) @binding(0) var<storage, read> P: array<u32>;
fn pf(i: u32) -> f32 { return bitcast<f32>(P[i]); }
fn lin(wid: vec3u, nwg: vec3u, lid: vec3u) -> u32 { return (wid.y * nwg.x + wid.x) * ${WG}u + lid.x; }
fn sigm(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }
// tanh without overflow for large |v|
fn tanhs(v: f32) -> f32 { let e = exp(-2.0 * abs(v)); return sign(v) * (1.0 - e) / (1.0 + e); }
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
// approx_standard_normal_cdf of the official DDPM code
fn ncdf(v: f32) -> f32 { return 0.5 * (1.0 + tanhs(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v))); }
`;

const ENTRY = `@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u)`;

/** Storage bindings 1.. of a kernel: [name, access]; binding 0 is always the parameters. */
type Bindings = [string, 'read' | 'read_write'][];

function bindings(bs: Bindings): string {
  return bs.map(([n, a], i) => `@group(0) @binding(${i + 1}) var<storage, ${a}> ${n}: array<f32>;`).join('\n');
}

/** A kernel over n elements (P[0] = n); body sees i. */
function elementwise(bs: Bindings, body: string, extra = ''): string {
  return `${HEAD}${bindings(bs)}\n${extra}\n${ENTRY} {\n  let i = lin(wid, nwg, lid);\n  if (i >= P[0]) { return; }\n  ${body}\n}`;
}

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

const NCDF_GRAD = `fn ncdfGrad(v: f32) -> f32 { let th = tanhs(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)); return 0.5 * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * v * v); }`;

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

export const MAX_RANK = 6;

/** Decodes linear index `o` over shape P[base..base+rank) into a dot product with strides P[sbase..). */
const DOT = `fn dotIdx(o: u32, rank: u32, shapeAt: u32, strideAt: u32) -> u32 {
  var r = o; var off = 0u;
  for (var d = i32(rank) - 1; d >= 0; d--) { let s = P[shapeAt + u32(d)]; off += (r % s) * P[strideAt + u32(d)]; r = r / s; }
  return off;
}`;

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
    `let r = P[1]; let ia = dotIdx(i, r, 2u, ${2 + MAX_RANK}u); let ib = dotIdx(i, r, 2u, ${2 + 2 * MAX_RANK}u); y[i] = ${BIN[op]};`,
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
  'let W2 = 2u * P[2]; let H2 = 2u * P[1]; let w = i % W2; let h = (i / W2) % H2; let nc = i / (W2 * H2); y[i] = x[(nc * P[1] + h / 2u) * P[2] + w / 2u];',
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
  `let H = i32(P[1]); let W = i32(P[2]); let Ho = P[3]; let Wo = P[4]; let k = i32(P[5]); let s = i32(P[6]); let pad = i32(P[7]);
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

// ---- workgroup reductions: one 64-thread workgroup per output (fewer threads, fewer barrier rounds: software
// drivers run each barrier as a switch of every thread) ----

const RWG = 64;

const WG_REDUCE = `var<workgroup> red: array<f32, ${RWG}>;
fn wgSum(v: f32, t: u32) -> f32 {
  red[t] = v; workgroupBarrier();
  for (var s = ${RWG / 2}u; s > 0u; s = s >> 1u) { if (t < s) { red[t] += red[t + s]; } workgroupBarrier(); }
  let r = red[0]; workgroupBarrier(); return r;
}
fn wgMax(v: f32, t: u32) -> f32 {
  red[t] = v; workgroupBarrier();
  for (var s = ${RWG / 2}u; s > 0u; s = s >> 1u) { if (t < s) { red[t] = max(red[t], red[t + s]); } workgroupBarrier(); }
  let r = red[0]; workgroupBarrier(); return r;
}`;

/** A kernel with one workgroup per "row" (P[0] rows); body sees row and t (the thread, 0..63). */
function perRow(bs: Bindings, body: string, extra = ''): string {
  return `${HEAD}${bindings(bs)}\n${WG_REDUCE}\n${DOT}\n${extra}\n${ENTRY.replace(`${WG}`, `${RWG}`)} {\n  let row = wid.y * nwg.x + wid.x; let t = lid.x;\n  if (row >= P[0]) { return; }\n  ${body}\n}`;
}

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
  for (var r = t; r < P[2]; r += ${RWG}u) { let v = x[base + dotIdx(r, rank, ${4 + MAX_RANK}u, ${4 + 3 * MAX_RANK}u)]; acc += select(v, v * v, P[3] == 1u); }
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
const GN_GRAD = `fn gnGrad(d: f32, xh: f32, ga: f32, be: f32) -> f32 { if (P[4] == 0u) { return d; } let z = xh * ga + be; let sg = sigm(z); return d * sg * (1.0 + z * (1.0 - sg)); }`;

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

// ---- GEMM: C[M, N] = A[M, K] B[K, N], each thread a 4x8 block in registers, 8x8 threads per workgroup ----
// No workgroup memory and no barriers: software drivers (SwiftShader, the one CI has) run barriers as coroutine
// switches, which made a shared-memory tiling 10x slower there, while GPUs still cache the reused rows and columns.
// The variants differ in how the k loop runs and how A and B elements are fetched (a matrix, or a convolution's
// implicit im2col); g.z is the batch (matmul) or the image (convolutions). The code is generated unrolled.

const RM = 4,
  RN = 8;
export const GEMM_TILE = { M: 8 * RM, N: 8 * RN };
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

interface GemmSpec {
  /** per output column j (its index n_j, clamped to N - 1): setup before the k loop */
  col?: (j: number) => string;
  /** opening of the k loop(s); closed by `close` */
  loop: string;
  close: string;
  a: (i: number) => string;
  b: (j: number) => string;
  store: (i: number, j: number) => string;
  /** helper functions */
  fns?: string;
}

function gemm(bs: Bindings, g: GemmSpec): string {
  const ij = range(RM).flatMap((i) => range(RN).map((j) => [i, j]));
  return `${HEAD}${bindings(bs)}
${g.fns ?? ''}
@compute @workgroup_size(8, 8) fn main(@builtin(global_invocation_id) gid: vec3u) {
  let M = P[0]; let N = P[1]; let K = P[2]; let z = gid.z;
  let m0 = gid.y * ${RM}u; let n0 = gid.x * ${RN}u;
  if (m0 >= M || n0 >= N) { return; }
  ${range(RM)
    .map((i) => `let m_${i} = min(m0 + ${i}u, M - 1u);`)
    .join(' ')}
  ${range(RN)
    .map((j) => `let n_${j} = min(n0 + ${j}u, N - 1u);`)
    .join(' ')}
  ${g.col ? range(RN).map(g.col).join('\n  ') : ''}
  ${ij.map(([i, j]) => `var c${i}${j} = 0.0;`).join(' ')}
  ${g.loop}
    ${range(RM)
      .map((i) => `let a${i} = ${g.a(i)};`)
      .join(' ')}
    ${range(RN)
      .map((j) => `let b${j} = ${g.b(j)};`)
      .join(' ')}
    ${ij.map(([i, j]) => `c${i}${j} = fma(a${i}, b${j}, c${i}${j});`).join(' ')}
  ${g.close}
  ${ij.map(([i, j]) => `if (m0 + ${i}u < M && n0 + ${j}u < N) { ${g.store(i, j)} }`).join('\n  ')}
}`;
}

/** P: M, N, K, then A's strides along m and k, B's along k and n (a transpose is a swap of strides) */
export const matmul = gemm(
  [
    ['a', 'read'],
    ['b', 'read'],
    ['c', 'read_write'],
  ],
  {
    loop: 'let ao = z * M * K; let bo = z * K * N;\n  for (var k = 0u; k < K; k++) {',
    close: '}',
    a: (i) => `a[ao + m_${i} * P[3] + k * P[4]]`,
    b: (j) => `b[bo + k * P[5] + n_${j} * P[6]]`,
    store: (i, j) => `c[z * M * N + (m0 + ${i}u) * N + n0 + ${j}u] = c${i}${j};`,
  },
);

// Convolution parameters shared by the three GEMMs: P[3..] = C, H, W, O, KH, KW, Ho, Wo, stride, padTop, padLeft, hasBias
const CONV = `fn C_() -> u32 { return P[3]; } fn H_() -> i32 { return i32(P[4]); } fn W_() -> i32 { return i32(P[5]); }
fn O_() -> u32 { return P[6]; } fn KH_() -> u32 { return P[7]; } fn KW_() -> u32 { return P[8]; }
fn Ho_() -> u32 { return P[9]; } fn Wo_() -> u32 { return P[10]; } fn S_() -> i32 { return i32(P[11]); }
fn PT_() -> i32 { return i32(P[12]); } fn PL_() -> i32 { return i32(P[13]); }`;
/** x[base + ih * W + iw], 0 in the padding */
const XV = `fn xv(base: u32, ih: i32, iw: i32) -> f32 {
  if (ih < 0 || ih >= H_() || iw < 0 || iw >= W_()) { return 0.0; }
  return x[base + u32(ih) * u32(W_()) + u32(iw)];
}`;

/**
 * y[z, o, p] = sum_k w[o, k] x_im2col[z, k, p] (+ b[o]); M = O, N = Ho*Wo, K = C*KH*KW. x is already zero-padded
 * (padPlanes), so the im2col fetch is one load at a per-column base plus a per-k offset, with no bounds checks.
 */
export const conv2d = gemm(
  [
    ['x', 'read'],
    ['w', 'read'],
    ['bias', 'read'],
    ['y', 'read_write'],
  ],
  {
    fns: CONV,
    col: (j) => `let xb_${j} = (n_${j} / Wo_()) * u32(S_() * W_()) + (n_${j} % Wo_()) * u32(S_());`,
    loop: `let HW = u32(H_() * W_());
  for (var c = 0u; c < C_(); c++) { let xc = (z * C_() + c) * HW;
  for (var kh = 0u; kh < KH_(); kh++) { let xk = xc + kh * u32(W_()); for (var kw = 0u; kw < KW_(); kw++) { let k = (c * KH_() + kh) * KW_() + kw;`,
    close: '} } }',
    a: (i) => `w[m_${i} * K + k]`,
    b: (j) => `x[xk + kw + xb_${j}]`,
    store: (i, j) =>
      `y[(z * M + m0 + ${i}u) * N + n0 + ${j}u] = c${i}${j} + select(0.0, bias[m0 + ${i}u], P[14] == 1u);`,
  },
);

/** P: n (= planes * Hp * Wp), H, W, Hp, Wp, padTop, padLeft: each H x W plane copied into a zero Hp x Wp one */
export const padPlanes = elementwise(
  [
    ['x', 'read'],
    ['y', 'read_write'],
  ],
  `let Wp = P[4]; let Hp = P[3]; let w = i32(i % Wp) - i32(P[6]); let h = i32((i / Wp) % Hp) - i32(P[5]); let pl = i / (Wp * Hp);
  if (h < 0 || h >= i32(P[1]) || w < 0 || w >= i32(P[2])) { y[i] = 0.0; } else { y[i] = x[(pl * P[1] + u32(h)) * P[2] + u32(w)]; }`,
);

/** dx[z, c, q] = sum_{o,kh,kw} w[o, c, kh, kw] dy[z, o, (q + pad - k) / s]; M = C, N = H*W, K = O*KH*KW */
export const conv2dBackwardData = gemm(
  [
    ['dy', 'read'],
    ['w', 'read'],
    ['dx', 'read_write'],
  ],
  {
    fns: `${CONV}
fn dyv(base: u32, th: i32, tw: i32) -> f32 {
  if (th < 0 || tw < 0 || th % S_() != 0 || tw % S_() != 0) { return 0.0; }
  let oh = u32(th / S_()); let ow = u32(tw / S_());
  if (oh >= Ho_() || ow >= Wo_()) { return 0.0; }
  return dy[base + oh * Wo_() + ow];
}`,
    col: (j) => `let ihp_${j} = i32(n_${j} / u32(W_())) + PT_(); let iwp_${j} = i32(n_${j} % u32(W_())) + PL_();`,
    loop: `for (var o = 0u; o < O_(); o++) { let db = (z * O_() + o) * Ho_() * Wo_();
  for (var kh = 0u; kh < KH_(); kh++) { for (var kw = 0u; kw < KW_(); kw++) {`,
    close: '} } }',
    a: (i) => `w[((o * C_() + m_${i}) * KH_() + kh) * KW_() + kw]`,
    b: (j) => `dyv(db, ihp_${j} - i32(kh), iwp_${j} - i32(kw))`,
    store: (i, j) => `dx[(z * M + m0 + ${i}u) * N + n0 + ${j}u] = c${i}${j};`,
  },
);

/** dw[o, ckk] = sum_{z,p} dy[z, o, p] x_im2col[z, ckk, p]; M = O, N = C*KH*KW, K = batch*Ho*Wo */
export const conv2dBackwardWeights = gemm(
  [
    ['dy', 'read'],
    ['x', 'read'],
    ['dw', 'read_write'],
  ],
  {
    fns: CONV + XV,
    col: (j) =>
      `let c_${j} = n_${j} / (KH_() * KW_()); let r_${j} = n_${j} % (KH_() * KW_()); let kh_${j} = i32(r_${j} / KW_()) - PT_(); let kw_${j} = i32(r_${j} % KW_()) - PL_();`,
    loop: `let HW = u32(H_() * W_()); let HWo = Ho_() * Wo_();
  for (var zb = 0u; zb < K / HWo; zb++) { for (var oh = 0u; oh < Ho_(); oh++) { for (var ow = 0u; ow < Wo_(); ow++) {
    let ihs = i32(oh) * S_(); let iws = i32(ow) * S_(); let dyo = zb * O_() * HWo + oh * Wo_() + ow;`,
    close: '} } }',
    a: (i) => `dy[dyo + m_${i} * HWo]`,
    b: (j) => `xv((zb * C_() + c_${j}) * HW, ihs + kh_${j}, iws + kw_${j})`,
    store: (i, j) => `dw[(m0 + ${i}u) * N + n0 + ${j}u] = c${i}${j};`,
  },
);
