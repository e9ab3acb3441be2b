// Test helpers: seeded inputs, backend switching, and comparisons.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor, setBackend, getBackend } from '../src/engine/tensor.js';
import type { Backend } from '../src/engine/backend.js';
import type { UNet } from '../src/model/unet.js';
import type { SafeTensor } from '../src/io/safetensors.js';
import { fillRandom } from '../src/engine/random.js';
import { ReferenceBackend } from '../src/backends/reference/index.js';
import { NativeBackend, loadAddon } from '../src/backends/native/index.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHARED = join(ROOT, '..', 'shared');
export const HAS_SHARED = existsSync(join(SHARED, 'data'));
export const reference = new ReferenceBackend();
// the engine has no default backend: tests run on the reference backend unless they pick one
setBackend(reference);
const addon = loadAddon().addon;
export const native: Backend | null = addon ? new NativeBackend(addon) : null;
// CI sets DDPM_REQUIRE_NATIVE=1 and DDPM_REQUIRE_DATA=1: a missing addon or ../shared/data then fails every test
// file at once instead of letting the native, golden and data tests skip quietly.
if (!native && process.env.DDPM_REQUIRE_NATIVE === '1')
  throw new Error(`DDPM_REQUIRE_NATIVE=1 but the native addon is not available (${loadAddon().error})`);
if (!HAS_SHARED && process.env.DDPM_REQUIRE_DATA === '1')
  throw new Error(`DDPM_REQUIRE_DATA=1 but ${join(SHARED, 'data')} is absent`);
export const NATIVE_SKIP = native ? false : 'native addon not built (install libdnnl-dev and run npm rebuild)';
export const SHARED_SKIP = HAS_SHARED ? false : '../shared/data is absent';

let stream = 1000;
/** Normal values from a fixed seed, each call a new stream. */
export function randValues(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  if (n) fillRandom(a, n, { seed: 7, stream: stream++ }, 0, 'normal');
  if (scale !== 1) for (let i = 0; i < n; i++) a[i] *= scale;
  return a;
}

export function withBackend<T>(b: Backend, fn: () => T): T {
  const prev = getBackend();
  setBackend(b);
  try {
    return fn();
  } finally {
    setBackend(prev);
  }
}

/** withBackend for async bodies: the backend stays installed until the body's promise settles. */
export async function withBackendAsync<T>(b: Backend, fn: () => Promise<T>): Promise<T> {
  const prev = getBackend();
  setBackend(b);
  try {
    return await fn();
  } finally {
    setBackend(prev);
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: number,
  rtol: number,
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const tol = atol + rtol * Math.abs(expected[i]);
    if (!(Math.abs(actual[i] - expected[i]) <= tol))
      assert.fail(
        `${what}: index ${i}: ${actual[i]} vs expected ${expected[i]} (tolerance ${tol}, max abs diff ` +
          `${maxAbsDiff(actual, expected)})`,
      );
  }
}

/**
 * Runs fn(inputs) on a backend and returns the output values and the gradients of sum(output * probe) w.r.t. inputs.
 */
export function runWithGrads(
  b: Backend,
  inputs: { values: Float32Array; shape: number[] }[],
  fn: (xs: Tensor[]) => Tensor,
  probe?: Float32Array,
) {
  return withBackend(b, () => {
    const { y, xs, p } = forwardBackward(b, inputs, fn, probe);
    return {
      y: y.dataSync().slice(),
      grads: xs.map((x) => (x.grad ? x.grad.dataSync().slice() : new Float32Array(x.size))),
      probe: p,
    };
  });
}

/** runWithGrads for any backend, device ones included (values read back with the async read). */
export async function runWithGradsAsync(
  b: Backend,
  inputs: { values: Float32Array; shape: number[] }[],
  fn: (xs: Tensor[]) => Tensor,
  probe?: Float32Array,
) {
  const { y, xs, p } = withBackend(b, () => forwardBackward(b, inputs, fn, probe));
  return {
    y: await y.data(),
    grads: await Promise.all(xs.map((x) => (x.grad ? x.grad.data() : new Float32Array(x.size)))),
    probe: p,
  };
}

function forwardBackward(
  b: Backend,
  inputs: { values: Float32Array; shape: number[] }[],
  fn: (xs: Tensor[]) => Tensor,
  probe?: Float32Array,
) {
  const xs = inputs.map((i) => new Tensor(b.upload(i.values), i.shape, true));
  const y = fn(xs);
  const p = probe ?? randValues(y.size);
  y.backward(new Tensor(b.upload(p), y.shape));
  return { y, xs, p };
}

/** A model's weights by name, read synchronously (CPU backends; weightsOf is the async read for any backend). */
export function hostWeights(model: UNet): Map<string, SafeTensor> {
  return new Map([...model.params.entries()].map(([name, p]) => [name, { shape: p.shape, data: p.dataSync() }]));
}

/** An IDX file of n 8x8 images: blobs at varying positions. */
export function writeTinyIdx(dir: string, n = 64): string {
  const b = new Uint8Array(16 + n * 64);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x803);
  dv.setUint32(4, n);
  dv.setUint32(8, 8);
  dv.setUint32(12, 8);
  for (let i = 0; i < n; i++) {
    const cy = 2 + (i % 4),
      cx = 2 + ((i >> 2) % 4);
    for (let y = 0; y < 8; y++)
      for (let x = 0; x < 8; x++) b[16 + i * 64 + y * 8 + x] = (y - cy) ** 2 + (x - cx) ** 2 <= 3 ? 255 : 0;
  }
  const f = join(dir, 'train-images-idx3-ubyte');
  writeFileSync(f, b);
  return f;
}

/** A CLI run refused with one line matching re on stderr, and no stack trace. */
export function assertRefused(r: { status: number | null; stderr: string }, re: RegExp): void {
  assert.notEqual(r.status, 0, 'expected a refusal');
  assert.match(r.stderr, re);
  assert.doesNotMatch(r.stderr, /\n\s+at .*:\d+:\d+/, `a stack trace:\n${r.stderr}`);
}
