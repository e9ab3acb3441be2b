// Samplers: batch-size independence on every backend, every sampler runs, resume from a saved state.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { noGrad } from '../src/engine/tensor.js';
import { GaussianDiffusion, PAPER_DIFFUSION, type Prediction, type Timesteps } from '../src/diffusion/gaussian.js';
import { ancestralStep, ddimStep, sample, sampleAll, SAMPLERS, type SamplerState } from '../src/diffusion/samplers.js';
import { Tensor } from '../src/engine/tensor.js';
import * as ops from '../src/engine/ops.js';
import { spaceTimesteps } from '../src/diffusion/schedule.js';
import { UNet, PRESETS } from '../src/model/unet.js';
import { native, reference, withBackend } from './helpers.js';

function tinyModel() {
  const m = new UNet(PRESETS.tiny()).init(1);
  // make the near-zero output layers non-trivial so that samples depend on the network
  for (const [n, p] of m.params)
    if (n.endsWith('conv2.weight') || n.startsWith('conv_out.weight') || n.includes('to_out.0.weight'))
      p.write(Float32Array.from({ length: p.size }, (_, i) => 0.02 * Math.sin(i + 1)));
  return m;
}

describe('samples do not depend on the batch size', () => {
  for (const be of [reference, ...(native ? [native] : [])])
    it(`sample i is the same in a batch of 1 or of 4 (${be.name})`, () =>
      withBackend(be, () => {
        const m = tinyModel();
        const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 40, betaEnd: 0.5 });
        const f = (x: Parameters<typeof m.forward>[0], t: Timesteps) => m.forward(x, t);
        const big = noGrad(() => sampleAll(d, f, [4, 1, 8, 8], { sampler: 'ancestral', seed: 9 }));
        for (const i of [0, 3]) {
          const one = noGrad(() => sampleAll(d, f, [1, 1, 8, 8], { sampler: 'ancestral', seed: 9, sampleStart: i }));
          let maxDiff = 0;
          for (let j = 0; j < 64; j++)
            maxDiff = Math.max(maxDiff, Math.abs(one.dataSync()[j] - big.dataSync()[i * 64 + j]) / 2);
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
      const x = noGrad(() =>
        sampleAll(
          d,
          (xx, t) => m.forward(xx, t),
          [2, 1, 8, 8],
          { sampler: s, seed: 1, steps: 10, eta: 0.5, langevinSteps: 2 },
          (st) => steps.push(st.step),
        ),
      );
      assert.deepEqual(steps, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.ok(x.dataSync().every(Number.isFinite));
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

  it('a run saved mid-way and resumed equals an uninterrupted run', async () => {
    const m = tinyModel();
    const f = (xx: Parameters<typeof m.forward>[0], t: Timesteps) => m.forward(xx, t);
    const opts = { sampler: 'ancestral' as const, seed: 4, steps: 12 };
    const full = noGrad(() => sampleAll(d, f, [2, 1, 8, 8], opts));
    let saved: SamplerState | undefined;
    const it1 = sample(d, f, [2, 1, 8, 8], opts);
    for (let k = 0; k < 5; k++)
      // cancel after 5 steps
      saved = await (noGrad(() => it1.next()).value as { saveState: () => Promise<SamplerState> }).saveState();
    const state = JSON.parse(JSON.stringify({ ...saved!, x: Array.from(saved!.x) }));
    state.x = Float32Array.from(state.x);
    const it2 = sample(d, f, [2, 1, 8, 8], opts, state);
    let r = noGrad(() => it2.next());
    while (!r.done) r = noGrad(() => it2.next());
    assert.deepEqual(r.value.dataSync(), full.dataSync());
  });
});

/** Mean and variance of all values. */
function moments(x: Float32Array) {
  let m = 0,
    v = 0;
  for (const a of x) m += a;
  m /= x.length;
  for (const a of x) v += (a - m) ** 2;
  return { mean: m, variance: v / x.length };
}

describe('sampler correctness', () => {
  const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 100, betaEnd: 0.2, clipSample: false });
  const shape = [1, 1, 8, 8];

  it('DDIM with eta 0 maps a fixed x_T to the same x_0 whatever the noise seed (and eta > 0 does not)', () => {
    const m = tinyModel();
    const f = (xx: Tensor, t: Timesteps) => m.forward(xx, t);
    const xT = ops.randn(shape, { seed: 77, stream: 3 }).dataSync().slice();
    const run = (seed: number, eta: number) => {
      const it = sample(
        d,
        f,
        shape,
        { sampler: 'ddim', seed, steps: 10, eta },
        { sampler: 'ddim', done: 0, total: 10, shape, seed, sampleStart: 0, x: xT },
      );
      let r = noGrad(() => it.next());
      while (!r.done) r = noGrad(() => it.next());
      return r.value.dataSync();
    };
    assert.deepEqual(run(1, 0), run(2, 0));
    assert.notDeepEqual(run(1, 0.5), run(2, 0.5));
  });

  it('DDIM with eta 1 is the ancestral step with the posterior variance (fixedsmall), step by step', () => {
    const m = tinyModel();
    const f = (xx: Tensor, t: Timesteps) => m.forward(xx, t);
    const ds = new GaussianDiffusion({
      ...PAPER_DIFFUSION,
      timesteps: 100,
      betaEnd: 0.2,
      variance: 'fixedsmall',
      clipSample: false,
    });
    for (const t of [99, 50, 7, 1]) {
      const x = ops.randn([2, 1, 8, 8], { seed: 5, stream: t }),
        z = ops.randn([2, 1, 8, 8], { seed: 6, stream: t });
      const a = noGrad(() => ancestralStep(ds, f, x, new Int32Array(2).fill(t), false, z).x.dataSync());
      const b = noGrad(() => ddimStep(ds, f, x, t, t - 1, false, 1, z).x.dataSync());
      for (let i = 0; i < a.length; i++)
        assert.ok(Math.abs(a[i] - b[i]) < 1e-5, `t=${t} index ${i}: ${a[i]} vs ${b[i]}`);
    }
  });

  // Gaussian data N(0, s^2): the exact eps-model is E[eps | x_t] = sqrt(1 - abar) x_t / (abar s^2 + 1 - abar)
  const s2 = 0.09;
  const exactGaussian = (dd: GaussianDiffusion) => (x: Tensor, t: Timesteps) => {
    const c = Float64Array.from(dd.tables.alphasCumprod, (ab) => Math.sqrt(1 - ab) / (ab * s2 + 1 - ab));
    return ops.mul(x, ops.gatherTimesteps(c, t as Int32Array));
  };

  it(
    'with the exact model, ancestral (fixedsmall) and DDIM eta 1 give the same marginal variances as the linear ' +
      'recursion',
    () => {
      const ds = new GaussianDiffusion({
        ...PAPER_DIFFUSION,
        timesteps: 100,
        betaEnd: 0.2,
        variance: 'fixedsmall',
        clipSample: false,
      });
      // x_{t-1} = a_t x_t + sigma_t z with a_t = c1 (1 - sqrt(1 - abar) k_t) / sqrt(abar) + c2, k_t the exact model's
      // gain
      const tb = ds.tables;
      const expected: number[] = [];
      let v = 1;
      for (let t = 99; t >= 0; t--) {
        const ab = tb.alphasCumprod[t],
          k = Math.sqrt(1 - ab) / (ab * s2 + 1 - ab);
        const a = (tb.posteriorMeanCoef1[t] * (1 - Math.sqrt(1 - ab) * k)) / Math.sqrt(ab) + tb.posteriorMeanCoef2[t];
        v = a * a * v + (t > 0 ? Math.exp(tb.posteriorLogVarianceClipped[t]) : 0);
        expected.push(v);
      }
      for (const [sampler, seed] of [
        ['ancestral', 3],
        ['ddim', 4],
      ] as const) {
        const got: number[] = [];
        noGrad(() =>
          sampleAll(ds, exactGaussian(ds), [64, 1, 8, 8], { sampler, seed, eta: 1 }, (st) =>
            got.push(moments(st.x.dataSync()).variance),
          ),
        );
        for (const k of [9, 49, 89, 99])
          assert.ok(
            Math.abs(got[k] / expected[k] - 1) < 0.06,
            `${sampler} after ${k + 1} steps: variance ${got[k]}, expected ${expected[k]}`,
          );
      }
    },
  );

  it('with N(0, I) data the ancestral sampler with fixedlarge variance (sigma^2 = beta) recovers unit variance', () => {
    const dl = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 100, betaEnd: 0.2, clipSample: false });
    // exact eps-model for x0 ~ N(0, I): E[eps | x_t] = sqrt(1 - abar) x_t
    const model = (x: Tensor, t: Timesteps) =>
      ops.mul(
        x,
        ops.gatherTimesteps(
          Float64Array.from(dl.tables.alphasCumprod, (ab) => Math.sqrt(1 - ab)),
          t as Int32Array,
        ),
      );
    const x = noGrad(() => sampleAll(dl, model, [64, 1, 8, 8], { sampler: 'ancestral', seed: 5 })).dataSync();
    const { variance } = moments(x);
    assert.ok(Math.abs(variance - 1) < 0.06, `variance ${variance}`);
  });

  // a two-component Gaussian mixture 0.5 N(-0.5, 0.05^2) + 0.5 N(0.5, 0.05^2), its exact score at every noise level,
  // given as the output of an eps, x0 or v model (x0 = (x - sqrt(1 - a) eps) / sqrt(a), v = sqrt(a) eps - sqrt(1-a) x0)
  const mixture = (dd: GaussianDiffusion, prediction: Prediction) => (x: Tensor, t: Timesteps) => {
    const xs = x.dataSync(),
      per = xs.length / t.length,
      out = new Float32Array(xs.length);
    for (let b = 0; b < t.length; b++) {
      const ab = dd.tables.alphasCumprod[t[b]],
        v = ab * 0.0025 + 1 - ab,
        mu = 0.5 * Math.sqrt(ab);
      for (let j = b * per; j < (b + 1) * per; j++) {
        const y = xs[j],
          la = -((y - mu) ** 2) / (2 * v),
          lb = -((y + mu) ** 2) / (2 * v);
        const wa = 1 / (1 + Math.exp(lb - la));
        const score = -(wa * (y - mu) + (1 - wa) * (y + mu)) / v;
        const eps = -Math.sqrt(1 - ab) * score,
          x0 = (y - Math.sqrt(1 - ab) * eps) / Math.sqrt(ab);
        out[j] = prediction === 'eps' ? eps : prediction === 'x0' ? x0 : Math.sqrt(ab) * eps - Math.sqrt(1 - ab) * x0;
      }
    }
    return new Tensor(out, x.shape);
  };

  for (const prediction of ['eps', 'x0', 'v'] as const)
    for (const sampler of ['langevin', 'pc'] as const)
      it(`${sampler}, ${prediction} model, exact score of a 1-D Gaussian mixture: its mean, variance, modes`, () => {
        const dm = new GaussianDiffusion({ ...PAPER_DIFFUSION, prediction, clipSample: false });
        const x = noGrad(() =>
          sampleAll(dm, mixture(dm, prediction), [32, 1, 8, 8], {
            sampler,
            seed: 11,
            steps: 100,
            langevinSteps: sampler === 'langevin' ? 3 : 1,
          }),
        ).dataSync();
        const { mean, variance } = moments(x);
        const right = x.filter((v) => v > 0).length / x.length;
        // exact: mean 0, variance 0.25 + 0.0025, half of the mass on each mode
        assert.ok(Math.abs(mean) < 0.05, `mean ${mean}`);
        assert.ok(Math.abs(variance - 0.2525) < 0.03, `variance ${variance}`);
        assert.ok(Math.abs(right - 0.5) < 0.05, `mass on the right mode ${right}`);
      });
});
