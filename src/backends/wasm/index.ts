// The wasm backend: the browser's fallback where WebGPU is missing. Matrix products and convolutions (nearly all of a
// U-Net's arithmetic) run in a 128-bit SIMD GEMM kernel in WebAssembly (gemm.wat); every other op is the reference
// backend's loop, on the same Float32Array buffers. Convolutions are lowered to that GEMM through im2col / col2im.
// Single-threaded.
import type { ConvParams } from '../../engine/backend.js';
import { convOutSize } from '../../engine/backend.js';
import { ReferenceBackend, roundToBf16 } from '../reference/index.js';
import { GEMM_WASM_BASE64 } from './gemm-wasm.js';

type Storage = Float32Array;

const up = (v: number, m: number) => Math.ceil(v / m) * m;

function decodeBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The compiled kernel and its linear memory (grown as a product needs). */
class Gemm {
  private readonly memory: WebAssembly.Memory;
  private readonly fn: (M: number, N: number, K: number, a: number, b: number, c: number) => void;

  constructor() {
    // 649 bytes: small enough for a synchronous compile on a browser's main thread
    const inst = new WebAssembly.Instance(new WebAssembly.Module(decodeBase64(GEMM_WASM_BASE64) as BufferSource), {});
    this.memory = inst.exports.memory as WebAssembly.Memory;
    this.fn = inst.exports.gemm as Gemm['fn'];
  }

  /**
   * C[M, N] = A[M, K] B[K, N]. fillA(a, lda) and fillB(b, ldb) write the operands into zeroed, padded views (rows of
   * lda = K and ldb = N rounded up to 8 floats); returns a view of C with rows of ldc floats (valid until the next
   * call).
   */
  run(
    M: number,
    N: number,
    K: number,
    fillA: (a: Float32Array, lda: number) => void,
    fillB: (b: Float32Array, ldb: number) => void,
  ): { c: Float32Array; ldc: number } {
    const M4 = up(M, 4),
      N8 = up(N, 8);
    const aN = M4 * K,
      bN = K * N8,
      cN = M4 * N8;
    const bytes = 4 * (aN + bN + cN);
    const have = this.memory.buffer.byteLength;
    if (bytes > have) this.memory.grow(Math.ceil((bytes - have) / 65536));
    const f = new Float32Array(this.memory.buffer, 0, aN + bN + cN);
    f.fill(0, 0, aN + bN);
    fillA(f.subarray(0, aN), K);
    fillB(f.subarray(aN, aN + bN), N8);
    this.fn(M4, N8, K, 0, 4 * aN, 4 * (aN + bN));
    return { c: f.subarray(aN + bN), ldc: N8 };
  }
}

export class WasmBackend extends ReferenceBackend {
  override readonly name = 'wasm';
  /** What `ddpm info` shows. */
  readonly info = { gemm: 'wasm simd128, 4x8 f32x4 blocks', threads: 1, otherOps: 'reference loops' };
  private readonly gemm = new Gemm();

  constructor() {
    super('float32');
  }

  override matmul(
    a: Storage,
    b: Storage,
    batch: number,
    m: number,
    k: number,
    n: number,
    transA: boolean,
    transB: boolean,
  ): Storage {
    const out = new Float32Array(batch * m * n);
    for (let bt = 0; bt < batch; bt++) {
      const ao = bt * m * k,
        bo = bt * k * n;
      const { c, ldc } = this.gemm.run(
        m,
        n,
        k,
        (A, lda) => {
          for (let i = 0; i < m; i++)
            for (let kk = 0; kk < k; kk++) A[i * lda + kk] = transA ? a[ao + kk * m + i] : a[ao + i * k + kk];
        },
        (B, ldb) => {
          for (let kk = 0; kk < k; kk++)
            for (let j = 0; j < n; j++) B[kk * ldb + j] = transB ? b[bo + j * k + kk] : b[bo + kk * n + j];
        },
      );
      for (let i = 0; i < m; i++) out.set(c.subarray(i * ldc, i * ldc + n), bt * m * n + i * n);
    }
    return out;
  }

  private readonly maps = new Map<string, Int32Array>();

  /**
   * For a convolution's shapes, the input index (within one image) of every im2col entry (rows: c, kh, kw; columns:
   * output positions), -1 in the padding. Built once per shape (the last 8 kept) and used both ways: gathered for
   * im2col, scattered for col2im.
   */
  private im2colMap(xs: number[], ws: number[], p: ConvParams): Int32Array {
    const key = `${xs.slice(1)}|${ws}|${p.stride},${p.padTop},${p.padBottom},${p.padLeft},${p.padRight}`;
    let map = this.maps.get(key);
    if (map) return map;
    const [, C, H, W] = xs,
      [, , KH, KW] = ws;
    const Ho = convOutSize(H, KH, p.padTop, p.padBottom, p.stride),
      Wo = convOutSize(W, KW, p.padLeft, p.padRight, p.stride);
    map = new Int32Array(C * KH * KW * Ho * Wo).fill(-1);
    for (let c = 0; c < C; c++)
      for (let kh = 0; kh < KH; kh++)
        for (let kw = 0; kw < KW; kw++)
          for (let oh = 0; oh < Ho; oh++) {
            const ih = oh * p.stride + kh - p.padTop;
            if (ih < 0 || ih >= H) continue;
            for (let ow = 0; ow < Wo; ow++) {
              const iw = ow * p.stride + kw - p.padLeft;
              if (iw >= 0 && iw < W) map[(((c * KH + kh) * KW + kw) * Ho + oh) * Wo + ow] = (c * H + ih) * W + iw;
            }
          }
    if (this.maps.size >= 8) this.maps.delete(this.maps.keys().next().value!);
    this.maps.set(key, map);
    return map;
  }

