// Finite-difference gradient checks in float64 on tiny shapes (reference backend in double precision).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as ops from '../src/engine/ops.js';
import { Tensor, noGrad } from '../src/engine/tensor.js';
import { ReferenceBackend } from '../src/backends/reference/index.js';
import { UNet, PRESETS } from '../src/model/unet.js';
import { withBackend } from './helpers.js';

const f64 = new ReferenceBackend('float64');

function values(n: number, k: number, positive = false): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => {
    const v = Math.sin(1.3 * i + 0.7 * k + 0.1) + 0.3 * Math.cos(2.9 * i + k);
    return positive ? Math.abs(v) + 0.5 : v;
  });
}

function gradCheck(name: string, shapes: number[][], fn: (xs: Tensor[]) => Tensor, positive = false) {
  it(name, () =>
    withBackend(f64, () => {
      const base = shapes.map((s, k) =>
        values(
          s.reduce((a, b) => a * b, 1),
          k,
          positive,
        ),
      );
      const loss = (vals: Float64Array[], grad: boolean) => {
        const xs = vals.map((v, k) => new Tensor(v as unknown as Float32Array, shapes[k], grad));
        const y = fn(xs);
        const probe = values(y.size, 99) as unknown as Float32Array;
        const l = ops.sum(ops.mul(y, new Tensor(probe, y.shape)));
        return { l, xs };
      };
      const { l, xs } = loss(
        base.map((b) => b.slice()),
        true,
      );
      l.backward();
      const h = 1e-6;
      base.forEach((b, k) => {
        const analytic = xs[k].grad!.dataSync();
        for (let i = 0; i < b.length; i++) {
          const plus = base.map((v) => v.slice()),
            minus = base.map((v) => v.slice());
          plus[k][i] += h;
          minus[k][i] -= h;
          const fd = (noGrad(() => loss(plus, false).l.item()) - noGrad(() => loss(minus, false).l.item())) / (2 * h);
          const err = Math.abs(fd - analytic[i]);
          assert.ok(
            err <= 1e-6 + 1e-5 * Math.abs(fd),
            `${name}: input ${k} index ${i}: analytic ${analytic[i]} vs finite difference ${fd}`,
          );
        }
      });
    }),
  );
}

describe('gradients equal finite differences (float64)', () => {
  gradCheck('conv2d 3x3 stride 2 asymmetric padding', [[1, 2, 5, 4], [3, 2, 3, 3], [3]], ([x, w, b]) =>
    ops.conv2d(x, w, b, { stride: 2, padding: [0, 1, 0, 1] }),
  );
  gradCheck('conv2d 1x1', [[2, 3, 2, 3], [2, 3, 1, 1], [2]], ([x, w, b]) => ops.conv2d(x, w, b));
  gradCheck('linear', [[3, 4], [2, 4], [2]], ([x, w, b]) => ops.linear(x, w, b));
  gradCheck(
    'batched matmul with transposes',
    [
      [2, 3, 4],
      [2, 5, 3],
    ],
    ([a, b]) => ops.matmul(a, b, true, true),
  );
  gradCheck('group norm', [[2, 4, 2, 3], [4], [4]], ([x, g, b]) => ops.groupNorm(x, g, b, 2, 1e-6));
  gradCheck('group norm + SiLU', [[2, 4, 3, 2], [4], [4]], ([x, g, b]) => ops.groupNorm(x, g, b, 2, 1e-6, true));
  gradCheck('softmax', [[3, 5]], ([x]) => ops.softmax(x));
  gradCheck('silu, tanh, exp, square', [[2, 5]], ([x]) =>
    ops.add(ops.add(ops.silu(x), ops.tanh(x)), ops.add(ops.exp(x), ops.square(x))),
  );
  gradCheck('log, sqrt', [[2, 5]], ([x]) => ops.add(ops.log(x), ops.sqrt(x)), true);
  gradCheck(
    'broadcast add, sub, mul, div',
    [
      [2, 3, 2],
      [3, 1],
      [1, 2],
    ],
    ([a, b, c]) => ops.div(ops.mul(ops.sub(ops.add(a, b), c), b), ops.affine(ops.square(c), 1, 1)),
  );
  gradCheck(
    'concat, upsample, permute, reshape',
    [
      [1, 2, 2, 2],
      [1, 1, 2, 2],
    ],
    ([a, b]) => ops.reshape(ops.permute(ops.upsample2x(ops.concat([a, b])), [0, 2, 3, 1]), [-1]),
  );
  gradCheck('normal cdf and clamp', [[3, 4]], ([x]) => ops.add(ops.normalCdf(x), ops.mul(ops.clamp(x, -0.5, 0.5), x)));
  gradCheck('slice channels', [[2, 5, 2, 2]], ([x]) => ops.mul(ops.sliceChannels(x, 1, 3), ops.sliceChannels(x, 2, 3)));
  gradCheck('sum and mean over axes', [[2, 3, 4]], ([x]) => ops.add(ops.sum(x, [1], true), ops.mean(x, [0, 2], true)));
  gradCheck('U-Net (tiny) input gradient', [[1, 1, 8, 8]], ([x]) => {
    const m = new UNet(PRESETS.tiny()).init(3);
    for (const p of m.params.values()) {
      // make the ~0 layers non-trivial (the backend keeps the values in float64)
      p.write(Array.from(p.dataSync(), (w, i) => w || 0.05 * Math.sin(i + 1)));
      p.requiresGrad = false;
    }
    return m.forward(x, [250]);
  });
});
