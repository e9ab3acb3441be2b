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

export const unary = (op: string) => elementwise([['x', 'read'], ['y', 'read_write']], `let v = x[i]; y[i] = ${UNARY[op]};`);
export const unaryBackward = (op: string) =>
  elementwise([['x', 'read'], ['y', 'read'], ['dy', 'read'], ['dx', 'read_write']], `let v = x[i]; let w = y[i]; dx[i] = (${UNARY_GRAD[op]}) * dy[i];`, NCDF_GRAD);
/** P: n, lo, hi */
export const clamp = elementwise([['x', 'read'], ['y', 'read_write']], 'y[i] = min(pf(2u), max(pf(1u), x[i]));');
export const clampBackward = elementwise([['x', 'read'], ['dy', 'read'], ['dx', 'read_write']], 'let v = x[i]; dx[i] = select(0.0, dy[i], v >= pf(1u) && v <= pf(2u));');
/** P: n, alpha, beta */
export const affine = elementwise([['x', 'read'], ['y', 'read_write']], 'y[i] = pf(1u) * x[i] + pf(2u);');
/** P: n; x += y */
export const addInPlace = elementwise([['y', 'read'], ['x', 'read_write']], 'x[i] = x[i] + y[i];');
/** P: n; x *= s[0] */
export const scaleInPlace = elementwise([['s', 'read'], ['x', 'read_write']], 'x[i] = x[i] * s[0];');
/** P: n, decay */
export const emaUpdate = elementwise([['p', 'read'], ['e', 'read_write']], 'let d = pf(1u); e[i] = d * e[i] + (1.0 - d) * p[i];');
/** P: n, lr, beta1, beta2, eps, weightDecay, bc1, bc2 (decoupled weight decay, as the CPU backends) */
export const adamStep = elementwise(
  [['g', 'read'], ['p', 'read_write'], ['m', 'read_write'], ['v', 'read_write']],
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

/** P: n, rank, op, outShape[6], aStride[6], bStride[6]  (broadcast dims have stride 0) */
export const binary = (op: string) => {
  const e = { add: 'a[ia] + b[ib]', sub: 'a[ia] - b[ib]', mul: 'a[ia] * b[ib]', div: 'a[ia] / b[ib]' }[op];
  return elementwise([['a', 'read'], ['b', 'read'], ['y', 'read_write']],
    `let r = P[1]; let ia = dotIdx(i, r, 2u, ${2 + MAX_RANK}u); let ib = dotIdx(i, r, 2u, ${2 + 2 * MAX_RANK}u); y[i] = ${e};`, DOT);
};

/** P: n, rank, outShape[6], inStride[6]  (y[i] = x[permuted offset]) */
export const permute = elementwise([['x', 'read'], ['y', 'read_write']], `y[i] = x[dotIdx(i, P[1], 2u, ${2 + MAX_RANK}u)];`, DOT);

/** P: n (= rows * len), len, srcRow, srcOff, dstRow, dstOff: y[r*dstRow + dstOff + j] = x[r*srcRow + srcOff + j] */
export const blockCopy = elementwise([['x', 'read'], ['y', 'read_write']], 'let r = i / P[1]; let j = i % P[1]; y[r * P[4] + P[5] + j] = x[r * P[2] + P[3] + j];');

/** P: n (= N*C*2H*2W), H, W */
export const upsample2x = elementwise([['x', 'read'], ['y', 'read_write']],
  'let W2 = 2u * P[2]; let H2 = 2u * P[1]; let w = i % W2; let h = (i / W2) % H2; let nc = i / (W2 * H2); y[i] = x[(nc * P[1] + h / 2u) * P[2] + w / 2u];');
/** P: n (= N*C*H*W), H, W */
export const upsample2xBackward = elementwise([['dy', 'read'], ['dx', 'read_write']],
  `let W = P[2]; let H = P[1]; let w = i % W; let h = (i / W) % H; let nc = i / (W * H);
  let o = (nc * 2u * H + 2u * h) * 2u * W + 2u * w;
  dx[i] = dy[o] + dy[o + 1u] + dy[o + 2u * W] + dy[o + 2u * W + 1u];`);
/** P: n (= N*C*Ho*Wo), H, W, Ho, Wo, k, stride, pad, max (1/0), countPad (1/0) */
export const pool2d = elementwise([['x', 'read'], ['y', 'read_write']],
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
  if (P[8] == 1u) { y[i] = acc; } else { y[i] = acc / select(cnt, f32(k * k), P[9] == 1u); }`);

// ---- workgroup reductions: one 256-thread workgroup per output ----

const WG_REDUCE = `var<workgroup> red: array<f32, ${WG}>;
fn wgSum(v: f32, t: u32) -> f32 {
  red[t] = v; workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) { if (t < s) { red[t] += red[t + s]; } workgroupBarrier(); }
  let r = red[0]; workgroupBarrier(); return r;
}
fn wgMax(v: f32, t: u32) -> f32 {
  red[t] = v; workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) { if (t < s) { red[t] = max(red[t], red[t + s]); } workgroupBarrier(); }
  let r = red[0]; workgroupBarrier(); return r;
}`;

/** A kernel with one workgroup per "row" (P[0] rows); body sees row and t (the thread, 0..255). */
function perRow(bs: Bindings, body: string, extra = ''): string {
  return `${HEAD}${bindings(bs)}\n${WG_REDUCE}\n${DOT}\n${extra}\n${ENTRY} {\n  let row = wid.y * nwg.x + wid.x; let t = lid.x;\n  if (row >= P[0]) { return; }\n  ${body}\n}`;
}

/**
 * P: nOut, rank, nRed, square (1/0), outShape[6], redShape[6], xStride[6]. out[o] = sum over the reduced index r of
 * x[off(o) + off(r)] (squared when square), each offset decoded over its shape with the input's strides.
 */
export const reduceSum = perRow([['x', 'read'], ['y', 'read_write']],
  `let rank = P[1]; let base = dotIdx(row, rank, 4u, ${4 + 2 * MAX_RANK}u);
  var acc = 0.0;
  for (var r = t; r < P[2]; r += ${WG}u) { let v = x[base + dotIdx(r, rank, ${4 + MAX_RANK}u, ${4 + 2 * MAX_RANK}u)]; acc += select(v, v * v, P[3] == 1u); }
  let s = wgSum(acc, t);
  if (t == 0u) { y[row] = s; }`);

/** P: rows, cols */
export const softmax = perRow([['x', 'read'], ['y', 'read_write']],
  `let n = P[1]; let o = row * n;
  var m = -3.4e38; for (var j = t; j < n; j += ${WG}u) { m = max(m, x[o + j]); }
  m = wgMax(m, t);
  var s = 0.0; for (var j = t; j < n; j += ${WG}u) { let e = exp(x[o + j] - m); y[o + j] = e; s += e; }
  s = wgSum(s, t);
  for (var j = t; j < n; j += ${WG}u) { y[o + j] = y[o + j] / s; }`);
/** P: rows, cols */
export const softmaxBackward = perRow([['y', 'read'], ['dy', 'read'], ['dx', 'read_write']],
  `let n = P[1]; let o = row * n;
  var d = 0.0; for (var j = t; j < n; j += ${WG}u) { d += y[o + j] * dy[o + j]; }
  d = wgSum(d, t);
  for (var j = t; j < n; j += ${WG}u) { dx[o + j] = y[o + j] * (dy[o + j] - d); }`);

/** P: N*groups, C, S, groups, eps, silu. One workgroup per (n, g): two-pass mean and variance, as the reference. */
export const groupNorm = perRow([['x', 'read'], ['gamma', 'read'], ['beta', 'read'], ['y', 'read_write'], ['mean', 'read_write'], ['rstd', 'read_write']],
  `let C = P[1]; let S = P[2]; let G = P[3]; let cg = C / G; let len = cg * S; let g = row % G; let n = row / G;
  let off = (n * C + g * cg) * S;
  var s = 0.0; for (var j = t; j < len; j += ${WG}u) { s += x[off + j]; }
  let mu = wgSum(s, t) / f32(len);
  var v = 0.0; for (var j = t; j < len; j += ${WG}u) { let d = x[off + j] - mu; v += d * d; }
  let r = 1.0 / sqrt(wgSum(v, t) / f32(len) + pf(4u));
  if (t == 0u) { mean[row] = mu; rstd[row] = r; }
  for (var j = t; j < len; j += ${WG}u) {
    let ch = g * cg + j / S;
    let z = (x[off + j] - mu) * r * gamma[ch] + beta[ch];
    y[off + j] = select(z, z * sigm(z), P[5] == 1u);
  }`);

/** P: N*groups, C, S, groups, silu. dx per (n, g), as the reference backend's formula. */
export const groupNormBackwardData = perRow(
  [['x', 'read'], ['gamma', 'read'], ['beta', 'read'], ['mean', 'read'], ['rstd', 'read'], ['dy', 'read'], ['dx', 'read_write']],
  `let C = P[1]; let S = P[2]; let G = P[3]; let cg = C / G; let len = cg * S; let g = row % G; let n = row / G;
  let off = (n * C + g * cg) * S; let mu = mean[row]; let r = rstd[row];
  var s1 = 0.0; var s2 = 0.0;
  for (var j = t; j < len; j += ${WG}u) {
    let ch = g * cg + j / S; let xh = (x[off + j] - mu) * r;
    let dxh = gnGrad(dy[off + j], xh, gamma[ch], beta[ch]) * gamma[ch];
    s1 += dxh; s2 += dxh * xh;
  }
  s1 = wgSum(s1, t) / f32(len); s2 = wgSum(s2, t) / f32(len);
  for (var j = t; j < len; j += ${WG}u) {
    let ch = g * cg + j / S; let xh = (x[off + j] - mu) * r;
    dx[off + j] = r * (gnGrad(dy[off + j], xh, gamma[ch], beta[ch]) * gamma[ch] - s1 - xh * s2);
  }`,
  `fn gnGrad(d: f32, xh: f32, ga: f32, be: f32) -> f32 { if (P[4] == 0u) { return d; } let z = xh * ga + be; let sg = sigm(z); return d * sg * (1.0 + z * (1.0 - sg)); }`,
);

/** P: C (rows), N, S, groups, silu. dgamma, dbeta per channel, summed over the batch and positions. */
export const groupNormBackwardAffine = perRow(
  [['x', 'read'], ['gamma', 'read'], ['beta', 'read'], ['mean', 'read'], ['rstd', 'read'], ['dy', 'read'], ['dgamma', 'read_write'], ['dbeta', 'read_write']],
  `let C = P[0]; let N = P[1]; let S = P[2]; let G = P[3]; let ch = row; let g = ch / (C / G);
  var sg = 0.0; var sb = 0.0;
  for (var j = t; j < N * S; j += ${WG}u) {
    let n = j / S; let k = (n * C + ch) * S + j % S; let ng = n * G + g;
    let xh = (x[k] - mean[ng]) * rstd[ng];
    let d = gnGrad(dy[k], xh, gamma[ch], beta[ch]);
    sg += d * xh; sb += d;
  }
  sg = wgSum(sg, t); sb = wgSum(sb, t);
  if (t == 0u) { dgamma[ch] = sg; dbeta[ch] = sb; }`,
  `fn gnGrad(d: f32, xh: f32, ga: f32, be: f32) -> f32 { if (P[4] == 0u) { return d; } let z = xh * ga + be; let sg = sigm(z); return d * sg * (1.0 + z * (1.0 - sg)); }`,
);

// ---- tiled GEMM: C[M, N] = A[M, K] B[K, N], 64x64 tiles, 16x16 threads with 4x4 outputs each ----
// The variants differ only in how A and B elements are loaded (a matrix, or a convolution's implicit im2col) and how
// C is stored; wid.z is the batch (matmul) or the image (convolutions).

const TM = 64, TN = 64, TK = 16;

function gemm(bs: Bindings, fns: string): string {
  return `${HEAD}${bindings(bs)}
