// Image datasets as bytes (uint8, [count, C, H, W]) and batches scaled to [-1, 1]. Pure: no file access.
import type { Tensor } from '../engine/tensor.js';
import { fromArray } from '../engine/ops.js';

export interface ImageDataset {
  name: string;
  count: number;
  channels: number;
  height: number;
  width: number;
  /** uint8 pixels, [count, channels, height, width] */
  pixels: Uint8Array;
  labels?: Uint8Array;
  /** the class of each label value, where the source names them (an image folder's subfolders) */
  classNames?: string[];
  /** the files it was read from (for reports) */
  files?: string[];
  /** what reading it changed or dropped (alpha channels, ...), for the caller to show */
  warnings?: string[];
}

/** x = byte / 127.5 - 1 for the given images, optionally mirrored left-right per image. */
export function makeBatch(ds: ImageDataset, indices: ArrayLike<number>, flips?: ArrayLike<boolean>): Tensor {
  const { channels: C, height: H, width: W } = ds;
  const per = C * H * W;
  const out = new Float32Array(indices.length * per);
  for (let b = 0; b < indices.length; b++) {
    const src = indices[b] * per,
      dst = b * per;
    const flip = flips ? flips[b] : false;
    for (let c = 0; c < C; c++)
      for (let h = 0; h < H; h++) {
        const row = c * H * W + h * W;
        for (let w = 0; w < W; w++) out[dst + row + w] = ds.pixels[src + row + (flip ? W - 1 - w : w)] / 127.5 - 1;
      }
  }
  return fromArray(out, [indices.length, C, H, W]);
}

/**
 * The images an evaluation of n of a dataset's count images uses: the first n, or (spread) n evenly spaced over the
 * set, image floor(i * count / n) for i < n, so that a set stored in class order still gives every class.
 */
export function subsetIndices(count: number, n: number, spread: boolean): Int32Array {
  if (!(Number.isInteger(n) && n >= 0 && n <= count))
    throw new Error(`subsetIndices: n must be an integer in [0, ${count}], got ${n}`);
  return Int32Array.from({ length: n }, (_, i) => (spread ? Math.floor((i * count) / n) : i));
}

/** The number of distinct labels among the given images (undefined when the set has no labels). */
export function classCount(ds: ImageDataset, indices: ArrayLike<number>): number | undefined {
  if (!ds.labels) return undefined;
  const seen = new Set<number>();
  for (let i = 0; i < indices.length; i++) seen.add(ds.labels[indices[i]]);
  return seen.size;
}

/**
 * A warning when the first n images of a labelled set hold fewer of its classes than n images spread over it: a set
 * stored in class order, whose first n images are a biased sample (what `spread` avoids); null otherwise.
 */
export function firstImagesWarning(ds: ImageDataset, n: number, flag: string): string | null {
  if (n >= ds.count || !ds.labels) return null;
  const first = classCount(ds, subsetIndices(ds.count, n, false))!,
    spread = classCount(ds, subsetIndices(ds.count, n, true))!;
  const all = new Set(ds.labels).size;
  return first < spread
    ? `${ds.name}: its first ${n} images hold ${first} of its ${all} classes (the set is stored in class order?); ` +
        `${flag} takes ${n} images spread over the set (${spread} classes)`
    : null;
}

/** Pixel mean and standard deviation on [0, 1] (for checking a loader against published statistics). */
export function pixelStats(ds: ImageDataset): { mean: number; std: number } {
  let s = 0,
    s2 = 0;
  for (let i = 0; i < ds.pixels.length; i++) {
    const v = ds.pixels[i] / 255;
    s += v;
    s2 += v * v;
  }
  const n = ds.pixels.length,
    mean = s / n;
  return { mean, std: Math.sqrt(s2 / n - mean * mean) };
}

