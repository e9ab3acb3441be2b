// The official code's conventions, against goldens written from their formulas by scripts/make_goldens.py:
// respacing (improved-diffusion space_timesteps, diffusers DDIM timestep_spacing), learned-range and v-prediction
// reverse steps, bound terms with and without clipping, and the training losses' units and scale.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, noGrad } from '../src/engine/tensor.js';
import * as ops from '../src/engine/ops.js';
import {
  GaussianDiffusion,
  PAPER_DIFFUSION,
  type Prediction,
  type Timesteps,
  type VarianceType,
} from '../src/diffusion/gaussian.js';
import { spaceTimesteps } from '../src/diffusion/schedule.js';
import { sample, samplerPlan, type SamplerName, type SamplerState, type Spacing } from '../src/diffusion/samplers.js';
import { ROOT, assertClose, native, reference, withBackend } from './helpers.js';

const G = JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', 'fidelity.json'), 'utf8'));

describe('respacing as improved-diffusion and diffusers lay it out', () => {
  for (const spec of Object.keys(G.respacing))
    it(`space_timesteps(1000, "${spec}")`, () => assert.deepEqual(spaceTimesteps(1000, spec), G.respacing[spec]));

  for (const key of Object.keys(G.ddim_spacing)) {
    const [spacing, n] = key.split('_');
    it(`diffusers DDIM ${spacing} spacing, ${n} steps, with the prev timestep its step() uses`, () => {
      const d = new GaussianDiffusion(PAPER_DIFFUSION);
      const { plan } = samplerPlan(d, { sampler: 'ddim', steps: Number(n), timestepSpacing: spacing as Spacing });
      assert.deepEqual(
        plan.map((p) => p.t),
        G.ddim_spacing[key].t,
      );
      assert.deepEqual(
        plan.map((p) => p.prev),
        G.ddim_spacing[key].prev,
      );
    });
  }

  it('bad respacings are refused with the reason', () => {
    assert.throws(
      () => spaceTimesteps(1000, 'ddim999'),
      /cannot create exactly 999 steps out of 1000 with an integer stride/,
    );
    assert.throws(() => spaceTimesteps(10, '3,9'), /cannot divide a section of 5 steps into 9/);
    assert.throws(() => spaceTimesteps(1000, '5,'), /expected a step count/);
    const d = new GaussianDiffusion(PAPER_DIFFUSION);
    assert.throws(
      () => samplerPlan(d, { sampler: 'ddim', steps: 50, timestepSpacing: 'karras' }),
      /the "karras" spacing is for the ODE solvers/,
    );
    assert.throws(
      () => samplerPlan(d, { sampler: 'ddim', steps: '10,15', timestepSpacing: 'leading' }),
      /spacing "leading" needs a step count/,
    );
  });

  it('the sampler runs exactly the planned timesteps, DDIM moving to the planned prev', () => {
    const d = new GaussianDiffusion(PAPER_DIFFUSION);
    const { plan } = samplerPlan(d, { sampler: 'ddim', steps: '10,15,20' });
    assert.deepEqual(plan.map((p) => p.t).reverse(), G.respacing['10,15,20']);
    assert.deepEqual(
      plan.slice(0, -1).map((p) => p.prev),
      plan.slice(1).map((p) => p.t),
    );
    assert.equal(plan[plan.length - 1].prev, -1);
  });
});

describe('bound terms, learned-range and v-prediction steps (numpy goldens)', () => {
  const V = G.vlb;
  const shape = [2, 1, 3, 3];
  for (const be of [reference, ...(native ? [native] : [])])
    for (const key of Object.keys(V.cases)) {
      const [pred, variance, clip, tName] = key.split('_');
      const t = Number(tName.slice(1));
      it(`${key} (${be.name})`, () =>
        withBackend(be, () => {
          const d = new GaussianDiffusion({
            ...PAPER_DIFFUSION,
            prediction: pred as Prediction,
            variance: variance as VarianceType,
            loss: variance === 'learnedrange' ? 'hybrid' : 'simple',
          });
          const x0 = new Tensor(Float32Array.from(V.x0), shape),
            noise = new Tensor(Float32Array.from(V.noise), shape);
          const main = new Tensor(Float32Array.from(V.out_main), shape);
          const out =
            variance === 'learnedrange' ? ops.concat([main, new Tensor(Float32Array.from(V.out_var), shape)]) : main;
          const tt = new Int32Array(2).fill(t);
          const xt = d.qSample(x0, tt, noise);
          const g = V.cases[key];
          const p = d.pMeanVariance(out, xt, tt, clip === '1');
          assertClose(p.predX0.dataSync(), g.x0_hat, 1e-4, 1e-4, 'x0 estimate');
          assertClose(p.mean.dataSync(), g.mean, 1e-4, 1e-4, 'reverse mean');
          assertClose(
            ops.mul(p.logVariance, ops.full(shape, 1)).dataSync(),
            g.logvar,
            1e-4,
            1e-4,
            'reverse log-variance',
          );
          assertClose(
            d.vlbTermsBpd(out, x0, xt, tt, clip === '1').dataSync(),
            g.bits,
            1e-4,
            2e-4,
            'bound term (bits/dim)',
          );
        }));
    }

  for (const t of [0, 300])
    it(`training losses at t=${t}: hybrid = mse + bits T/1000, vlb = bits T`, () => {
      const x0 = new Tensor(Float32Array.from(V.x0), shape),
        noise = new Tensor(Float32Array.from(V.noise), shape);
      const main = new Tensor(Float32Array.from(V.out_main), shape);
      const tt = new Int32Array(2).fill(t);
      const hybrid = new GaussianDiffusion({ ...PAPER_DIFFUSION, variance: 'learnedrange', loss: 'hybrid' });
      const h = hybrid.trainingLosses(
        () => ops.concat([main, new Tensor(Float32Array.from(V.out_var), shape)]),
        x0,
        tt,
        noise,
      );
      assertClose(h.mse.dataSync(), V.losses[`t${t}`].mse, 1e-5, 1e-5, 'mse');
      assertClose(h.loss.dataSync(), V.losses[`t${t}`].hybrid, 1e-4, 2e-4, 'hybrid');
      const vlb = new GaussianDiffusion({ ...PAPER_DIFFUSION, loss: 'vlb' }).trainingLosses(() => main, x0, tt, noise);
      assertClose(vlb.loss.dataSync(), V.losses[`t${t}`].vlb_fixedlarge, 1e-3, 2e-4, 'vlb');
    });
});

