// Losses in improved-diffusion's units and scale; the decoder term's gradient; gradients reach the right parts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../src/engine/tensor.js';
import * as ops from '../src/engine/ops.js';
import { ReferenceBackend } from '../src/backends/reference/index.js';
import { discretizedGaussianLogLikelihood, makeDiffusion } from '../src/diffusion/gaussian.js';
import { betaSchedule, makeTables, scaledBetaRange } from '../src/diffusion/schedule.js';
import { withBackend } from './helpers.js';

const x0 = () =>
  ops.tensor(
    Array.from({ length: 2 * 1 * 4 * 4 }, (_, i) => Math.round(Math.sin(i) * 127.5) / 127.5),
    [2, 1, 4, 4],
  );
const noise = () => ops.randn([2, 1, 4, 4], { seed: 1, stream: 1 });
const t = Int32Array.from([3, 700]);
const close = (a: number, b: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

describe('training losses', () => {
  for (const prediction of ['eps', 'x0', 'v'] as const)
    it(`L_simple with ${prediction} prediction is zero for a perfect model`, () => {
      const d = makeDiffusion({ prediction });
      const target = d.target(x0(), t, noise());
      const { loss } = d.trainingLosses(() => target, x0(), t, noise());
      assert.ok(loss.dataSync().every((v) => Math.abs(v) < 1e-10));
    });

  it('x0 recovered from a perfect v prediction', () => {
    const d = makeDiffusion({ prediction: 'v' });
    const xt = d.qSample(x0(), t, noise());
    const back = d.predictX0FromV(xt, t, d.velocity(x0(), t, noise()));
    back.dataSync().forEach((v, i) => assert.ok(Math.abs(v - x0().dataSync()[i]) < 1e-5));
  });

  it('vlb is the bound term in bits/dim times T ("rescaled KL", improved-diffusion)', () => {
    const d = makeDiffusion({ loss: 'vlb' });
    const out = ops.randn([2, 1, 4, 4], { seed: 4, stream: 0 });
    const xt = d.qSample(x0(), t, noise());
    const { loss } = d.trainingLosses(() => out, x0(), t, noise());
    // independently, in float64 from the paper's formulas: the linear betas, the posterior q(x_{t-1} | x_t, x_0)
    // (eq. 6-7), the eps-model's mean (eq. 11) with the fixedlarge variance beta_t, their Gaussian KL per dimension
    // in bits, averaged over the image and times T (t = 3 and 700: no decoder term)
    const T0 = 1000,
      betas = Array.from({ length: T0 }, (_, i) => 1e-4 + ((0.02 - 1e-4) * i) / (T0 - 1));
    const abar: number[] = [];
    for (let i = 0; i < T0; i++) abar.push((i ? abar[i - 1] : 1) * (1 - betas[i]));
    const [xs, xts, eps] = [x0().dataSync(), xt.dataSync(), out.dataSync()];
    const per = 16;
    t.forEach((tt, n) => {
      const b = betas[tt],
        ab = abar[tt],
        abPrev = abar[tt - 1];
      const c1 = (b * Math.sqrt(abPrev)) / (1 - ab),
        c2 = ((1 - abPrev) * Math.sqrt(1 - b)) / (1 - ab);
      const qVar = (b * (1 - abPrev)) / (1 - ab),
        pVar = b;
      let kl = 0;
      for (let k = n * per; k < (n + 1) * per; k++) {
        const x0hat = xts[k] / Math.sqrt(ab) - Math.sqrt(1 / ab - 1) * eps[k];
        const qMean = c1 * xs[k] + c2 * xts[k],
          pMean = c1 * x0hat + c2 * xts[k];
        kl += 0.5 * (-1 + Math.log(pVar / qVar) + qVar / pVar + (qMean - pMean) ** 2 / pVar);
      }
      close(loss.dataSync()[n], ((kl / per) * T0) / Math.LN2, 1e-4, `sample ${n} (t = ${tt})`);
    });
  });

  it('hybrid is L_simple + (T / 1000) x the bound in bits/dim, the mean gradient stopped in the bound', () => {
    const d = makeDiffusion({ variance: 'learnedrange', loss: 'hybrid', timesteps: 500, betaEnd: 0.04 });
    const out = new Tensor(ops.randn([2, 2, 4, 4], { seed: 3, stream: 0 }).dataSync().slice(), [2, 2, 4, 4], true);
    const { loss, mse } = d.trainingLosses(
      () => out,
      x0(),
      t.map((v) => v % 500),
      noise(),
    );
    const xt = d.qSample(
      x0(),
      t.map((v) => v % 500),
      noise(),
    );
    const bits = d
      .vlbTermsBpd(
        out.detach(),
        x0(),
        xt,
        t.map((v) => v % 500),
      )
      .dataSync();
    loss.dataSync().forEach((v, i) => close(v, mse.dataSync()[i] + bits[i] * 0.5, 1e-5, `sample ${i}`));
    ops.mean(loss).backward();
    const g = out.grad!.dataSync();
    const meanPart = [...g.subarray(0, 16), ...g.subarray(32, 48)],
      varPart = [...g.subarray(16, 32), ...g.subarray(48, 64)];
    assert.ok(
      varPart.some((v) => v !== 0),
      'variance channels get a gradient',
    );
    // the mean channels' gradient equals that of L_simple alone
    const out2 = new Tensor(out.dataSync().slice(), out.shape, true);
    const main = ops.sliceChannels(out2, 0, 1);
    ops.mean(d.lossSimplePerSample(main, noise())).backward();
    [...out2.grad!.dataSync().subarray(0, 16), ...out2.grad!.dataSync().subarray(32, 48)].forEach((v, i) =>
      assert.ok(Math.abs(v - meanPart[i]) < 1e-7),
    );
  });

  it('hybrid without a learned variance, and a learned variance with L_simple only, are refused', () => {
    const out = () => ops.zeros([2, 1, 4, 4]);
    assert.throws(
      () => makeDiffusion({ loss: 'hybrid' }).trainingLosses(out, x0(), t, noise()),
      /loss "hybrid" needs variance "learnedrange".*got variance "fixedlarge"/,
    );
    assert.throws(
      () => makeDiffusion({ loss: 'simple', variance: 'learnedrange' }).trainingLosses(out, x0(), t, noise()),
      /would never train the variance/,
    );
    // sampling from such a process is fine: the loss only matters for training
    assert.doesNotThrow(() =>
      makeDiffusion({ loss: 'simple', variance: 'learnedrange' }).pMeanVariance(ops.zeros([2, 2, 4, 4]), x0(), t, true),
    );
  });

  it('the true bound (vlb) trains a fixed-variance model, the decoder term L_0 included', () => {
    const d = makeDiffusion({ loss: 'vlb' });
    const out = new Tensor(ops.randn([2, 1, 4, 4], { seed: 4, stream: 0 }).dataSync().slice(), [2, 1, 4, 4], true);
    // t = 0 for both samples: the loss is the decoder term alone
    const { loss } = d.trainingLosses(() => out, x0(), Int32Array.from([0, 0]), noise());
    ops.mean(loss).backward();
    assert.ok(loss.dataSync().every((v) => Number.isFinite(v) && v > 0));
    assert.ok(
      out.grad!.dataSync().some((v) => v !== 0),
      'L_0 has a gradient',
    );
  });
});

describe('discretized decoder, eq. (13)', () => {
  const f64 = new ReferenceBackend('float64');
  it('gradient in means and log-scales equals central finite differences (float64)', () =>
    withBackend(f64, () => {
      // data on the 256 levels, with both edges present
      const xs = Float64Array.from([-1, -1 + 2 / 255, -0.2, 0, 0.5, 1 - 2 / 255, 1, 0.3]);
      const means = Float64Array.from([-0.97, -0.99, -0.25, 0.01, 0.48, 0.99, 0.95, 0.31]);
      const logs = Float64Array.from([-3, -4, -2.5, -5, -3.5, -4.5, -3, -2]);
      const mk = (v: Float64Array, grad = false) => new Tensor(v.slice() as unknown as Float32Array, [8], grad);
      const f = (m: Float64Array, l: Float64Array) =>
        ops.sum(discretizedGaussianLogLikelihood(mk(xs), mk(m), mk(l))).item();
      const M = mk(means, true),
        L = mk(logs, true);
      ops.sum(discretizedGaussianLogLikelihood(mk(xs), M, L)).backward();
      const h = 1e-6;
      for (let i = 0; i < 8; i++) {
        const mp = means.slice(),
          mm = means.slice(),
          lp = logs.slice(),
          lm = logs.slice();
        mp[i] += h;
        mm[i] -= h;
        lp[i] += h;
        lm[i] -= h;
        close(M.grad!.dataSync()[i], (f(mp, logs) - f(mm, logs)) / (2 * h), 1e-5, `d/dmean[${i}]`);
        close(L.grad!.dataSync()[i], (f(means, lp) - f(means, lm)) / (2 * h), 1e-5, `d/dlogscale[${i}]`);
      }
    }));

  it('edge levels integrate to -inf / +inf (official where(x < -0.999), where(x > 0.999))', () => {
    const x = ops.tensor([-1, 1, 0], [3]),
      m = ops.tensor([-1, 1, 0], [3]),
      l = ops.tensor([0, 0, 0], [3]);
    const ll = discretizedGaussianLogLikelihood(x, m, l).dataSync();
    // unit scale around the level: P(X < -1 + 1/255) with X ~ N(-1, 1) is about one half
    close(Math.exp(ll[0]), 0.5016, 1e-3, 'low edge');
    close(Math.exp(ll[1]), 0.5016, 1e-3, 'high edge');
    close(Math.exp(ll[2]), (2 / 255) * 0.3989, 2e-3, 'interior level');
  });
});

describe('schedules', () => {
  it('with the paper schedule L_T is about 1e-5 bits/dim', () => {
    const d = makeDiffusion();
    const prior = d.priorBpd(x0()).dataSync();
    assert.ok(
      prior.every((v) => v > 0 && v < 1e-4),
      `prior ${prior}`,
    );
  });
  it('T != 1000: the linear range scales by 1000/T, keeping alphabar_T about the same', () => {
    const r = scaledBetaRange(250);
    const a = makeTables(betaSchedule('linear', 250, r.betaStart, r.betaEnd)).alphasCumprod[249];
    const b = makeTables(betaSchedule('linear', 1000)).alphasCumprod[999];
    assert.ok(Math.abs(Math.log(a) - Math.log(b)) / Math.abs(Math.log(b)) < 0.05, `${a} vs ${b}`);
  });
  it('bad schedules are rejected with the field named', () => {
    assert.throws(() => betaSchedule('linear', 0), /number of timesteps must be a positive integer/);
    assert.throws(() => makeTables(Float64Array.from([0.1, 1.5])), /beta\[1\] = 1.5 is outside \(0, 1\]/);
  });
});

describe('bits/dim estimator', () => {
  it('evaluates every t below 100 and weights the strided rest so that the weights sum to T', async () => {
    const { evaluatedTimesteps } = await import('../src/eval/bpd.js');
    for (const k of [1, 7, 20]) {
      const e = evaluatedTimesteps(1000, k);
      assert.ok(Math.abs(e.reduce((a, b) => a + b.weight, 0) - 1000) < 1e-9);
      assert.deepEqual(
        e.slice(0, 100).map((x) => x.t),
        Array.from({ length: 100 }, (_, i) => i),
      );
    }
    assert.equal(evaluatedTimesteps(1000, 1).length, 1000);
    assert.equal(evaluatedTimesteps(1000, 20).length, 145);
  });
});
