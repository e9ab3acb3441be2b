// WebGPU memory is released by construction: with the garbage collector's recycling switched off (a
// FinalizationRegistry that never calls back, in a child process), training steps (trainStep, the tiny U-Net) and
// 1,000 sampler steps (DDIM, and DPM-Solver++ 3M, which carries a history) hold a fixed set of GPU buffers: the
// engine's scopes give every step's buffers back to the pool when the step ends.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createNodeWebGPU } from '../src/backends/select.js';
import { ROOT } from './helpers.js';

let why = '';
try {
  await createNodeWebGPU();
} catch (e) {
  why = (e as Error).message;
  if (process.env.DDPM_REQUIRE_WEBGPU === '1') throw new Error(`DDPM_REQUIRE_WEBGPU=1 but ${why}`);
}
const SKIP = why ? `no WebGPU device: ${why}` : false;

const dist = (p: string) => JSON.stringify(join(ROOT, 'dist', 'src', p));
// prints the GPU buffer handles live after the 2nd and the last training step, and after the 10th and the last
// sampler step of each sampler
const SCRIPT = `
  globalThis.FinalizationRegistry = class { register() {} unregister() { return true; } };
  const { createNodeWebGPU } = await import(${dist('backends/select.js')});
  const { setBackend, noGrad } = await import(${dist('engine/tensor.js')});
  const ops = await import(${dist('engine/ops.js')});
  const { GaussianDiffusion } = await import(${dist('diffusion/gaussian.js')});
  const { sample } = await import(${dist('diffusion/samplers.js')});
  const { trainOptionsFrom } = await import(${dist('training/options.js')});
  const { createTrainState, trainStep } = await import(${dist('training/core.js')});
  const b = await createNodeWebGPU();
  setBackend(b);
  const [trainSteps, sampleSteps] = process.argv.slice(1).map(Number);
  const out = {};
  // training: the tiny U-Net (T = 100) on 16 fixed 8x8 images, batch 2
  const o = trainOptionsFrom({ out: '', preset: 'tiny', steps: trainSteps, batch: 2, lr: 1e-3, warmup: 0, ema: 0.99 });
  o.diffusion = { ...o.diffusion, timesteps: 100 };
  const st = createTrainState(o);
  const pixels = Uint8Array.from({ length: 16 * 64 }, (_, i) => (i * 37) % 256);
  const data = { name: 'fixed', count: 16, channels: 1, height: 8, width: 8, pixels };
  const order = new Map();
  out.train = [];
  for (let s = 1; s <= trainSteps; s++) {
    await trainStep(o, new GaussianDiffusion(o.diffusion), st, data, order);
    if (s === 2 || s === trainSteps) out.train.push(b.stats().live);
  }
  // sampling (T = 1000) with a formula network, read back at the end only
  const d = new GaussianDiffusion({ ...o.diffusion, timesteps: 1000 });
  for (const [sampler, steps] of [['ddim', sampleSteps], ['dpm3m', sampleSteps / 2]]) {
    const it = sample(d, (x) => ops.mul(x, 0.5), [2, 1, 8, 8], { sampler, steps, seed: 0 });
    out[sampler] = [];
    let r;
    while (!(r = noGrad(() => it.next())).done)
      if (r.value.step === 10 || r.value.step === steps) out[sampler].push(b.stats().live);
    await r.value.data();
  }
  console.log(JSON.stringify(out));
`;

describe('webgpu memory', { skip: SKIP }, () => {
  it('training steps and 1,000 sampler steps hold a fixed set of buffers without the collector', () => {
    const t0 = Date.now();
    // training on SwiftShader takes seconds a step: 4 steps (a leak of one buffer a step would show)
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', SCRIPT, '4', '1000'], {
      encoding: 'utf8',
      timeout: 600_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\\n').pop()!);
    console.log(`${JSON.stringify(out)} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    assert.deepEqual(Object.keys(out), ['train', 'ddim', 'dpm3m']);
    for (const [loop, [early, last]] of Object.entries(out) as [string, number[]][])
      assert.ok(last <= early, `${loop}: ${early} live buffers early on, ${last} at the last step`);
  });
});
