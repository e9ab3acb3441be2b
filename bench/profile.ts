// `npm run bench:profile -- [preset] [batch] [sample|train] [f32|bf16]`: where a U-Net step's time goes, per backend
// kernel (the mean of 3 runs after 2 warm-up runs), on the installed backend. Kernels are timed as they are called (the
// CPU backends run them synchronously); the rest is the engine's own JavaScript.
import * as ops from '../src/engine/ops.js';
import { Tensor, getBackend, noGrad, setBackend } from '../src/engine/tensor.js';
import type { Backend } from '../src/engine/backend.js';
import { Adam } from '../src/engine/optim.js';
import { fillRandom } from '../src/engine/random.js';
import { useBackend } from '../src/backends/select.js';
import { UNet, PRESETS } from '../src/model/unet.js';

const [preset = 'mnist', batch = '64', mode = 'sample', precision = 'f32'] = process.argv.slice(2);
if (!PRESETS[preset]) throw new Error(`profile: unknown preset "${preset}" (${Object.keys(PRESETS).join(', ')})`);
if (!['sample', 'train'].includes(mode)) throw new Error(`profile: mode must be sample or train, got "${mode}"`);
if (!['f32', 'bf16'].includes(precision)) throw new Error(`profile: precision must be f32 or bf16, got "${precision}"`);
const B = Number(batch);
if (!Number.isInteger(B) || B < 1) throw new Error(`profile: batch must be a positive integer, got "${batch}"`);

const backend = useBackend();
const cfg = PRESETS[preset]();
const model = new UNet(cfg).init(0);
model.precision = precision as ops.Precision;
const rnd = (shape: number[], stream: number) => {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fillRandom(v, v.length, { seed: 5, stream }, 0, 'normal');
  return new Tensor(v, shape);
};
const x = rnd([B, cfg.in_channels, cfg.sample_size, cfg.sample_size], 1),
  noise = rnd(x.shape, 2);
const t = Int32Array.from({ length: B }, (_, i) => (i * 97) % 1000);
const opt = new Adam([...model.params.values()], { lr: 1e-4 });
const step =
  mode === 'sample'
    ? () => void noGrad(() => model.forward(x, t))
    : () => {
        // with the preset's dropout, as training runs it
        ops.mean(ops.square(ops.sub(model.forward(x, t, { dropout: { seed: 1, micro: 0 } }), noise))).backward();
        opt.update();
        opt.zeroGrad();
      };

// a wrapper of the backend that adds each kernel's time to its name
const times = new Map<string, number>(),
  counts = new Map<string, number>();
const timed = new Proxy(backend, {
  get(target, prop, recv) {
    const f = Reflect.get(target, prop, recv);
    if (typeof f !== 'function' || prop === 'size') return typeof f === 'function' ? f.bind(target) : f;
    return (...args: unknown[]) => {
      const t0 = performance.now();
      const y = f.apply(target, args);
      const name = prop === 'binary' || prop === 'unary' ? `${String(prop)} ${String(args[0])}` : String(prop);
      times.set(name, (times.get(name) ?? 0) + performance.now() - t0);
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return y;
    };
  },
}) as Backend;

step();
step();
const totals: number[] = [];
const runs = 3;
setBackend(timed);
try {
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    step();
    totals.push(performance.now() - t0);
  }
} finally {
  setBackend(backend);
}
const total = totals.reduce((a, b) => a + b, 0) / runs;
const mean = (name: string) => (times.get(name) ?? 0) / runs;
console.log(
  `${preset} ${mode} step, batch ${B}, ${precision}, backend ${getBackend().name}: ${total.toFixed(1)} ms (mean of ` +
    `${runs}: ${totals.map((v) => v.toFixed(0)).join(', ')})`,
);
console.log('| kernel | calls | ms | share |\n|---|---|---|---|');
let kernels = 0;
for (const name of [...times.keys()].sort((a, b) => mean(b) - mean(a))) {
  kernels += mean(name);
  console.log(
    `| ${name} | ${(counts.get(name)! / runs).toFixed(0)} | ${mean(name).toFixed(1)} | ` +
      `${((100 * mean(name)) / total).toFixed(1)}% |`,
  );
}
console.log(
  `| (engine JavaScript, between kernels) | | ${Math.max(0, total - kernels).toFixed(1)} | ` +
    `${((100 * Math.max(0, total - kernels)) / total).toFixed(1)}% |`,
);
