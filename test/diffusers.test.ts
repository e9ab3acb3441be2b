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
import { loadWeights } from '../src/io/diffusers.js';
import { parseSafetensors } from '../src/io/safetensors.js';
import { PRESETS, UNet, withDefaults } from '../src/model/unet.js';
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

describe('class conditioning = diffusers UNet2DModel (num_class_embeds; class_embed_type null and "timestep")', () => {
  const cond = (
    G as unknown as { cond: Record<string, { shape: number[]; t: number[]; labels: number[]; eps: number[] }> }
  ).cond;
  for (const name of ['unet-cond-embedding', 'unet-cond-timestep'])
    it(
      `${name}: a model written by diffusers' save_pretrained loads, and its eps for labels [1, 3] = diffusers' ` +
        `within 1e-5`,
      async () =>
        withBackendAsync(reference, async () => {
          const dir = join(ROOT, 'test', 'goldens', name);
          const cfg = withDefaults(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
          const model = new UNet(cfg);
          const file = join(dir, 'diffusion_pytorch_model.safetensors');
          loadWeights(model, parseSafetensors(new Uint8Array(readFileSync(file)), file).tensors, file);
          const g = cond[name];
          const x = ops.fromArray(
            det(
              g.shape.reduce((a, b) => a * b, 1),
              1,
            ),
            g.shape,
          );
          const eps = await noGrad(() =>
            model.forward(x, Int32Array.from(g.t), { classLabels: Int32Array.from(g.labels) }),
          ).data();
          const err = maxAbsDiff(eps, g.eps);
          assert.ok(err < 1e-5, `max |eps - diffusers eps| = ${err}`);
          // the labels matter, and a conditional model refuses to run without them
          const other = await noGrad(() =>
            model.forward(x, Int32Array.from(g.t), { classLabels: Int32Array.from([0, 0]) }),
          ).data();
          assert.ok(maxAbsDiff(other, g.eps) > 1e-3);
          assert.throws(
            () => model.forward(x, Int32Array.from(g.t)),
            /this model is class-conditional; give 2 class labels/,
          );
        }),
    );

  it('an unconditional model refuses class labels; a label outside the embedding is refused by name', () =>
    withBackendAsync(reference, async () => {
      const m = new UNet(PRESETS.tiny()).init(0);
      const x = ops.zeros([1, 1, 8, 8]);
      assert.throws(
        () => m.forward(x, [1], { classLabels: [0] }),
        /class labels given to a model without class conditioning/,
      );
      const c = new UNet({ ...PRESETS.tiny(), num_class_embeds: 3 }).init(0);
      assert.throws(() => c.forward(x, [1], { classLabels: [3] }), /class label 3 is outside \[0, 2\]/);
      // the class embedding starts at zero: with the unconditional model's weights, the conditional one computes
      // the same function whatever the label (as `train --init` starts a conditional model from one)
      for (const [name, p] of m.params) c.params.get(name)!.write(await p.data());
      const xr = ops.fromArray(
        Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)),
        [1, 1, 8, 8],
      );
      const outC = await noGrad(() => c.forward(xr, [5], { classLabels: [2] })).data();
      assert.ok(maxAbsDiff(outC, await noGrad(() => m.forward(xr, [5])).data()) === 0);
      const a = await noGrad(() => m.forward(x, [5])).data(),
        b = await noGrad(() => c.forward(x, [5], { classLabels: [2] })).data();
      assert.ok(maxAbsDiff(a, b) < 1e-6);
    }));
});
