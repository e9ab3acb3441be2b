// The WebGPU backend (WGSL kernels on Dawn, here on the SwiftShader software driver): every op forward and backward
// equals the reference backend, the optimiser and reduction kernels too, a U-Net training step equals native, and
// with the collector's recycling off, training and sampling loops hold a fixed set of buffers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Backend } from '../src/engine/backend.js';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNodeWebGPU } from '../src/backends/select.js';
import * as ops from '../src/engine/ops.js';
import { getBackend, noGrad, setBackend } from '../src/engine/tensor.js';
import { GaussianDiffusion, PAPER_DIFFUSION } from '../src/diffusion/gaussian.js';
import { PRESETS, UNet } from '../src/model/unet.js';
import { weightsOf } from '../src/io/checkpoint.js';
import { trainOptionsFrom } from '../src/training/options.js';
import { createTrainState, trainStep } from '../src/training/core.js';
import { sample } from '../src/diffusion/samplers.js';
import { train } from '../src/training/train.js';
import { loadDataset } from '../src/data/load.js';
import { streams } from '../src/engine/streams.js';
import { assertClose, native, randValues, reference, runWithGradsAsync, writeTinyIdx } from './helpers.js';
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
  async function both(
    sizes: number[],
    // biome-ignore lint/suspicious/noExplicitAny: each backend's own buffers
    fn: (b: Backend, bufs: any[]) => any[],
    positive: number[] = [],
  ): Promise<[Float32Array[], Float32Array[]]> {
    const vals = sizes.map((k, i) => (positive.includes(i) ? randValues(k).map(Math.abs) : randValues(k)));
    const run = async (b: Backend) =>
      Promise.all(
        fn(
          b,
          vals.map((v) => b.upload(v)),
        ).map((s) => b.read(s)),
      );
    return [await run(gpu!), await run(reference)];
  }
  function close(g: Float32Array[], r: Float32Array[], what: string): void {
    r.forEach((v, i) => assertClose(g[i], v, 1e-5, 1e-4, `${what}: buffer ${i}`));
  }

  it('adam step, EMA update, sum of squares, scale and add in place', async () => {
    const n = 1000;
    const h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 3 };
    const [g1, r1] = await both(
      [n, n, n, n],
      (b, [p, gr, m, v]) => {
        b.adamStep(p, gr, m, v, h);
        return [p, m, v];
      },
      [3],
    ); // the second moment v >= 0
    close(g1, r1, 'adamStep');
    const [g2, r2] = await both([n, n], (b, [e, p]) => {
      b.emaUpdate(e, p, 0.999);
      return [e];
    });
    close(g2, r2, 'emaUpdate');
    const [g3, r3] = await both([70001], (b, [x]) => [b.sumSquares(x)]);
    close(g3, r3, 'sumSquares');
    const [g4, r4] = await both([n, 1, n], (b, [x, s, y]) => {
      b.scaleInPlace(x, s);
      b.addInPlace(x, y);
      return [x];
    });
    close(g4, r4, 'scaleInPlace + addInPlace');
  });

  it('max and average pooling (count_include_pad on and off)', async () => {
    const xs = [2, 3, 9, 8];
    for (const [kind, k, s, p, cp] of [
      ['max', 3, 2, 0, false],
      ['avg', 3, 1, 1, false],
      ['avg', 3, 1, 1, true],
      ['max', 3, 2, 1, false],
    ] as const) {
      const [g, r] = await both([2 * 3 * 9 * 8], (b, [x]) => [b.pool2d(kind, x, xs, k, s, p, cp)]);
      close(g, r, `pool2d ${kind} k${k} s${s} p${p}${cp ? ' countPad' : ''}`);
    }
  });

  const oracle = native ?? reference;

  it('the tiny U-Net training loss and every parameter gradient equal native within 1e-4', async () => {
    const cfg = { ...PRESETS.tiny(), dropout: 0.1 };
    const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 100 });
    const x0 = randValues(4 * 64),
      t = Int32Array.from([0, 17, 50, 99]);
    const step = async (b: Backend) => {
      const prev = getBackend();
      setBackend(b);
      try {
        const model = new UNet(cfg).init(3);
        const noise = ops.randn([4, 1, 8, 8], streams.trainNoise(0, 0));
        const { loss } = d.trainingLosses(
          (x, tt) => model.forward(x, tt, { dropout: { seed: 0, micro: 0 } }),
          ops.fromArray(x0, [4, 1, 8, 8]),
          t,
          noise,
        );
        const total = ops.mean(loss);
        total.backward();
        return {
          loss: await total.data(),
          grads: await Promise.all([...model.params.values()].map((p) => p.grad!.data())),
          names: [...model.params.keys()],
        };
      } finally {
        setBackend(prev);
      }
    };
    const [g, r] = [await step(gpu!), await step(oracle)];
    assertClose(g.loss, r.loss, 1e-5, 1e-4, 'loss');
    r.grads.forEach((v, i) => assertClose(g.grads[i], v, 1e-4, 1e-4, `gradient of ${r.names[i]}`));
  });

  it('train() runs on webgpu: three steps give the losses and gradient norms of native', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ddpm-webgpu-'));
    const data = loadDataset(writeTinyIdx(dir, 16));
    const run = async (b: Backend, name: string) => {
      const prev = getBackend();
      setBackend(b);
      try {
        const out = join(dir, name);
        const st = await train(
          trainOptionsFrom({
            out,
            preset: 'tiny',
            steps: 3,
            batch: 4,
            lr: 1e-3,
            warmup: 0,
            gradClip: 1,
            ema: 0.9,
            accumulate: 1,
            checkpointEvery: 3,
            keep: 1,
            sampleEvery: 0,
            sampleSteps: 10,
            seed: 0,
          }),
          data,
        );
        const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l));
        return { metrics, weights: await weightsOf(st.model) };
      } finally {
        setBackend(prev);
      }
    };
    const g = await run(gpu!, 'gpu'),
      r = await run(oracle, 'cpu');
    assert.equal(g.metrics.length, 3);
    g.metrics.forEach((m, i) => {
      assertClose(
        [m.loss, m.grad_norm],
        [r.metrics[i].loss, r.metrics[i].grad_norm],
        1e-4,
        1e-3,
        `step ${i + 1} loss and gradient norm`,
      );
      assertClose(
        m.loss_q.map((v: number | null) => v ?? 0),
        r.metrics[i].loss_q.map((v: number | null) => v ?? 0),
        1e-4,
        1e-3,
        `step ${i + 1} loss per quarter`,
      );
    });
  });

  it('without the collector, training steps and 1,000 sampler steps hold a fixed set of buffers (scopes)', async () => {
    // the engine's scopes give every step's buffers back to the pool when the step ends: with the collector's
    // recycling off, the live buffer count stays flat over tiny U-Net training steps and over DDIM and DPM-Solver++ 3M
    // (which carries a history) with a formula network
    const b = gpu as import('../src/backends/webgpu/index.js').WebGPUBackend;
    const prev = getBackend();
    setBackend(b);
    b.gcRecycling = false;
    try {
      const o = trainOptionsFrom({ out: '', preset: 'tiny', steps: 4, batch: 2, lr: 1e-3, warmup: 0, ema: 0.99 });
      o.diffusion = { ...o.diffusion, timesteps: 100 };
      const st = createTrainState(o);
      const pixels = Uint8Array.from({ length: 16 * 64 }, (_, i) => (i * 37) % 256);
      const data = { name: 'fixed', count: 16, channels: 1, height: 8, width: 8, pixels };
      const order = new Map<number, Int32Array>();
      const live: Record<string, number[]> = { train: [] };
      for (let s = 1; s <= 4; s++) {
        await trainStep(o, new GaussianDiffusion(o.diffusion), st, data, order);
        if (s === 2 || s === 4) live.train.push(b.stats().live);
      }
      const d = new GaussianDiffusion({ ...o.diffusion, timesteps: 1000 });
      for (const [sampler, steps] of [
        ['ddim', 1000],
        ['dpm3m', 500],
      ] as const) {
        const it = sample(d, (x) => ops.mul(x, 0.5), [2, 1, 8, 8], { sampler, steps, seed: 0 });
        live[sampler] = [];
        let r = noGrad(() => it.next());
        for (; !r.done; r = noGrad(() => it.next()))
          if (r.value.step === 10 || r.value.step === steps) live[sampler].push(b.stats().live);
        await r.value.data();
      }
      for (const [loop, [early, last]] of Object.entries(live))
        assert.ok(last <= early, `${loop}: ${early} live buffers early on, ${last} at the last step`);
    } finally {
      b.gcRecycling = true;
      setBackend(prev);
    }
  });

  it('readSync refuses, naming the async read', () => {
    assert.throws(() => gpu!.readSync(gpu!.zeros(3)), /await tensor\.data\(\)/);
  });
});
