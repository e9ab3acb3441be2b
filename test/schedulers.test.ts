// Every sampler against the diffusers scheduler it stands for, step for step: the goldens come from running
// diffusers v0.27.2 (scripts/diffusers_schedulers.py) on a model both sides compute, with the same noise. Each case
// runs at 10, 20 and 50 steps; the plan's timesteps equal the scheduler's and every step's x_t is within 1e-5.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ops from '../src/engine/ops.js';
import { type Tensor, noGrad } from '../src/engine/tensor.js';
import { GaussianDiffusion, PAPER_DIFFUSION, type Prediction, type VarianceType } from '../src/diffusion/gaussian.js';
import { type SamplerName, type Spacing, sample, samplerPlan } from '../src/diffusion/samplers.js';
import { diffusionFromScheduler, schedulerConfig } from '../src/io/diffusers.js';
import { ROOT } from './helpers.js';

interface Case {
  name: string;
  steps: number;
  ours: {
    sampler: SamplerName;
    spacing: Spacing;
    variance?: VarianceType;
    prediction?: Prediction;
    clip?: boolean;
    eta?: number;
    stepsOffset?: number;
    setAlphaToOne?: boolean;
  };
  timesteps: number[];
  x: number[][];
}
const G = JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', 'schedulers.json'), 'utf8')) as {
  diffusers: string;
  shape: number[];
  cases: Case[];
};

/** scale * sin(1.7 i + 0.3 + k) in float32, as the oracle script computes it. */
const det = (shape: number[], k: number) =>
  ops.fromArray(
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(1.7 * i + 0.3 + k)),
    shape,
  );

describe(`the samplers equal diffusers ${G.diffusers}'s schedulers step for step`, () => {
  const shape = G.shape;
  const c = det(shape, 7);
  // out(x, t) = a(t) x + b(t) c (eps, v or x0 by the case)
  const model = (x: Tensor, t: ArrayLike<number>) =>
    ops.add(ops.mul(x, 0.6 + 0.3 * Math.cos(t[0] / 300)), ops.mul(c, 0.25 * Math.sin(t[0] / 170 + 0.4)));
  for (const g of G.cases) {
    const o = g.ours;
    it(`${g.name}, ${g.steps} steps (ddpm: --sampler ${o.sampler} --timestep-spacing ${o.spacing})`, () => {
      const d = new GaussianDiffusion({
        ...PAPER_DIFFUSION,
        variance: o.variance ?? 'fixedsmall',
        prediction: o.prediction ?? 'eps',
        clipSample: false,
      });
      const opts = {
        sampler: o.sampler,
        steps: g.steps,
        timestepSpacing: o.spacing,
        stepsOffset: o.stepsOffset,
        setAlphaToOne: o.setAlphaToOne,
        eta: o.eta,
        clip: o.clip ?? false,
        seed: 0,
        start: { step: 0, x: det(shape, 50) },
        noise: (step: number, _sub: number, s: number[]) => det(s, 100 + step),
      };
      const { plan } = samplerPlan(d, opts);
      assert.equal(plan.length, g.timesteps.length, 'number of steps');
      plan.forEach((p, k) =>
        assert.ok(Math.abs(p.t - g.timesteps[k]) < 1e-3, `step ${k}: timestep ${p.t}, diffusers ${g.timesteps[k]}`),
      );
      const it = sample(d, model, shape, opts);
      let worst = 0;
      for (let k = 0; ; k++) {
        const r = noGrad(() => it.next());
        if (r.done) break;
        const x = r.value.x.dataSync();
        g.x[k].forEach((v, i) => {
          const e = Math.abs(x[i] - v) / Math.max(1, Math.abs(v));
          worst = Math.max(worst, e);
          assert.ok(e < 1e-5, `step ${k + 1} of ${g.steps}, value ${i}: ${x[i]} vs diffusers ${v}`);
        });
      }
      assert.ok(worst >= 0);
    });
  }
});

describe("a folder's scheduler_config.json fields reach the samplers, or are refused by name", () => {
  const read = (extra: Record<string, unknown>) =>
    diffusionFromScheduler({ ...schedulerConfig(PAPER_DIFFUSION), ...extra }, 'scheduler_config.json');
  it('steps_offset, set_alpha_to_one and timestep_spacing are followed (as diffusers from_config carries them)', () => {
    const { config } = read({ steps_offset: 1, set_alpha_to_one: false, timestep_spacing: 'trailing' });
    const d = new GaussianDiffusion(config);
    const ddim = samplerPlan(d, { sampler: 'ddim', steps: 10, timestepSpacing: 'leading' }).plan;
    assert.deepEqual(
      ddim.map((p) => p.t),
      [901, 801, 701, 601, 501, 401, 301, 201, 101, 1],
    );
    assert.equal(ddim[9].abPrev, d.tables.alphasCumprod[0], 'set_alpha_to_one false: the last step ends at abar_0');
    // the DDPM lineage keeps the paper's respacing unless told; the diffusers-style samplers take the folder's layout
    assert.equal(samplerPlan(d, { sampler: 'ddim', steps: 10 }).spacing, 'respaced');
    assert.equal(samplerPlan(d, { sampler: 'dpm2m', steps: 10 }).spacing, 'trailing');
    // the written folder keeps them
    assert.deepEqual(read({}).config.scheduler, undefined);
    const again = diffusionFromScheduler(schedulerConfig(config), 'scheduler_config.json').config;
    assert.deepEqual(again.scheduler, { timestepSpacing: 'trailing', stepsOffset: 1, setAlphaToOne: false });
  });
  it('values it cannot follow are refused, naming the field', () => {
    assert.throws(() => read({ steps_offset: -1 }), /scheduler_config.json: field "steps_offset" must be a whole/);
    assert.throws(() => read({ timestep_spacing: 'karras' }), /field "timestep_spacing" "karras" is not one of/);
    assert.throws(() => read({ set_alpha_to_one: 'yes' }), /field "set_alpha_to_one" must be true or false/);
    assert.throws(() => read({ clip_sample_range: 2 }), /field "clip_sample_range" is 2; only 1 is implemented/);
  });
});
