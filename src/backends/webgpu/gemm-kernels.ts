// The WebGPU backend's GEMM kernels: matrix products and the convolutions lowered to them (forward through an
// implicit im2col of a zero-padded input, data and weight gradients), generated unrolled from one template.
import { type Bindings, HEAD, bindings, elementwise } from './wgsl.js';

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

// Convolution parameters shared by the three GEMMs: P[3..] = C, H, W, O, KH, KW, Ho, Wo, stride, padTop, padLeft,
// hasBias
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
  for (var kh = 0u; kh < KH_(); kh++) { let xk = xc + kh * u32(W_());
  for (var kw = 0u; kw < KW_(); kw++) { let k = (c * KH_() + kh) * KW_() + kw;`,
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
  `let Wp = P[4]; let Hp = P[3]; let w = i32(i % Wp) - i32(P[6]); let h = i32((i / Wp) % Hp) - i32(P[5]);
  let pl = i / (Wp * Hp);
  if (h < 0 || h >= i32(P[1]) || w < 0 || w >= i32(P[2])) { y[i] = 0.0; }
  else { y[i] = x[(pl * P[1] + u32(h)) * P[2] + u32(w)]; }`,
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
      `let c_${j} = n_${j} / (KH_() * KW_()); let r_${j} = n_${j} % (KH_() * KW_()); ` +
      `let kh_${j} = i32(r_${j} / KW_()) - PT_(); let kw_${j} = i32(r_${j} % KW_()) - PL_();`,
    loop: `let HW = u32(H_() * W_()); let HWo = Ho_() * Wo_();
  for (var zb = 0u; zb < K / HWo; zb++) { for (var oh = 0u; oh < Ho_(); oh++) { for (var ow = 0u; ow < Wo_(); ow++) {
    let ihs = i32(oh) * S_(); let iws = i32(ow) * S_(); let dyo = zb * O_() * HWo + oh * Wo_() + ow;`,
    close: '} } }',
    a: (i) => `dy[dyo + m_${i} * HWo]`,
    b: (j) => `xv((zb * C_() + c_${j}) * HW, ihs + kh_${j}, iws + kw_${j})`,
    store: (i, j) => `dw[(m0 + ${i}u) * N + n0 + ${j}u] = c${i}${j};`,
  },
);
