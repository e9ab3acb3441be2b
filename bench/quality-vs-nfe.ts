// `npm run bench:quality -- MODEL [N] [samplers or sampler:steps, comma-separated|--full] [--clip]`: sample quality
// against the number of network evaluations for each sampler,
// on the digit network (FD and KID against 10,000 training images of the network's dataset), with the time each
// took, as a markdown table for docs. Samples are drawn with seed 0 in batches of 100 (batch-invariant). Each sampler
// clips the x0 estimate as its default says (defaultClip); --clip makes every one clip.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { noGrad } from '../src/engine/tensor.js';
import { useBackend } from '../src/backends/select.js';
import { GaussianDiffusion } from '../src/diffusion/gaussian.js';
import { networkEvals, samplerPlan, sampleAll, type SamplerName } from '../src/diffusion/samplers.js';
import { loadModel } from '../src/io/checkpoint.js';
import { loadDataset } from '../src/data/load.js';
import { makeBatch } from '../src/data/dataset.js';
import { DIGITNET_FEATURES as D, DigitNet } from '../src/eval/digitnet.js';
import { featureStats, frechetDistance, kernelInceptionDistance } from '../src/eval/metrics.js';
import { parseSafetensors } from '../src/io/safetensors.js';
import { randomPermutation } from '../src/engine/random.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const clipAll = process.argv.includes('--clip');
const [modelDir = join(root, 'models', 'mnist'), nArg = '1000', only] = process.argv
  .slice(2)
  .filter((a) => a !== '--clip');
const N = Number(nArg);
useBackend();
const { model, folder } = loadModel(modelDir);
const diffusion = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
const netFile = join(root, 'models', 'digitnet-mnist.safetensors');
const net = new DigitNet(parseSafetensors(new Uint8Array(readFileSync(netFile)), netFile).tensors, netFile);
const train = loadDataset(join(root, '..', 'shared', 'data', 'mnist'), 'train');
const refN = 10000;
const ref = (
  await net.embed(
    await makeBatch(train, randomPermutation(train.count, { seed: 7, stream: 1 }).subarray(0, refN)).data(),
    refN,
  )
).features;
const refStats = featureStats(ref, refN, D);

const full = process.argv.includes('--full');
const runs: [SamplerName, string][] = (
  [
    ['dpm2m', '10'],
    ['dpm2m', '20'],
    ['dpm3m', '10'],
    ['dpm3m', '20'],
    ['heun', '10'],
    ['heun', '20'],
    ['plms', '10'],
    ['plms', '20'],
    ['euler', '10'],
    ['euler', '20'],
    ['euler-a', '20'],
    ['ddim', '10'],
    ['ddim', '20'],
    ['ddim', '50'],
    ['ancestral', '100'],
    ...(full
      ? [
          ['ddim', '100'],
          ['ancestral', '250'],
          ['ancestral', '1000'],
        ]
      : []),
  ] as [SamplerName, string][]
).filter(([s, n]) => !only || only === '--full' || only.split(',').some((o) => o === s || o === `${s}:${n}`));

console.log(`| sampler | steps | spacing | network evaluations | FD | KID x 1e3 | seconds for ${N} |`);
console.log('|---|---|---|---|---|---|---|');
for (const [sampler, steps] of runs) {
  const { plan, spacing } = samplerPlan(diffusion, { sampler, steps });
  const nfe = networkEvals(plan, sampler);
  const images = new Float32Array(N * 784);
  const t0 = Date.now();
  for (let s = 0; s < N; s += 100) {
    const B = Math.min(100, N - s);
    const x = noGrad(() =>
      sampleAll(diffusion, (xx, tt) => model.forward(xx, tt), [B, 1, 28, 28], {
        sampler,
        steps,
        seed: 0,
        sampleStart: s,
        ...(clipAll ? { clip: true } : {}),
      }),
    );
    images.set(x.dataSync(), s * 784);
  }
  const seconds = (Date.now() - t0) / 1000;
  const f = (await net.embed(images, N)).features;
  const fd = frechetDistance(featureStats(f, N, D), refStats);
  const kid = kernelInceptionDistance(ref, refN, f, N, D, 10, Math.min(1000, N));
  console.log(
    `| ${sampler} | ${steps} | ${spacing} | ${nfe} | ${fd.toFixed(3)} | ${(kid.mean * 1e3).toFixed(2)} +- ` +
      `${(kid.stderr * 1e3).toFixed(2)} | ${seconds.toFixed(0)} |`,
  );
}
