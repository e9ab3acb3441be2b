// `npm run bench:rss`: resident memory over 1000 forward+backward+Adam iterations of W1 (the residual block).
// Memory is held by the JavaScript garbage collector (backend buffers are ArrayBuffers): it must stay flat.
import * as ops from '../src/engine/ops.js';
import { Tensor } from '../src/engine/tensor.js';
import { Adam } from '../src/engine/optim.js';
import { fillRandom } from '../src/engine/random.js';
import { useBackend } from '../src/backends/select.js';

const iters = Number(process.argv[2]) || 1000;
const backend = useBackend();
const rnd = (shape: number[], scale = 1, grad = false) => {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = fillRandom(new Float32Array(n), n, { seed: 5, stream: n }, 0, 'normal');
  for (let i = 0; i < n; i++) v[i] *= scale;
  return new Tensor(v, shape, grad);
};
const x = rnd([8, 128, 32, 32]);
const params = [
  rnd([128], 0.05, true),
  rnd([128], 0.05, true),
  rnd([128, 128, 3, 3], 0.05, true),
  rnd([128], 0.05, true),
  rnd([128], 0.05, true),
  rnd([128], 0.05, true),
  rnd([128, 128, 3, 3], 0.05, true),
  rnd([128], 0.05, true),
];
const [g1, b1, w1, c1, g2, b2, w2, c2] = params;
const opt = new Adam(params, { lr: 1e-4 });
const samples: [number, number][] = [];
const t0 = Date.now();
for (let i = 1; i <= iters; i++) {
  let h = ops.conv2d(ops.groupNorm(x, g1, b1, 32, 1e-6, true), w1, c1, { padding: 1 });
  h = ops.conv2d(ops.groupNorm(h, g2, b2, 32, 1e-6, true), w2, c2, { padding: 1 });
  ops.mean(ops.square(ops.add(x, h))).backward();
  opt.update();
  opt.zeroGrad();
  if (i % 50 === 0) {
    const rss = process.memoryUsage().rss / 2 ** 20;
    samples.push([i, rss]);
    process.stderr.write(
      `\riteration ${i}/${iters}  RSS ${rss.toFixed(0)} MiB  ${((Date.now() - t0) / i).toFixed(0)} ms/iter`,
    );
  }
}
process.stderr.write('\n');
// compare the steady state (after the first 100 iterations) with the end
if (process.env.RSS_TRACE) console.log(samples.map(([i, r]) => `${i}:${r.toFixed(0)}`).join(' '));
const ref = samples.find(([i]) => i >= 100)![1];
const last = samples[samples.length - 1][1];
const max = Math.max(...samples.filter(([i]) => i >= 100).map(([, r]) => r));
console.log(
  `backend ${backend.name}: RSS at iteration 100 ${ref.toFixed(0)} MiB, at ${iters} ${last.toFixed(0)} MiB ` +
    `(${(((last - ref) / ref) * 100).toFixed(1)}%), max after 100 ${max.toFixed(0)} MiB ` +
    `(${(((max - ref) / ref) * 100).toFixed(1)}%)`,
);
