// The wasm backend: its SIMD GEMM (matrix products, convolutions forward and backward) equals the reference backend on
// the op cases, a U-Net training step's gradients equal the reference backend's, and the committed module is what
// its source builds to.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { WasmBackend } from '../src/backends/wasm/index.js';
import * as ops from '../src/engine/ops.js';
import { GaussianDiffusion, PAPER_DIFFUSION } from '../src/diffusion/gaussian.js';
import { PRESETS, UNet } from '../src/model/unet.js';
import { ROOT, assertClose, randValues, reference, runWithGrads, withBackend } from './helpers.js';
import { OP_CASES, caseInputs } from './op-cases.js';

const wasm = new WasmBackend();

describe('wasm backend equals reference', () => {
  for (const c of OP_CASES) {
    it(c.name, () => {
      const inputs = caseInputs(c);
      const r = runWithGrads(reference, inputs, c.fn);
      const w = runWithGrads(wasm, inputs, c.fn, r.probe);
      assertClose(w.y, r.y, 1e-4, 1e-4, `${c.name} forward`);
      w.grads.forEach((g, i) => assertClose(g, r.grads[i], 1e-4, 1e-4, `${c.name} gradient of input ${i}`));
    });
  }

  it('the tiny U-Net training loss and gradients equal reference within 1e-4', () => {
    const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 100 });
    const x0 = randValues(3 * 64),
      t = Int32Array.from([0, 40, 99]),
      noise = randValues(3 * 64);
    const step = (b: typeof reference) =>
      withBackend(b, () => {
        const model = new UNet(PRESETS.tiny()).init(2);
        const { loss } = d.trainingLosses(
          (x, tt) => model.forward(x, tt),
          ops.fromArray(x0, [3, 1, 8, 8]),
          t,
          ops.fromArray(noise, [3, 1, 8, 8]),
        );
        const total = ops.mean(loss);
        total.backward();
        return {
          loss: total.dataSync().slice(),
          grads: [...model.params.values()].map((p) => p.grad!.dataSync().slice()),
        };
      });
    const w = step(wasm),
      r = step(reference);
    assertClose(w.loss, r.loss, 1e-5, 1e-4, 'loss');
    r.grads.forEach((g, i) => assertClose(w.grads[i], g, 1e-4, 1e-4, `gradient ${i}`));
  });

  it('src/backends/wasm/gemm-wasm.ts is what gemm.wat builds to', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-wasm.mjs'), '--check'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});
