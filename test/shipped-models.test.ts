// Each shipped model pinned by a fixed small sample: 2 images, DDIM in 3 steps, seed 0. On the reference backend
// (plain TypeScript, the same IEEE arithmetic on every CPU) the sample's float32 bytes must hash to the pinned
// SHA-256, so a changed loader, layer or sampler that alters the output is caught; the native backend must give the
// same images within 2e-3 (its kernels round differently). DDPM_UPDATE_GOLDENS=1 rewrites the pins after an
// intended change (say why in the commit).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../src/engine/backend.js';
import { noGrad } from '../src/engine/tensor.js';
import { GaussianDiffusion } from '../src/diffusion/gaussian.js';
import { sampleAll } from '../src/diffusion/samplers.js';
import { classDenoiser } from '../src/diffusion/guidance.js';
import { loadModel } from '../src/io/checkpoint.js';
import { NATIVE_SKIP, ROOT, maxAbsDiff, native, reference, withBackendAsync } from './helpers.js';

const PINS = join(ROOT, 'test', 'goldens', 'shipped-models.json');
const REQUEST = { n: 2, sampler: 'ddim', steps: '3', seed: 0 } as const;
const names = readdirSync(join(ROOT, 'models')).filter((f) => existsSync(join(ROOT, 'models', f, 'config.json')));

async function pinnedSample(be: Backend, name: string): Promise<Float32Array> {
  return withBackendAsync(be, async () => {
    const { model, folder } = loadModel(join(ROOT, 'models', name));
    const d = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
    const c = folder.unetConfig;
    const shape = [REQUEST.n, c.in_channels, c.sample_size, c.sample_size];
    const opts = { sampler: REQUEST.sampler, steps: REQUEST.steps, seed: REQUEST.seed };
    // a class-conditional model draws its classes in turn, guided with scale 2
    const f = classDenoiser(model, c, undefined, c.ddpm_null_class != null ? 2 : 1, REQUEST.n)?.(0, REQUEST.n);
    return noGrad(() => sampleAll(d, f ?? ((x, t) => model.forward(x, t)), shape, opts)).data();
  });
}

const sha256 = (x: Float32Array) =>
  createHash('sha256')
    .update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength))
    .digest('hex');

describe('shipped models', () => {
  const pins: Record<string, { sha256: string; first: number[] }> = existsSync(PINS)
    ? JSON.parse(readFileSync(PINS, 'utf8'))
    : {};
  const update = process.env.DDPM_UPDATE_GOLDENS === '1';

  it('every shipped model has a pin, and every pin a model', () => {
    if (update) return;
    assert.deepEqual(Object.keys(pins).sort(), [...names].sort());
  });

  for (const name of names) {
    it(
      `${name}: the reference backend's pinned sample hashes to its SHA-256; native gives the same images within ` +
        `2e-3`,
      async () => {
        const ref = await pinnedSample(reference, name);
        assert.ok(ref.every(Number.isFinite));
        if (update) {
          pins[name] = { sha256: sha256(ref), first: Array.from(ref.subarray(0, 8)) };
          writeFileSync(PINS, `${JSON.stringify(pins, null, 2)}\n`);
          return;
        }
        const pin = pins[name];
        assert.ok(pin, `${name} has no pin in ${PINS} (DDPM_UPDATE_GOLDENS=1 writes it)`);
        assert.equal(
          sha256(ref),
          pin.sha256,
          `${name}: sample changed; first values ${Array.from(ref.subarray(0, 4))}, pinned ${pin.first.slice(0, 4)}`,
        );
        if (NATIVE_SKIP) return;
        const ours = await pinnedSample(native!, name);
        const err = maxAbsDiff(ours, ref);
        assert.ok(err < 2e-3, `${name}: native differs from the reference backend by ${err}`);
      },
    );
  }
});