var<workgroup> As: array<f32, ${TK * TM}>;
var<workgroup> Bs: array<f32, ${TK * TN}>;
${fns}
@compute @workgroup_size(16, 16) fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let M = P[0]; let N = P[1]; let K = P[2]; let z = wid.z;
  let m0 = wid.y * ${TM}u; let n0 = wid.x * ${TN}u; let tid = lid.y * 16u + lid.x;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < K; k0 += ${TK}u) {
    for (var e = tid; e < ${TM * TK}u; e += 256u) {
      let mm = e / ${TK}u; let kk = e % ${TK}u; let m = m0 + mm; let k = k0 + kk;
      var v = 0.0; if (m < M && k < K) { v = loadA(z, m, k); } As[kk * ${TM}u + mm] = v;
    }
    for (var e = tid; e < ${TN * TK}u; e += 256u) {
      let kk = e / ${TN}u; let nn = e % ${TN}u; let n = n0 + nn; let k = k0 + kk;
      var v = 0.0; if (n < N && k < K) { v = loadB(z, k, n); } Bs[kk * ${TN}u + nn] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      var a: array<f32, 4>; var b: array<f32, 4>;
      for (var q = 0u; q < 4u; q++) { a[q] = As[kk * ${TM}u + lid.y * 4u + q]; b[q] = Bs[kk * ${TN}u + lid.x * 4u + q]; }
      for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]); } }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) {
    let m = m0 + lid.y * 4u + i; let n = n0 + lid.x * 4u + j;
    if (m < M && n < N) { store(z, m, n, acc[i * 4u + j]); }
  } }
}`;
}

export const GEMM_TILE = { M: TM, N: TN };

/** P: M, N, K, transA, transB */
export const matmul = gemm([['a', 'read'], ['b', 'read'], ['c', 'read_write']], `
fn loadA(z: u32, m: u32, k: u32) -> f32 { let o = z * P[0] * P[2]; return select(a[o + m * P[2] + k], a[o + k * P[0] + m], P[3] == 1u); }
fn loadB(z: u32, k: u32, n: u32) -> f32 { let o = z * P[2] * P[1]; return select(b[o + k * P[1] + n], b[o + n * P[2] + k], P[4] == 1u); }
fn store(z: u32, m: u32, n: u32, v: f32) { c[z * P[0] * P[1] + m * P[1] + n] = v; }`);

// Convolution parameters shared by the three GEMMs: P[3..] = C, H, W, O, KH, KW, Ho, Wo, stride, padTop, padLeft, hasBias
const CONV = `fn C_() -> u32 { return P[3]; } fn H_() -> i32 { return i32(P[4]); } fn W_() -> i32 { return i32(P[5]); }
fn O_() -> u32 { return P[6]; } fn KH_() -> u32 { return P[7]; } fn KW_() -> u32 { return P[8]; }
fn Ho_() -> u32 { return P[9]; } fn Wo_() -> u32 { return P[10]; } fn S_() -> i32 { return i32(P[11]); }
fn PT_() -> i32 { return i32(P[12]); } fn PL_() -> i32 { return i32(P[13]); }`;
const XAT = `// x[z, c, oh*s + kh - pt, ow*s + kw - pl] for the im2col column (c, kh, kw) and output position p, 0 outside
fn xAt(z: u32, ckk: u32, p: u32) -> f32 {
  let kk = KH_() * KW_(); let c = ckk / kk; let r = ckk % kk;
  let ih = i32(p / Wo_()) * S_() + i32(r / KW_()) - PT_(); let iw = i32(p % Wo_()) * S_() + i32(r % KW_()) - PL_();
  if (ih < 0 || ih >= H_() || iw < 0 || iw >= W_()) { return 0.0; }
  return x[((z * C_() + c) * u32(H_()) + u32(ih)) * u32(W_()) + u32(iw)];
}`;

/** y[z, o, p] = sum_k w[o, k] x_im2col[z, k, p] (+ b[o]); M = O, N = Ho*Wo, K = C*KH*KW */
export const conv2d = gemm([['x', 'read'], ['w', 'read'], ['bias', 'read'], ['y', 'read_write']], `${CONV}${XAT}
fn loadA(z: u32, m: u32, k: u32) -> f32 { return w[m * P[2] + k]; }
fn loadB(z: u32, k: u32, n: u32) -> f32 { return xAt(z, k, n); }
fn store(z: u32, m: u32, n: u32, v: f32) { y[(z * P[0] + m) * P[1] + n] = v + select(0.0, bias[m], P[14] == 1u); }`);

/** dx[z, c, q] = sum_{o,kh,kw} w[o, c, kh, kw] dy[z, o, (q + pad - k) / s]; M = C, N = H*W, K = O*KH*KW */
export const conv2dBackwardData = gemm([['dy', 'read'], ['w', 'read'], ['dx', 'read_write']], `${CONV}
fn loadA(z: u32, m: u32, k: u32) -> f32 { let kk = KH_() * KW_(); return w[((k / kk) * C_() + m) * kk + k % kk]; }
fn loadB(z: u32, k: u32, n: u32) -> f32 {
  let kk = KH_() * KW_(); let o = k / kk; let r = k % kk;
  let th = i32(n / u32(W_())) + PT_() - i32(r / KW_()); let tw = i32(n % u32(W_())) + PL_() - i32(r % KW_());
  if (th < 0 || tw < 0 || th % S_() != 0 || tw % S_() != 0) { return 0.0; }
  let oh = u32(th / S_()); let ow = u32(tw / S_());
  if (oh >= Ho_() || ow >= Wo_()) { return 0.0; }
  return dy[((z * O_() + o) * Ho_() + oh) * Wo_() + ow];
}
fn store(z: u32, m: u32, n: u32, v: f32) { dx[(z * P[0] + m) * P[1] + n] = v; }`);

/** dw[o, ckk] = sum_{z,p} dy[z, o, p] x_im2col[z, ckk, p]; M = O, N = C*KH*KW, K = batch*Ho*Wo */
export const conv2dBackwardWeights = gemm([['dy', 'read'], ['x', 'read'], ['dw', 'read_write']], `${CONV}${XAT}
fn loadA(z: u32, m: u32, k: u32) -> f32 { let hw = Ho_() * Wo_(); return dy[((k / hw) * O_() + m) * hw + k % hw]; }
fn loadB(z: u32, k: u32, n: u32) -> f32 { let hw = Ho_() * Wo_(); return xAt(k / hw, n, k % hw); }
fn store(z: u32, m: u32, n: u32, v: f32) { dw[m * P[1] + n] = v; }`);
