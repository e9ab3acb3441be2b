// Losses for every parametrisation and variance type; gradients reach the right parts of the model output.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../src/engine/tensor.js';
import * as T from '../src/engine/ops.js';
import { makeDiffusion } from '../src/diffusion/gaussian.js';
import { betaSchedule, makeTables, scaledBetaRange } from '../src/diffusion/schedule.js';

const x0 = () => T.tensor(Array.from({ length: 2 * 1 * 4 * 4 }, (_, i) => Math.sin(i) * 0.9), [2, 1, 4, 4]);
const noise = () => T.randn([2, 1, 4, 4], { seed: 1, stream: 1 });
const t = Int32Array.from([3, 700]);

describe('training losses', () => {
  for (const prediction of ['eps', 'x0', 'v'] as const)
    it(`L_simple with ${prediction} prediction is zero for a perfect model`, () => {
      const d = makeDiffusion({ prediction });
      const target = d.target(x0(), t, noise());
      const { loss } = d.trainingLosses(() => target, x0(), t, noise());
      assert.ok(loss.storage.every((v) => Math.abs(v) < 1e-10));
    });

  it('x0 recovered from a perfect v prediction', () => {
    const d = makeDiffusion({ prediction: 'v' });
    const xt = d.qSample(x0(), t, noise());
    const back = d.predictX0FromV(xt, t, d.velocity(x0(), t, noise()));
    back.storage.forEach((v, i) => assert.ok(Math.abs(v - x0().storage[i]) < 1e-5));
  });

  it('hybrid loss with learned-range variance: the mean learns from L_simple only, the variance from L_vlb', () => {
    const d = makeDiffusion({ variance: 'learnedrange', loss: 'hybrid' });
    const out = new Tensor(T.randn([2, 2, 4, 4], { seed: 3, stream: 0 }).storage, [2, 2, 4, 4], true);
    const { loss, mse } = d.trainingLosses(() => out, x0(), t, noise());
    T.mean(loss).backward();
    const g = out.grad!.storage;
    const meanPart = [...g.subarray(0, 16), ...g.subarray(32, 48)], varPart = [...g.subarray(16, 32), ...g.subarray(48, 64)];
    assert.ok(varPart.some((v) => v !== 0), 'variance channels get a gradient');
    // the mean channels' gradient equals that of L_simple alone (stop-gradient on the mean inside L_vlb)
    const out2 = new Tensor(out.storage.slice(), out.shape, true);
    const m2 = makeDiffusion({ variance: 'learnedrange', loss: 'simple' }).trainingLosses(() => out2, x0(), t, noise());
    T.mean(m2.loss).backward();
    const g2 = out2.grad!.storage;
    [...g2.subarray(0, 16), ...g2.subarray(32, 48)].forEach((v, i) => assert.ok(Math.abs(v - meanPart[i]) < 1e-7));
    assert.ok(mse.storage.every(Number.isFinite));
  });

  it('the true bound (vlb) trains a fixed-variance model: finite loss and gradient', () => {
    const d = makeDiffusion({ loss: 'vlb' });
    const out = new Tensor(T.randn([2, 1, 4, 4], { seed: 4, stream: 0 }).storage, [2, 1, 4, 4], true);
    const { loss } = d.trainingLosses(() => out, x0(), Int32Array.from([5, 400]), noise());
    T.mean(loss).backward();
    assert.ok(loss.storage.every((v) => Number.isFinite(v) && v > 0));
    assert.ok(out.grad!.storage.some((v) => v !== 0));
  });
});

describe('schedules', () => {
  it('with the paper schedule L_T is about 1e-5 bits/dim', () => {
    const d = makeDiffusion();
    const prior = d.priorBpd(x0()).storage;
    assert.ok(prior.every((v) => v > 0 && v < 1e-4), `prior ${prior}`);
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
      assert.deepEqual(e.slice(0, 100).map((x) => x.t), Array.from({ length: 100 }, (_, i) => i));
    }
    assert.equal(evaluatedTimesteps(1000, 1).length, 1000);
    assert.equal(evaluatedTimesteps(1000, 20).length, 145);
  });
});