  /** The im2col matrix of image n (offset xo in x) into B, K rows of P columns, row stride ldb. */
  private im2col(x: Storage, xo: number, map: Int32Array, K: number, P: number, B: Float32Array, ldb: number): void {
    for (let r = 0; r < K; r++)
      for (let q = 0; q < P; q++) {
        const i = map[r * P + q];
        if (i >= 0) B[r * ldb + q] = x[xo + i];
      }
  }

  override conv2d(x: Storage, xs: number[], w: Storage, ws: number[], b: Storage | null, p: ConvParams): Storage {
    if (p.bf16) [x, w] = [roundToBf16(x), roundToBf16(w)];
    const [N, C, H, W] = xs,
      [O, , KH, KW] = ws;
    const Ho = convOutSize(H, KH, p.padTop, p.padBottom, p.stride),
      Wo = convOutSize(W, KW, p.padLeft, p.padRight, p.stride);
    const K = C * KH * KW,
      P = Ho * Wo;
    const y = new Float32Array(N * O * P);
    const map = this.im2colMap(xs, ws, p);
    for (let n = 0; n < N; n++) {
      const { c, ldc } = this.gemm.run(
        O,
        P,
        K,
        (A, lda) => {
          for (let o = 0; o < O; o++) A.set(w.subarray(o * K, (o + 1) * K), o * lda);
        },
        (B, ldb) => this.im2col(x, n * C * H * W, map, K, P, B, ldb),
      );
      for (let o = 0; o < O; o++) {
        const yo = (n * O + o) * P,
          bias = b ? b[o] : 0;
        for (let q = 0; q < P; q++) y[yo + q] = c[o * ldc + q] + bias;
      }
    }
    return y;
  }

  override conv2dBackward(
    x: Storage,
    xs: number[],
    dy: Storage,
    w: Storage,
    ws: number[],
    p: ConvParams,
    needDx: boolean,
    withBias: boolean,
  ) {
    const [N, C, H, W] = xs,
      [O, , KH, KW] = ws;
    const Ho = convOutSize(H, KH, p.padTop, p.padBottom, p.stride),
      Wo = convOutSize(W, KW, p.padLeft, p.padRight, p.stride);
    const K = C * KH * KW,
      P = Ho * Wo;
    const map = this.im2colMap(xs, ws, p);
    let dx: Storage | null = null;
    if (needDx) {
      // dcol[K, P] = W^T[K, O] dY[O, P], then col2im
      dx = new Float32Array(N * C * H * W);
      for (let n = 0; n < N; n++) {
        const { c: dcol, ldc } = this.gemm.run(
          K,
          P,
          O,
          (A, lda) => {
            for (let kk = 0; kk < K; kk++) for (let o = 0; o < O; o++) A[kk * lda + o] = w[o * K + kk];
          },
          (B, ldb) => {
            for (let o = 0; o < O; o++) B.set(dy.subarray((n * O + o) * P, (n * O + o + 1) * P), o * ldb);
          },
        );
        const xo = n * C * H * W;
        for (let r = 0; r < K; r++)
          for (let q = 0; q < P; q++) {
            const i = map[r * P + q];
            if (i >= 0) dx[xo + i] += dcol[r * ldc + q];
          }
      }
    }
    // dW[O, K] = sum_n dY_n[O, P] col_n^T[P, K]: one product over all images, the images side by side along P
    const { c: dwp, ldc } = this.gemm.run(
      O,
      K,
      N * P,
      (A, lda) => {
        for (let o = 0; o < O; o++)
          for (let n = 0; n < N; n++) A.set(dy.subarray((n * O + o) * P, (n * O + o + 1) * P), o * lda + n * P);
      },
      (B, ldb) => {
        // B = col^T: row (n, q), column (c, kh, kw)
        for (let n = 0; n < N; n++)
          for (let kk = 0; kk < K; kk++)
            for (let q = 0; q < P; q++) {
              const i = map[kk * P + q];
              if (i >= 0) B[(n * P + q) * ldb + kk] = x[n * C * H * W + i];
            }
      },
    );
    const dw = new Float32Array(O * K);
    for (let o = 0; o < O; o++) dw.set(dwp.subarray(o * ldc, o * ldc + K), o * K);
    let db: Storage | null = null;
    if (withBias) {
      db = new Float32Array(O);
      for (let n = 0; n < N; n++)
        for (let o = 0; o < O; o++) {
          let s = 0;
          for (let q = 0; q < P; q++) s += dy[(n * O + o) * P + q];
          db[o] += s;
        }
    }
    return { dx, dw, db };
  }
}
