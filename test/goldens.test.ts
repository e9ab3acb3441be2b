// The reference backend (and the model and diffusion math on the current backend) against PyTorch / numpy goldens
// written by scripts/make_goldens.py.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ops from '../src/engine/ops.js';
import { Tensor } from '../src/engine/tensor.js';
import { Adam } from '../src/engine/optim.js';
import { GaussianDiffusion, PAPER_DIFFUSION, discretizedGaussianLogLikelihood } from '../src/diffusion/gaussian.js';
import { ancestralStep, ddimStep } from '../src/diffusion/samplers.js';
import { betaSchedule, makeTables } from '../src/diffusion/schedule.js';
import { UNet, PRESETS } from '../src/model/unet.js';
import { ROOT, assertClose, native, reference, withBackend } from './helpers.js';

// biome-ignore lint/suspicious/noExplicitAny: golden JSON files, read field by field in the tests
const load = (f: string) => JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', f), 'utf8')) as any;
const L = load('layers.json'),
  D = load('diffusion.json'),
  U = load('unet_tiny.json');

/** scale * sin(1.7 i + 0.3 + k): the deterministic inputs of the golden script. */
export function det(shape: number[], k = 0, scale = 1, requiresGrad = false): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return new Tensor(
    Float32Array.from({ length: n }, (_, i) => scale * Math.sin(1.7 * i + 0.3 + k)),
    shape,
    requiresGrad,
  );
}

const backends = [reference, ...(native ? [native] : [])];

for (const be of backends)
  describe(`layers match PyTorch (${be.name})`, () => {
    it('conv2d stride 2, asymmetric padding: forward and gradients', () =>
      withBackend(be, () => {
        const x = det([2, 3, 7, 6], 0, 1, true),
          w = det([4, 3, 3, 3], 1, 0.3, true),
          b = det([4], 2, 1, true);
        const y = ops.conv2d(x, w, b, { stride: 2, padding: [0, 1, 0, 1] });
        assert.deepEqual(y.shape, L.conv_s2_asym.yshape);
        y.backward(det(y.shape, 3));
        assertClose(y.dataSync(), L.conv_s2_asym.y, 1e-5, 1e-5, 'y');
        assertClose(x.grad!.dataSync(), L.conv_s2_asym.dx, 1e-5, 1e-5, 'dx');
        assertClose(w.grad!.dataSync(), L.conv_s2_asym.dw, 1e-4, 1e-5, 'dw');
        assertClose(b.grad!.dataSync(), L.conv_s2_asym.db, 1e-4, 1e-5, 'db');
      }));
    it('conv2d 3x3 padding 1: forward and gradients', () =>
      withBackend(be, () => {
        const x = det([2, 4, 5, 5], 4, 1, true),
          w = det([3, 4, 3, 3], 5, 0.3, true),
          b = det([3], 6, 1, true);
        const y = ops.conv2d(x, w, b, { padding: 1 });
        y.backward(det(y.shape, 7));
        assertClose(y.dataSync(), L.conv_s1_p1.y, 1e-5, 1e-5, 'y');
        assertClose(x.grad!.dataSync(), L.conv_s1_p1.dx, 1e-5, 1e-5, 'dx');
        assertClose(w.grad!.dataSync(), L.conv_s1_p1.dw, 1e-4, 1e-5, 'dw');
        assertClose(b.grad!.dataSync(), L.conv_s1_p1.db, 1e-4, 1e-5, 'db');
      }));
    for (const silu of [false, true])
      it(`group norm${silu ? ' + SiLU' : ''}: forward and gradients`, () =>
        withBackend(be, () => {
          const g = silu ? L.groupnorm_silu : L.groupnorm;
          const x = det([2, 6, 4, 3], 8, 1, true),
            gm = det([6], 9, 1, true),
            bt = det([6], 10, 1, true);
          const y = ops.groupNorm(x, gm, bt, 3, 1e-6, silu);
          y.backward(det(y.shape, 11));
          assertClose(y.dataSync(), g.y, 1e-5, 1e-5, 'y');
          assertClose(x.grad!.dataSync(), g.dx, 1e-4, 1e-4, 'dx');
          assertClose(gm.grad!.dataSync(), g.dgamma, 1e-4, 1e-5, 'dgamma');
          assertClose(bt.grad!.dataSync(), g.dbeta, 1e-4, 1e-5, 'dbeta');
        }));
    it('softmax attention: forward and gradients', () =>
      withBackend(be, () => {
        const q = det([2, 5, 4], 12, 1, true),
          k = det([2, 5, 4], 13, 1, true),
          v = det([2, 5, 4], 14, 1, true);
        const a = ops.matmul(ops.softmax(ops.mul(ops.matmul(q, k, false, true), 0.5)), v);
        a.backward(det(a.shape, 15));
        assertClose(a.dataSync(), L.attention.y, 1e-5, 1e-5, 'y');
        assertClose(q.grad!.dataSync(), L.attention.dq, 1e-5, 1e-5, 'dq');
        assertClose(k.grad!.dataSync(), L.attention.dk, 1e-5, 1e-5, 'dk');
        assertClose(v.grad!.dataSync(), L.attention.dv, 1e-5, 1e-5, 'dv');
      }));
    for (const name of ['adam', 'adamw'])
      it(`${name}: three steps`, () =>
        withBackend(be, () => {
          const g = L[name];
          const p = new Tensor(Float32Array.from(g.init), [7], true);
          const opt = new Adam([p], { lr: 1e-2, weightDecay: g.weight_decay });
          for (let s = 0; s < 3; s++) {
            p.grad = det([7], 17 + s);
            opt.update();
            assertClose(p.dataSync(), g.steps[s], 1e-6, 1e-6, `step ${s + 1}`);
          }
        }));
  });

