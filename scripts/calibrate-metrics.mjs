// Calibrates a small feature network's metrics so that a number can be read (docs/metrics.md): real test images against
// real training images at N = 1k, 5k, 10k (the floor), degraded test images (blurred, noised) and pure noise (the
// ceiling). Prints a markdown table. Run after `npm run build`:
//   node scripts/calibrate-metrics.mjs mnist ../shared/data/mnist
//   node scripts/calibrate-metrics.mjs fashion fashion-mnist
//   node scripts/calibrate-metrics.mjs cifar10 ../shared/data/cifar-10-batches-bin
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lib = (p) => import(join(root, 'dist', 'src', p));
const { useBackend } = await lib('backends/select.js');
const { loadDataset } = await lib('data/load.js');
const { makeBatch } = await lib('data/dataset.js');
const { DigitNet, DIGITNET_FEATURES: D, DIGITNET_CLASSES } = await lib('eval/digitnet.js');
const { featureStats, frechetDistance, kernelInceptionDistance, inceptionScore, precisionRecall } =
  await lib('eval/metrics.js');
const { parseSafetensors } = await lib('io/safetensors.js');
const { fillRandom, randomPermutation } = await lib('engine/random.js');

const [name = 'mnist', data = '../shared/data/mnist', ...samples] = process.argv.slice(2);
useBackend();
const file = join(root, 'models', `digitnet-${name}.safetensors`);
const { tensors, metadata } = parseSafetensors(new Uint8Array(readFileSync(file)), file);
const net = new DigitNet(tensors, file, metadata);
const S = net.size,
  per = net.channels * S * S;
// random subsets (a fixed seed): the published files are ordered (MNIST's test set puts its two halves, from
// different writers, one after the other), so a prefix is not a fair sample
const images = (split, n) => {
  const ds = loadDataset(data, split);
  const perm = randomPermutation(ds.count, { seed: 7, stream: split === 'train' ? 1 : 2 });
  return makeBatch(ds, perm.subarray(0, Math.min(n, ds.count)))
    .dataSync()
    .slice();
};
const train = await net.embed(images('train', 10000), 10000);
const testImages = images('test', 10000);
const test = await net.embed(testImages, 10000);

function blur(x, n) {
  // 3x3 box blur per image and channel, edges clamped
  const out = new Float32Array(x.length);
  const at = (p, y, c) => x[p * S * S + Math.min(S - 1, Math.max(0, y)) * S + Math.min(S - 1, Math.max(0, c))];
  for (let p = 0; p < n * net.channels; p++)
    for (let y = 0; y < S; y++)
      for (let c = 0; c < S; c++) {
        let s = 0;
        for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) s += at(p, y + dy, c + dx);
        out[p * S * S + y * S + c] = s / 9;
      }
  return out;
}
function noisy(x, sigma, stream) {
  const z = new Float32Array(x.length);
  fillRandom(z, z.length, { seed: 99, stream }, 0, 'normal');
  return x.map((v, i) => Math.max(-1, Math.min(1, v + sigma * z[i])));
}

const rows = [];
function row(label, feats, probs, n, refN = 10000) {
  const ref = train.features.subarray(0, refN * D);
  const fd = frechetDistance(featureStats(feats.subarray(0, n * D), n, D), featureStats(ref, refN, D));
  const kid = kernelInceptionDistance(ref, refN, feats, n, D, 20, Math.min(1000, n));
  const is = inceptionScore(probs.subarray(0, n * DIGITNET_CLASSES), n, DIGITNET_CLASSES, 10);
  const pr = precisionRecall(ref.subarray(0, 1000 * D), 1000, feats.subarray(0, 1000 * D), Math.min(1000, n), D);
  rows.push(
    `| ${label} | ${n.toLocaleString()} | ${fd.toFixed(3)} | ${(kid.mean * 1e3).toFixed(3)} +- ` +
      `${(kid.stderr * 1e3).toFixed(3)} | ${is.mean.toFixed(2)} | ${pr.precision.toFixed(3)} / ` +
      `${pr.recall.toFixed(3)} |`,
  );
  console.error(rows[rows.length - 1]);
  return fd;
}
for (const n of [1000, 5000, 10000]) row(`real test vs real train (the floor)`, test.features, test.probs, n);
const n = 1000;
const b = await net.embed(blur(testImages.subarray(0, n * per), n), n);
row('test images, 3x3 box blur', b.features, b.probs, n);
for (const s of [0.1, 0.3]) {
  const e = await net.embed(noisy(testImages.subarray(0, n * per), s, Math.round(s * 10)), n);
  row(`test images + N(0, ${s}^2) noise (on [-1, 1])`, e.features, e.probs, n);
}
const z = new Float32Array(n * per);
fillRandom(z, z.length, { seed: 98, stream: 1 }, 0, 'normal');
const pure = await net.embed(
  z.map((v) => Math.max(-1, Math.min(1, v))),
  n,
);
row('pure noise N(0, 1), clipped (the ceiling)', pure.features, pure.probs, n);
// optional: .npy files of model samples ([N, C, S, S] on [-1, 1]) to place on the same scale
const { parseNpy } = await lib('io/npy.js');
for (const f of samples) {
  const { shape, data: x } = parseNpy(new Uint8Array(readFileSync(f)), f);
  const e = await net.embed(x, shape[0]);
  row(`samples: ${f}`, e.features, e.probs, shape[0]);
}
console.log(`| set (against 10,000 training images) | N | FD | KID x 1e3 | IS | precision / recall (1,000 each) |`);
console.log(`|---|---|---|---|---|---|`);
for (const r of rows) console.log(r);
