// Inpainting (RePaint) against diffusers' RePaintScheduler (v0.27.2, run by scripts/diffusers_oracle.py on the shipped
// MNIST model with the same x_T and the same noise in the same order): the timestep layout, and the whole run at eta 0
// and 1. The known pixels come back exactly; batches split anywhere give the same images.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ops from '../src/engine/ops.js';
import { noGrad } from '../src/engine/tensor.js';
import { GaussianDiffusion } from '../src/diffusion/gaussian.js';
import { inpaint, repaintTimesteps } from '../src/diffusion/repaint.js';
import { loadModel } from '../src/io/checkpoint.js';
import { ROOT, maxAbsDiff, native, reference, withBackendAsync } from './helpers.js';

const G = JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', 'diffusers.json'), 'utf8')).repaint as {
  shape: number[];
  steps: number;
  jump_length: number;
  jump_n_sample: number;
  timesteps: number[];
  runs: Record<string, { x0: number[]; draws: number }>;
};
const det = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(1.7 * i + 0.3 + k));

/** The oracle's known image (clipped), and its mask: the bottom half generated. */
function inputs(shape: number[]) {
  const n = shape.reduce((a, b) => a * b, 1);
  const known = ops.fromArray(
    Float32Array.from(det(n, 3), (v) => Math.max(-1, Math.min(1, v))),
    shape,
  );
  const m = new Float32Array(28 * 28).map((_, i) => (Math.floor(i / 28) < 14 ? 1 : 0));
  return { known, mask: ops.fromArray(m, [1, 1, 28, 28]), n };
}

async function run(o: { eta: number; noise?: 'oracle'; batch?: [number, number] }) {
  const { model, folder } = loadModel(join(ROOT, 'models', 'mnist'));
  const d = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
  const { known, mask, n } = inputs(G.shape);
  let drawn = 0;
  const noiseFor = o.noise ? (k: number) => ops.fromArray(det(n, k < 0 ? 9 : 10 + drawn++), G.shape) : undefined;
  const opts = { steps: G.steps, jumpLength: G.jump_length, jumpNSample: G.jump_n_sample, eta: o.eta, seed: 3 };
  const it = inpaint(d, (x, t) => model.forward(x, t), known, mask, opts, noiseFor);
  let r = noGrad(() => it.next());
  while (!r.done) r = noGrad(() => it.next());
  return { x: await r.value.data(), known: await known.data(), drawn };
}

describe('inpainting (RePaint) = diffusers RePaintScheduler', () => {
  const be = native ?? reference;

  it('the timestep layout with jumps equals set_timesteps', () => {
    assert.deepEqual(repaintTimesteps(1000, G.steps, G.jump_length, G.jump_n_sample), G.timesteps);
    // without resampling it is the plain strided chain
    assert.deepEqual(repaintTimesteps(1000, 4, 10, 1), [750, 500, 250, 0]);
    assert.throws(() => repaintTimesteps(1000, 10, 0, 2), /jump length must be an integer >= 1/);
  });

  for (const eta of [0, 1])
    it(`the whole run at eta ${eta}, from the same x_T and noise, within 2e-4 (${be.name} backend)`, async () =>
      withBackendAsync(be, async () => {
        const g = G.runs[String(eta.toFixed(1))];
        const ours = await run({ eta, noise: 'oracle' });
        assert.equal(ours.drawn, g.draws, 'noise draws');
        const err = maxAbsDiff(ours.x, g.x0);
        assert.ok(err < 2e-4, `max |ours - diffusers| = ${err}`);
      }));

  it('the known pixels come back exactly', async () =>
    withBackendAsync(be, async () => {
      const { x, known } = await run({ eta: 1 });
      for (let s = 0; s < 2; s++)
        for (let i = 0; i < 14 * 28; i++) assert.equal(x[s * 784 + i], known[s * 784 + i], `sample ${s} pixel ${i}`);
      assert.ok(x.every(Number.isFinite));
    }));
});