/** Parses an IDX image file (magic 0x00000803: count, rows, cols, then bytes). */
export function parseIdxImages(bytes: Uint8Array, file: string): ImageDataset {
  if (bytes.length < 16) throw new Error(`${file}: truncated IDX header (${bytes.length} bytes, expected at least 16)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getUint32(0);
  if (magic !== 0x803)
    throw new Error(`${file}: magic number 0x${magic.toString(16)} is not an IDX image file (expected 0x803)`);
  const count = dv.getUint32(4),
    rows = dv.getUint32(8),
    cols = dv.getUint32(12);
  const need = 16 + count * rows * cols;
  if (bytes.length < need)
    throw new Error(
      `${file}: truncated: header says ${count} images of ${rows}x${cols} (${need} bytes), file has ${bytes.length}`,
    );
  return { name: file, count, channels: 1, height: rows, width: cols, pixels: bytes.slice(16, need) };
}

/** Parses an IDX label file (magic 0x00000801). */
export function parseIdxLabels(bytes: Uint8Array, file: string): Uint8Array {
  if (bytes.length < 8) throw new Error(`${file}: truncated IDX header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0) !== 0x801)
    throw new Error(
      `${file}: magic number 0x${dv.getUint32(0).toString(16)} is not an IDX label file (expected 0x801)`,
    );
  const n = dv.getUint32(4);
  if (bytes.length < 8 + n)
    throw new Error(`${file}: truncated: header says ${n} labels, file has ${bytes.length - 8}`);
  return bytes.slice(8, 8 + n);
}

/** Parses CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32). */
export function parseCifar(bytes: Uint8Array, file: string): ImageDataset {
  const rec = 3073;
  if (bytes.length === 0 || bytes.length % rec !== 0)
    throw new Error(
      `${file}: ${bytes.length} bytes is not a whole number of CIFAR-10 records of ${rec} bytes (truncated or not a ` +
        `CIFAR-10 .bin file)`,
    );
  const count = bytes.length / rec;
  const pixels = new Uint8Array(count * 3072),
    labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    labels[i] = bytes[i * rec];
    if (labels[i] > 9)
      throw new Error(`${file}: record ${i} has label ${labels[i]} (expected 0..9): not a CIFAR-10 .bin file`);
    pixels.set(bytes.subarray(i * rec + 1, (i + 1) * rec), i * 3072);
  }
  return { name: file, count, channels: 3, height: 32, width: 32, pixels, labels };
}

export function concatDatasets(parts: ImageDataset[], name: string): ImageDataset {
  const p0 = parts[0];
  for (const p of parts)
    if (p.channels !== p0.channels || p.height !== p0.height || p.width !== p0.width)
      throw new Error(`${p.name}: image size differs from ${p0.name}`);
  const count = parts.reduce((a, p) => a + p.count, 0);
  const pixels = new Uint8Array(parts.reduce((a, p) => a + p.pixels.length, 0));
  let o = 0;
  for (const p of parts) {
    pixels.set(p.pixels, o);
    o += p.pixels.length;
  }
  return { name, count, channels: p0.channels, height: p0.height, width: p0.width, pixels };
}

/** Resizes one image (uint8 [C, H, W]) to [C, size, size]: centre crop to a square, then area averaging / bilinear. */
export function resizeSquare(src: Uint8Array, C: number, H: number, W: number, size: number): Uint8Array {
  const side = Math.min(H, W),
    y0 = (H - side) >> 1,
    x0 = (W - side) >> 1;
  const out = new Uint8Array(C * size * size);
  const scale = side / size;
  for (let c = 0; c < C; c++)
    for (let oy = 0; oy < size; oy++)
      for (let ox = 0; ox < size; ox++) {
        // average over the source box that maps to this output pixel (bilinear when upsampling)
        const sy0 = oy * scale,
          sy1 = (oy + 1) * scale,
          sx0 = ox * scale,
          sx1 = (ox + 1) * scale;
        let acc = 0,
          wsum = 0;
        for (let sy = Math.floor(sy0); sy < Math.max(Math.ceil(sy1), Math.floor(sy0) + 1); sy++)
          for (let sx = Math.floor(sx0); sx < Math.max(Math.ceil(sx1), Math.floor(sx0) + 1); sx++) {
            const wy = Math.max(0, Math.min(sy + 1, sy1) - Math.max(sy, sy0)) || 1e-6;
            const wx = Math.max(0, Math.min(sx + 1, sx1) - Math.max(sx, sx0)) || 1e-6;
            const yy = Math.min(side - 1, sy),
              xx = Math.min(side - 1, sx);
            acc += wy * wx * src[c * H * W + (y0 + yy) * W + x0 + xx];
            wsum += wy * wx;
          }
        out[c * size * size + oy * size + ox] = Math.round(acc / wsum);
      }
  return out;
}
