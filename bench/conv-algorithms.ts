// `npm run bench:conv`: the native backend's convolution algorithms side by side on the 3x3 convolutions of the mnist
// and cifar10 U-Nets: milliseconds per call (median of 7 after 2 warm-up runs) with oneDNN's direct kernels and with
// Winograd F(4x4, 3x3), forward and forward + both gradients, and which kernels oneDNN ran. Prints a markdown table.
import * as ops from '../src/engine/ops.js';
import { Tensor, noGrad } from '../src/engine/tensor.js';
import { useBackend } from '../src/backends/select.js';
import { type ConvAlgorithm, NativeBackend } from '../src/backends/native/index.js';
import { fillRandom } from '../src/engine/random.js';

const backend = useBackend();
if (!(backend instanceof NativeBackend)) throw new Error('bench:conv: needs the native backend');
const nb = backend;
const rnd = (shape: number[], scale: number) => {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fillRandom(v, v.length, { seed: 3, stream: shape.length }, 0, 'normal');
  for (let i = 0; i < v.length; i++) v[i] *= scale;
  return new Tensor(v, shape, true);
};
// [N, C, O, H]: 3x3, stride 1, padding 1 (the mnist U-Net at batch 64, the cifar10 one at batch 8)
const SHAPES = [
  [64, 1, 32, 28],
  [64, 32, 32, 28],
  [64, 64, 32, 28],
  [64, 96, 32, 28],
  [64, 32, 64, 14],
  [64, 128, 64, 14],
  [64, 64, 64, 7],
  [64, 128, 64, 7],
  [8, 3, 128, 32],
  [8, 128, 128, 32],
  [8, 256, 128, 32],
  [8, 256, 256, 16],
  [8, 512, 256, 16],
  [8, 256, 256, 8],
  [8, 512, 256, 4],
];
const p = { stride: 1, padTop: 1, padBottom: 1, padLeft: 1, padRight: 1 };
function time(f: () => void): number {
  f();
  f();
  const ts: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    f();
    ts.push(performance.now() - t0);
  }
  return ts.sort((a, b) => a - b)[3];
}
console.log(`threads ${nb.info.threads}, oneDNN ${nb.info.onednn}`);
console.log(
  '| convolution (N, C -> O, H x W) | direct fwd ms | Winograd fwd ms | direct fwd+bwd ms | Winograd fwd+bwd ms | ' +
    'kernel under `winograd` |',
);
console.log('|---|---|---|---|---|---|');
try {
  // the process's first convolutions start OpenMP's threads and fault in oneDNN's code: not part of any row
  for (const a of ['direct', 'winograd'] as ConvAlgorithm[]) {
    nb.setConvAlgorithm(a);
    const [x, w] = [rnd([64, 32, 28, 28], 1), rnd([32, 32, 3, 3], 0.1)];
    for (let i = 0; i < 5; i++) ops.sum(ops.conv2d(x, w, null, { padding: 1 })).backward();
  }
  for (const [N, C, O, H] of SHAPES) {
    const x = rnd([N, C, H, H], 1),
      w = rnd([O, C, 3, 3], 0.1),
      b = rnd([O], 0.1);
    const t: Record<string, number> = {};
    for (const a of ['direct', 'winograd'] as ConvAlgorithm[]) {
      nb.setConvAlgorithm(a);
      t[`${a} fwd`] = time(() => void noGrad(() => ops.conv2d(x, w, b, { padding: 1 })));
      t[`${a} bwd`] = time(() => ops.sum(ops.conv2d(x, w, b, { padding: 1 })).backward());
    }
    const kernel = nb.convImplementations([N, C, H, H], [O, C, 3, 3], p).forward;
    console.log(
      `| ${N}, ${C} -> ${O}, ${H}x${H} | ${t['direct fwd'].toFixed(2)} | ${t['winograd fwd'].toFixed(2)} | ` +
        `${t['direct bwd'].toFixed(2)} | ${t['winograd bwd'].toFixed(2)} | ${kernel} |`,
    );
  }
} finally {
  nb.setConvAlgorithm('winograd');
}
