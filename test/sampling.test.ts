// Samplers: batch-size independence on every backend, every sampler runs, resume from a saved state.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { noGrad } from '../src/engine/tensor.js';
import { GaussianDiffusion, PAPER_DIFFUSION } from '../src/diffusion/gaussian.js';
import { sample, sampleAll, SAMPLERS, type SamplerState } from '../src/diffusion/samplers.js';
import { spaceTimesteps } from '../src/diffusion/schedule.js';
import { UNet, PRESETS } from '../src/model/unet.js';
import { native, reference, withBackend } from './helpers.js';

function tinyModel() {
  const m = new UNet(PRESETS.tiny()).init(1);
  // make the near-zero output layers non-trivial so that samples depend on the network
  for (const [n, p] of m.params) if (n.endsWith('conv2.weight') || n.startsWith('conv_out.weight') || n.includes('to_out.0.weight')) for (let i = 0; i < p.size; i++) p.storage[i] = 0.02 * Math.sin(i + 1);
  return m;
}

describe('samples do not depend on the batch size', () => {
  for (const be of [reference, ...(native ? [native] : [])])
    it(`sample i is the same in a batch of 1 or of 4 (${be.name})`, () => withBackend(be, () => {
      const m = tinyModel();
      const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 40, betaEnd: 0.5 });
      const f = (x: Parameters<typeof m.forward>[0], t: Int32Array) => m.forward(x, t);
      const big = noGrad(() => sampleAll(d, f, [4, 1, 8, 8], { sampler: 'ancestral', seed: 9 }));
      for (const i of [0, 3]) {
        const one = noGrad(() => sampleAll(d, f, [1, 1, 8, 8], { sampler: 'ancestral', seed: 9, sampleStart: i }));
        let maxDiff = 0;
        for (let j = 0; j < 64; j++) maxDiff = Math.max(maxDiff, Math.abs(one.storage[j] - big.storage[i * 64 + j]) / 2);
        assert.ok(maxDiff <= 1e-3, `sample ${i}: max difference ${maxDiff} on [0, 1]`);
      }
    }));
});

describe('samplers', () => {
  const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 100, betaEnd: 0.2 });
  for (const s of SAMPLERS)
    it(`${s} runs, yields every step and returns finite images`, () => {
      const m = tinyModel();
      const steps: number[] = [];
      const x = noGrad(() => sampleAll(d, (xx, t) => m.forward(xx, t), [2, 1, 8, 8], { sampler: s, seed: 1, steps: 10, eta: 0.5, langevinSteps: 2 }, (st) => steps.push(st.step)));
      assert.deepEqual(steps, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.ok(x.storage.every(Number.isFinite));
    });

  it('respacing keeps the first and last timestep and matches alphabar', () => {
    const use = spaceTimesteps(1000, 50);
    assert.equal(use.length, 50);
    assert.equal(use[0], 0);
    assert.equal(use[49], 999);
    const r = new GaussianDiffusion(PAPER_DIFFUSION).respaced(use);
    const full = new GaussianDiffusion(PAPER_DIFFUSION);
    use.forEach((t, i) => assert.ok(Math.abs(r.tables.alphasCumprod[i] - full.tables.alphasCumprod[t]) < 1e-12));
  });

  it('a run saved mid-way and resumed equals an uninterrupted run', () => {
    const m = tinyModel();
    const f = (xx: Parameters<typeof m.forward>[0], t: Int32Array) => m.forward(xx, t);
    const opts = { sampler: 'ancestral' as const, seed: 4, steps: 12 };
    const full = noGrad(() => sampleAll(d, f, [2, 1, 8, 8], opts));
    let saved: SamplerState | undefined;
    const it1 = sample(d, f, [2, 1, 8, 8], opts);
    for (let k = 0; k < 5; k++) saved = (noGrad(() => it1.next()).value as { state: SamplerState }).state; // cancel after 5 steps
    const state = JSON.parse(JSON.stringify({ ...saved!, x: Array.from(saved!.x) }));
    state.x = Float32Array.from(state.x);
    const it2 = sample(d, f, [2, 1, 8, 8], opts, state);
    let r = noGrad(() => it2.next());
    while (!r.done) r = noGrad(() => it2.next());
    assert.deepEqual(r.value.storage, full.storage);
  });

});
