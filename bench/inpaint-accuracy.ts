// `npm run bench:inpaint -- [N] [STEPS] [JUMP_LENGTH] [JUMP_N_SAMPLE] [ETA]`: the inpainting bar. The first N MNIST
// test digits (../shared/data/mnist) with their bottom half masked are completed by the shipped unconditional MNIST
// model with RePaint; the digit network classifies the originals, the masked digits (the hole black, as the
// background) and the completions; prints the three accuracies against the labels, and the time.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ops from '../src/engine/ops.js';
import { noGrad } from '../src/engine/tensor.js';
import { useBackend } from '../src/backends/select.js';
import { GaussianDiffusion } from '../src/diffusion/gaussian.js';
import { inpaint, repaintTimesteps } from '../src/diffusion/repaint.js';
import { loadModel } from '../src/io/checkpoint.js';
import { loadDataset } from '../src/data/load.js';
import { makeBatch } from '../src/data/dataset.js';
import { DigitNet } from '../src/eval/digitnet.js';
import { parseSafetensors } from '../src/io/safetensors.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [N, steps, jumpLength, jumpNSample, eta] = [1000, 100, 10, 5, 0].map((d, i) => Number(process.argv[2 + i] ?? d));
const backend = useBackend();
const { model, folder } = loadModel(join(root, 'models', 'mnist'));
const d = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
const netFile = join(root, 'models', 'digitnet-mnist.safetensors');
const net = new DigitNet(parseSafetensors(new Uint8Array(readFileSync(netFile)), netFile).tensors, netFile);
const test = loadDataset(join(root, '..', 'shared', 'data', 'mnist'), 'test');
if (!test.labels) throw new Error('the MNIST test labels are missing');
const labels = test.labels;
const x = await makeBatch(
  test,
  Int32Array.from({ length: N }, (_, i) => i),
).data();
const m = Float32Array.from({ length: 784 }, (_, i) => (i < 14 * 28 ? 1 : 0));
const masked = Float32Array.from(x, (v, i) => (m[i % 784] ? v : -1));

async function accuracy(images: Float32Array): Promise<number> {
  const { probs } = await net.embed(images, N);
  let right = 0;
  for (let i = 0; i < N; i++) {
    const p = probs.subarray(i * 10, i * 10 + 10);
    if (p.indexOf(Math.max(...p)) === labels[i]) right++;
  }
  return right / N;
}

const ts = repaintTimesteps(d.numTimesteps, steps, jumpLength, jumpNSample);
console.error(
  `inpainting ${N} digits: ${steps} steps, jumps of ${jumpLength} x ${jumpNSample} (${ts.length} entries), eta ` +
    `${eta}, backend ${backend.name}`,
);
const t0 = Date.now();
const out = new Float32Array(N * 784);
const B = 100;
for (let s = 0; s < N; s += B) {
  const n = Math.min(B, N - s);
  const known = ops.fromArray(x.subarray(s * 784, (s + n) * 784), [n, 1, 28, 28]);
  const opts = { steps, jumpLength, jumpNSample, eta, seed: 0, sampleStart: s };
  const it = inpaint(d, (xx, t) => model.forward(xx, t), known, ops.fromArray(m, [1, 1, 28, 28]), opts);
  let r = noGrad(() => it.next());
  while (!r.done) r = noGrad(() => it.next());
  out.set(await r.value.data(), s * 784);
  process.stderr.write(`\r${s + n}/${N} digits, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
const seconds = (Date.now() - t0) / 1000;
const exact = out.every((v, i) => !m[i % 784] || v === x[i]);
console.error('');
console.log(
  `| digits | steps | jumps | eta | originals | bottom half masked | inpainted | known pixels exact | time |`,
);
console.log(`|---|---|---|---|---|---|---|---|---|`);
console.log(
  `| ${N} | ${steps} | ${jumpLength} x ${jumpNSample} | ${eta} | ${(100 * (await accuracy(x))).toFixed(1)}% | ` +
    `${(100 * (await accuracy(masked))).toFixed(1)}% | ${(100 * (await accuracy(out))).toFixed(1)}% | ${exact} | ` +
    `${seconds.toFixed(0)} s |`,
);