describe('ODE samplers on the exact eps-model of N(0, s2) data (diffusers equality: test/schedulers.test.ts)', () => {
  const S = G.samplers;
  const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, clipSample: false });
  // the exact eps-model of N(0, s2) data
  const model = (x: Tensor, t: Timesteps) =>
    ops.mul(
      x,
      ops.gatherTimesteps(
        Float64Array.from(d.tables.alphasCumprod, (ab) => Math.sqrt(1 - ab) / (ab * S.s2 + 1 - ab)),
        t as Int32Array,
      ),
    );
  const shape = [2, 1, 3, 3];
  // the probability-flow ODE's own solution at sigma = 0 from x_T at t = 999
  const exact = (S.xT as number[]).map(
    (v) => (v * Math.sqrt(S.s2)) / Math.sqrt(d.tables.alphasCumprod[999] * S.s2 + 1 - d.tables.alphasCumprod[999]),
  );
  const err = (x: Float32Array) => Math.max(...Array.from(x, (v, i) => Math.abs(v - exact[i])));
  const run = async (sampler: SamplerName, steps: number, spacing?: Spacing, resumeAt?: number) => {
    const opts = { sampler, seed: 0, steps, timestepSpacing: spacing };
    const first = { sampler, done: 0, total: steps, shape, seed: 0, sampleStart: 0, x: Float32Array.from(S.xT) };
    const it = sample(d, model, shape, opts, first);
    let r = noGrad(() => it.next());
    let state: SamplerState | undefined;
    while (!r.done) {
      state = await r.value.saveState();
      if (resumeAt !== undefined && state.done === resumeAt) break;
      r = noGrad(() => it.next());
    }
    if (resumeAt === undefined) return (r.value as Tensor).dataSync();
    // resume from a JSON round trip of the state (history and numbers included)
    const saved = JSON.parse(
      JSON.stringify({ ...state!, x: Array.from(state!.x), history: state!.history?.map((h) => Array.from(h)) }),
    );
    const again = sample(d, model, shape, opts, {
      ...saved,
      x: Float32Array.from(saved.x),
      history: saved.history?.map((h: number[]) => Float32Array.from(h)),
    });
    let r2 = noGrad(() => again.next());
    while (!r2.done) r2 = noGrad(() => again.next());
    return r2.value.dataSync();
  };
  for (const sampler of ['dpm2m', 'dpm3m', 'plms', 'heun', 'euler', 'ddim'] as const)
    it(`${sampler}, 10 steps: resumed mid-way from a saved state, the same to the bit`, async () => {
      assert.deepEqual(await run(sampler, 10, undefined, 4), await run(sampler, 10));
    });
  it('on the same respaced plan the higher-order samplers land closer to the ODE solution than DDIM', async () => {
    const e: Record<string, number> = {};
    for (const s of ['dpm2m', 'plms', 'heun', 'ddim'] as const) e[s] = err(await run(s, 10, 'respaced'));
    for (const s of ['dpm2m', 'plms', 'heun']) assert.ok(e[s] < e.ddim, `${s} ${e[s]} vs ddim ${e.ddim}`);
  });
  it('with 50 respaced steps the third-order DPM-Solver++ is closer than the second order and than DDIM', async () => {
    const [e3, e2, e1] = [
      err(await run('dpm3m', 50, 'respaced')),
      err(await run('dpm2m', 50, 'respaced')),
      err(await run('ddim', 50, 'respaced')),
    ];
    assert.ok(e3 < e2 && e3 < e1, `errors at 50 steps: dpm3m ${e3}, dpm2m ${e2}, ddim ${e1}`);
  });
});