describe('diffusion math matches numpy (after diffusion_utils_2.py)', () => {
  const tab = makeTables(betaSchedule('linear', 1000));
  const idx: number[] = D.idx;
  const pick = (a: Float64Array) => idx.map((i) => a[i]);
  it('schedule tables in float64', () => {
    assertClose(pick(tab.betas), D.betas, 0, 1e-12, 'betas');
    assertClose(pick(tab.alphasCumprod), D.alphas_cumprod, 0, 1e-12, 'alphas_cumprod');
    assertClose(pick(tab.posteriorVariance), D.posterior_variance, 0, 1e-12, 'posterior_variance');
    assertClose(
      pick(tab.posteriorLogVarianceClipped),
      D.posterior_log_variance_clipped,
      0,
      1e-12,
      'posterior log variance (clipped)',
    );
    assertClose(pick(tab.posteriorMeanCoef1), D.posterior_mean_coef1, 0, 1e-12, 'coef1');
    assertClose(pick(tab.posteriorMeanCoef2), D.posterior_mean_coef2, 0, 1e-12, 'coef2');
    assertClose(pick(tab.fixedLargeLogVariance), D.fixedlarge_log_variance, 0, 1e-12, 'fixedlarge log variance');
    for (const s of ['cosine', 'quad', 'jsd', 'sigmoid'] as const)
      assertClose(pick(betaSchedule(s, 1000)), D[s], 0, 1e-10, s);
  });

  for (const be of backends)
    for (const t of [500, 0])
      it(`one ancestral step and one DDIM step at t=${t} (${be.name})`, () =>
        withBackend(be, () => {
          const d = new GaussianDiffusion(PAPER_DIFFUSION);
          const shape = [2, 1, 3, 3];
          const xt = det(shape, 20),
            eps = det(shape, 21, 0.5),
            z = det(shape, 22);
          const model = () => eps;
          const tt = new Int32Array(2).fill(t);
          const g = D[`step_t${t}`];
          const a = ancestralStep(d, model, xt, tt, true, z);
          assertClose(a.predX0.dataSync(), g.x0, 1e-5, 1e-5, 'x0 estimate');
          assertClose(a.x.dataSync(), g.ancestral, 1e-5, 1e-5, 'ancestral x_{t-1}');
          const m = d.pMeanVariance(eps, xt, tt, true);
          assertClose(m.mean.dataSync(), g.mean, 1e-5, 1e-5, 'posterior mean');
          const dd = ddimStep(d, model, xt, t, t - 1, true, 0.5, z);
          assertClose(dd.x.dataSync(), g.ddim_eta05, 1e-5, 1e-5, 'DDIM x_{t-1}');
        }));

  for (const be of backends)
    it(`KL terms, decoder term and prior in bits/dim (${be.name})`, () =>
      withBackend(be, () => {
        const d = new GaussianDiffusion(PAPER_DIFFUSION);
        const shape = [2, 1, 3, 3];
        const x0 = new Tensor(Float32Array.from(D.vlb.x0), shape),
          noise = new Tensor(Float32Array.from(D.vlb.noise), shape);
        const eps = new Tensor(Float32Array.from(D.vlb.eps), shape);
        for (const t of [0, 1, 300, 999]) {
          const tt = new Int32Array(2).fill(t);
          const xt = d.qSample(x0, tt, noise);
          const terms = d.vlbTermsBpd(eps, x0, xt, tt, false);
          assertClose(terms.dataSync(), D.vlb.terms[String(t)], 1e-4, 1e-3, `term at t=${t}`);
        }
        assertClose(d.priorBpd(x0).dataSync(), D.vlb.prior, 1e-7, 1e-3, 'prior');
      }));

  it('discretized decoder: probabilities of the 256 levels sum to 1', () => {
    const levels = Float32Array.from({ length: 256 }, (_, i) => i / 127.5 - 1);
    const x = new Tensor(levels, [256]);
    const ll = discretizedGaussianLogLikelihood(x, ops.full([256], 0.1), ops.full([256], Math.log(0.3)));
    const total = [...ll.dataSync()].reduce((a, b) => a + Math.exp(b), 0);
    assert.ok(Math.abs(total - 1) < 1e-3, `sum of probabilities ${total}`);
  });
});

for (const be of backends)
  it(`U-Net output on fixed weights matches an independent PyTorch implementation (${be.name})`, () =>
    withBackend(be, () => {
      const m = new UNet(PRESETS.tiny());
      const names = [...m.params.keys()].sort();
      assert.deepEqual(names, U.names, 'parameter names');
      assert.equal(m.parameterCount, U.nparams);
      names.forEach((n, j) => {
        const p = m.params.get(n)!;
        const fanIn = p.shape.length > 1 ? p.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
        const v = det(p.shape, j, 1 / Math.sqrt(fanIn)).dataSync();
        if (n.includes('norm') && n.endsWith('weight'))
          for (let i = 0; i < v.length; i++) v[i] = 1 + 0.1 * Math.sin(1.7 * i + 0.3 + j);
        p.write(v);
      });
      const y = m.forward(det([2, 1, 8, 8], 99), U.t);
      assert.deepEqual(y.shape, U.yshape);
      let maxErr = 0;
      y.dataSync().forEach((v, i) => (maxErr = Math.max(maxErr, Math.abs(v - U.y[i]))));
      assert.ok(maxErr <= 1e-4, `max abs error ${maxErr} > 1e-4`);
    }));
