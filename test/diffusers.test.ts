// The shipped folders, written by `ddpm convert`, against real diffusers (v0.27.2, scripts/diffusers_oracle.py):
// UNet2DModel.from_pretrained loads them and its eps equals ours within 1e-4; DDIMScheduler (its defaults: leading
// timesteps, set_alpha_to_one, the folder's clip_sample) in 10 steps from the same x_T ends where our ddim sampler with
// --timestep-spacing leading ends.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ops from '../src/engine/ops.js';
import { noGrad } from '../src/engine/tensor.js';
import { GaussianDiffusion } from '../src/diffusion/gaussian.js';
import { sample } from '../src/diffusion/samplers.js';
import { loadModel } from '../src/io/checkpoint.js';
import { ROOT, maxAbsDiff, native, reference, withBackendAsync } from './helpers.js';

interface Golden {
  shape: number[];
  t: number[];
  eps: number[];
  ddim10: { timesteps: number[]; x0: number[] };
}
const G = JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', 'diffusers.json'), 'utf8')) as Record<string, Golden>;

/** scale * sin(1.7 i + 0.3 + k) in float32, as the oracle script computes it. */
const det = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(1.7 * i + 0.3 + k));

describe(`diffusers ${G.diffusers} (real code) reads ddpm's folders`, () => {
  const be = native ?? reference;
  for (const name of ['mnist', 'cifar10']) {
    const g = G[name];
    const n = g.shape.reduce((a, b) => a * b, 1);
    it(`${name}: UNet2DModel's eps = ours within 1e-4 (${be.name} backend)`, async () =>
      withBackendAsync(be, async () => {
        const { model } = loadModel(join(ROOT, 'models', name));
        const eps = await noGrad(() => model.forward(ops.fromArray(det(n, 1), g.shape), Int32Array.from(g.t))).data();
        const err = maxAbsDiff(eps, g.eps);
        assert.ok(err < 1e-4, `max |eps - diffusers eps| = ${err}`);
      }));

    it(`${name}: DDIMScheduler in 10 steps = our ddim with leading spacing, from the same x_T`, async () =>
      withBackendAsync(be, async () => {
        const { model, folder } = loadModel(join(ROOT, 'models', name));
        const d = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
        const opts = { sampler: 'ddim' as const, steps: 10, timestepSpacing: 'leading' as const, seed: 0 };
        // start from the oracle's x_T: a saved state at step 0
        const start = {
          sampler: 'ddim' as const,
          done: 0,
          total: 10,
          shape: g.shape,
          seed: 0,
          sampleStart: 0,
          x: det(n, 2),
        };
        const it = sample(d, (x, t) => model.forward(x, t), g.shape, opts, start);
        const ts: number[] = [];
        let r = noGrad(() => it.next());
        while (!r.done) {
          ts.push(r.value.t);
          r = noGrad(() => it.next());
        }
        assert.deepEqual(ts, g.ddim10.timesteps);
        const err = maxAbsDiff(await r.value.data(), g.ddim10.x0);
        assert.ok(err < 2e-4, `max |x0 - diffusers x0| = ${err}`);
      }));
  }
});
