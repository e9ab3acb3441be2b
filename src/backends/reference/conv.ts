// The reference backend's spatial loops: convolution (forward, data and weight gradients), pooling, and nearest 2x
// upsampling and its gradient, over NCHW buffers. Each takes the backend's allocator (Float32Array or Float64Array
// buffers); ReferenceBackend (index.ts) calls them.
import { type ConvParams, convOutSize } from '../../engine/backend.js';

/** The reference backend's buffers (Float64Array in the float64 variant, typed as Float32Array here). */
type Storage = Float32Array;
/** A zeroed buffer of n values, of the backend's precision. */
export type Alloc = (n: number) => Storage;

/** y[N, O, Ho, Wo] = x[N, C, H, W] convolved with w[O, C, KH, KW] (+ b[O]), cross-correlation as PyTorch. */
export function conv2d(
  alloc: Alloc,
  x: Storage,
  xs: number[],
  w: Storage,
  ws: number[],
  b: Storage | null,
  p: ConvParams,
): Storage {
  const [N, C, H, W] = xs;
  const [O, , KH, KW] = ws;
  const Ho = convOutSize(H, KH, p.padTop, p.padBottom, p.stride);
  const Wo = convOutSize(W, KW, p.padLeft, p.padRight, p.stride);
  const y = alloc(N * O * Ho * Wo);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      const yo = (n * O + o) * Ho * Wo;
      if (b) y.fill(b[o], yo, yo + Ho * Wo);
      for (let c = 0; c < C; c++)
        for (let kh = 0; kh < KH; kh++)
          for (let kw = 0; kw < KW; kw++) {
            const wv = w[((o * C + c) * KH + kh) * KW + kw];
            for (let oh = 0; oh < Ho; oh++) {
              const ih = oh * p.stride + kh - p.padTop;
              if (ih < 0 || ih >= H) continue;
              const xrow = ((n * C + c) * H + ih) * W;
              for (let ow = 0; ow < Wo; ow++) {
                const iw = ow * p.stride + kw - p.padLeft;
                if (iw < 0 || iw >= W) continue;
                y[yo + oh * Wo + ow] += wv * x[xrow + iw];
              }
            }
          }
    }
  return y;
}

/** dx[N, C, H, W]: the convolution's gradient with respect to its input, given dy. */
export function conv2dBackwardData(
  alloc: Alloc,
  dy: Storage,
  w: Storage,
  ws: number[],
  p: ConvParams,
  xs: number[],
): Storage {
  const [N, C, H, W] = xs;
  const [O, , KH, KW] = ws;
  const Ho = convOutSize(H, KH, p.padTop, p.padBottom, p.stride);
  const Wo = convOutSize(W, KW, p.padLeft, p.padRight, p.stride);
  const dx = alloc(N * C * H * W);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      const yo = (n * O + o) * Ho * Wo;
      for (let c = 0; c < C; c++)
        for (let kh = 0; kh < KH; kh++)
          for (let kw = 0; kw < KW; kw++) {
            const wv = w[((o * C + c) * KH + kh) * KW + kw];
            for (let oh = 0; oh < Ho; oh++) {
              const ih = oh * p.stride + kh - p.padTop;
              if (ih < 0 || ih >= H) continue;
              const xrow = ((n * C + c) * H + ih) * W;
              for (let ow = 0; ow < Wo; ow++) {
                const iw = ow * p.stride + kw - p.padLeft;
                if (iw < 0 || iw >= W) continue;
                dx[xrow + iw] += wv * dy[yo + oh * Wo + ow];
              }
            }
          }
    }
  return dx;
}

/** dw[O, C, KH, KW] and db[O] (when withBias): the convolution's weight and bias gradients, given x and dy. */
export function conv2dBackwardWeights(
  alloc: Alloc,
  x: Storage,
  xs: number[],
  dy: Storage,
  ws: number[],
  p: ConvParams,
  withBias: boolean,
): { dw: Storage; db: Storage | null } {
  const [N, C, H, W] = xs;
  const [O, , KH, KW] = ws;
  const Ho = convOutSize(H, KH, p.padTop, p.padBottom, p.stride);
  const Wo = convOutSize(W, KW, p.padLeft, p.padRight, p.stride);
  const dw = alloc(O * C * KH * KW);
  const db = withBias ? alloc(O) : null;
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      const yo = (n * O + o) * Ho * Wo;
      if (db) for (let i = 0; i < Ho * Wo; i++) db[o] += dy[yo + i];
      for (let c = 0; c < C; c++)
        for (let kh = 0; kh < KH; kh++)
          for (let kw = 0; kw < KW; kw++) {
            let acc = 0;
            for (let oh = 0; oh < Ho; oh++) {
              const ih = oh * p.stride + kh - p.padTop;
              if (ih < 0 || ih >= H) continue;
              const xrow = ((n * C + c) * H + ih) * W;
              for (let ow = 0; ow < Wo; ow++) {
                const iw = ow * p.stride + kw - p.padLeft;
                if (iw < 0 || iw >= W) continue;
                acc += x[xrow + iw] * dy[yo + oh * Wo + ow];
              }
            }
            dw[((o * C + c) * KH + kh) * KW + kw] += acc;
          }
    }
  return { dw, db };
}

/** Max or average pooling of k x k windows (average over the window, or over its in-bounds part unless countPad). */
export function pool2d(
  alloc: Alloc,
  kind: 'max' | 'avg',
  x: Storage,
  xs: number[],
  k: number,
  stride: number,
  pad: number,
  countPad: boolean,
): Storage {
  const [N, C, H, W] = xs;
  const Ho = convOutSize(H, k, pad, pad, stride),
    Wo = convOutSize(W, k, pad, pad, stride);
  const y = alloc(N * C * Ho * Wo);
  for (let nc = 0; nc < N * C; nc++)
    for (let oh = 0; oh < Ho; oh++)
      for (let ow = 0; ow < Wo; ow++) {
        let acc = kind === 'max' ? -Infinity : 0,
          n = 0;
        for (let i = 0; i < k; i++)
          for (let j = 0; j < k; j++) {
            const h = oh * stride - pad + i,
              w = ow * stride - pad + j;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const v = x[(nc * H + h) * W + w];
            acc = kind === 'max' ? Math.max(acc, v) : acc + v;
            n++;
          }
        y[(nc * Ho + oh) * Wo + ow] = kind === 'max' ? acc : acc / (countPad ? k * k : n);
      }
  return y;
}

/** Nearest-neighbour 2x upsampling of [N, C, H, W] to [N, C, 2H, 2W]. */
export function upsample2x(alloc: Alloc, x: Storage, xs: number[]): Storage {
  const [N, C, H, W] = xs;
  const y = alloc(N * C * 4 * H * W);
  for (let nc = 0; nc < N * C; nc++)
    for (let h = 0; h < 2 * H; h++)
      for (let w = 0; w < 2 * W; w++) y[(nc * 2 * H + h) * 2 * W + w] = x[(nc * H + (h >> 1)) * W + (w >> 1)];
  return y;
}

/** upsample2x's gradient: each input pixel sums the 2x2 block of dy it was copied to. */
export function upsample2xBackward(alloc: Alloc, dy: Storage, xs: number[]): Storage {
  const [N, C, H, W] = xs;
  const dx = alloc(N * C * H * W);
  for (let nc = 0; nc < N * C; nc++)
    for (let h = 0; h < 2 * H; h++)
      for (let w = 0; w < 2 * W; w++) dx[(nc * H + (h >> 1)) * W + (w >> 1)] += dy[(nc * 2 * H + h) * 2 * W + w];
  return dx;
}
