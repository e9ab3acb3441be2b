// A batch of images given on the command line (`ddpm inpaint`, `ddpm edit`): one PNG, a folder of PNGs (in name
// order) or a .npy [N, C, H, W] on [-1, 1], brought to a model's size and channels. Node-only.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { parseNpy } from '../io/npy.js';
import { loadPngFiles, loadPngFolder } from './load.js';

export interface ImageBatch {
  /** [n, channels, size, size] on [-1, 1] */
  x: Float32Array;
  n: number;
  /** a name per image (its file name, or "NAME.npy[i]") */
  names: string[];
  /** what reading changed or dropped (transparency), for the caller to show */
  warnings: string[];
}

/**
 * Refuses a batch that no model takes: no images, a non-finite value (named by its index), or values outside
 * [-1, 1] (bytes given as 0..255, say), naming the file.
 */
export function checkImageValues(x: Float32Array, n: number, what: string): void {
  if (n < 1) throw new Error(`${what}: holds no images`);
  let lo = Infinity,
    hi = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (!Number.isFinite(v)) throw new Error(`${what}: value ${i} is ${v}; images must be finite, on [-1, 1]`);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo < -1.001 || hi > 1.001)
    throw new Error(`${what}: values span [${lo}, ${hi}]; images must be on [-1, 1] (bytes b as b / 127.5 - 1)`);
}

export function loadImages(spec: string, size: number, channels: 1 | 3, what = '--image'): ImageBatch {
  if (!existsSync(spec)) throw new Error(`${what} ${spec}: not found (a PNG file, a folder of PNGs, or a .npy)`);
  if (spec.endsWith('.npy')) {
    const { shape, data } = parseNpy(new Uint8Array(readFileSync(spec)), spec);
    if (shape.length !== 4 || shape[1] !== channels || shape[2] !== size || shape[3] !== size)
      throw new Error(
        `${what} ${spec}: expected [N, ${channels}, ${size}, ${size}] images on [-1, 1] for this model, got ` +
          `(${shape.join(', ')})`,
      );
    checkImageValues(data, shape[0], `${what} ${spec}`);
    return {
      x: data,
      n: shape[0],
      names: Array.from({ length: shape[0] }, (_, i) => `${basename(spec)}[${i}]`),
      warnings: [],
    };
  }
  const ds = statSync(spec).isDirectory()
    ? loadPngFolder(spec, size, channels)
    : spec.toLowerCase().endsWith('.png')
      ? loadPngFiles(dirname(spec), [basename(spec)], size, channels)
      : null;
  if (!ds) throw new Error(`${what} ${spec}: expected a PNG file, a folder of PNGs, or a .npy`);
  const x = Float32Array.from(ds.pixels, (v) => v / 127.5 - 1);
  return { x, n: ds.count, names: (ds.files ?? []).map((f) => basename(f)), warnings: ds.warnings ?? [] };
}
