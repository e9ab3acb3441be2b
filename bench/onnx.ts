// `npm run bench:onnx` (also run by `npm run bench`): the U-Net forward pass of the shipped models through this
// engine's native backend and through onnxruntime-node (CPU execution provider, the same weights exported to ONNX by
// diffusers' UNet2DModel and torch.onnx: scripts/export_onnx.py), with the same thread count, in one process, paired
// rounds; prints the medians and the ratio onnxruntime time / ours (above 1: we are faster), after checking that the
// two give the same eps. Options: --rounds N (default 7), --threads N (default 2).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ops from '../src/engine/ops.js';
import { noGrad } from '../src/engine/tensor.js';
import { fillRandom } from '../src/engine/random.js';
import { useBackend } from '../src/backends/select.js';
import { loadModel } from '../src/io/checkpoint.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const rounds = arg('--rounds', 7),
  threads = arg('--threads', 2);

type Ort = typeof import('onnxruntime-node');
let ort: Ort;
try {
  ort = createRequire(import.meta.url)('onnxruntime-node') as Ort;
} catch (e) {
  console.log(`onnxruntime-node is not installed (${(e as Error).message.split('\n')[0]}): npm ci installs it`);
  process.exit(0);
}

const be = useBackend('native', threads);
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
console.log(`CPU: ${cpus()[0]?.model ?? 'unknown'}; ${threads} threads each; ${be.name}; onnxruntime-node`);
console.log('| model | batch | ours ms | onnxruntime ms | ratio (ort / ours) | max abs eps difference |');
console.log('|---|---|---|---|---|---|');
for (const [name, B] of [
  ['mnist', 4],
  ['mnist', 64],
  ['cifar10', 16],
] as const) {
  const file = join(root, 'bench', 'onnx', `${name}.onnx`);
  if (!existsSync(file)) {
    console.log(`| ${name} | ${B} | - | - | ${file} missing: run scripts/export_onnx.py | - |`);
    continue;
  }
  const { model, folder } = loadModel(join(root, 'models', name));
  const c = folder.unetConfig;
  const shape = [B, c.in_channels, c.sample_size, c.sample_size];
  const n = shape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n);
  fillRandom(x, n, { seed: 3, stream: 1 }, 0, 'normal');
  const t = Int32Array.from({ length: B }, (_, i) => (i * 97) % 1000);
  const session = await ort.InferenceSession.create(readFileSync(file), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const feeds = {
    sample: new ort.Tensor('float32', x, shape),
    timestep: new ort.Tensor(
      'int64',
      BigInt64Array.from(t, (v) => BigInt(v)),
      [B],
    ),
  };
  const ours = async () => noGrad(() => model.forward(ops.fromArray(x, shape), t)).data();
  const theirs = async () => (await session.run(feeds)).eps.data as Float32Array;
  const [a, b] = [await ours(), await theirs()];
  let diff = 0;
  for (let i = 0; i < n; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
  const tOurs: number[] = [],
    tOrt: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t0 = performance.now();
    await ours();
    tOurs.push(performance.now() - t0);
    t0 = performance.now();
    await theirs();
    tOrt.push(performance.now() - t0);
  }
  const [mo, mt] = [median(tOurs), median(tOrt)];
  console.log(
    `| ${name} | ${B} | ${mo.toFixed(1)} | ${mt.toFixed(1)} | ${(mt / mo).toFixed(2)} | ${diff.toExponential(1)} |`,
  );
}
