// Training in the tab, as the model worker runs it: the training core of `ddpm train` (Algorithm 1 with the paper's
// recipe) on the tiny preset and T = 100, on 16 blobs at varying positions; every 50 steps (and at the end) 16 DDIM
// samples of the EMA weights come with the step as a preview.
import * as lib from '../src/browser.js';

export interface TrainStep {
  step: number;
  total: number;
  loss: number;
  preview?: Float32Array;
}

export async function* trainSteps(total: number): AsyncGenerator<TrainStep, null> {
  const o = lib.trainOptionsFrom({
    out: '',
    preset: 'tiny',
    steps: total,
    batch: 16,
    lr: 2e-3,
    warmup: 0,
    ema: 0.99,
    emaWarmup: false,
    seed: 0,
  });
  o.diffusion = { ...o.diffusion, timesteps: 100, betaEnd: 0.2 };
  const st = lib.createTrainState(o);
  const weights = [...st.model.params.values()];
  const d = new lib.GaussianDiffusion(o.diffusion);
  const N = 16,
    pixels = new Uint8Array(N * 64);
  for (let i = 0; i < N; i++)
    for (let y = 0; y < 8; y++)
      for (let x = 0; x < 8; x++)
        pixels[i * 64 + y * 8 + x] = (y - 2 - (i % 4)) ** 2 + (x - 2 - (i >> 2)) ** 2 <= 3 ? 255 : 0;
  const data = { name: 'blobs', count: N, channels: 1, height: 8, width: 8, pixels };
  const order = new Map<number, Int32Array>();
  const preview = () => {
    const xs = lib.withValues(weights, st.ema.shadow, () =>
      lib.noGrad(() =>
        lib.sampleAll(d, (x, tt) => st.model.forward(x, tt), [16, 1, 8, 8], { sampler: 'ddim', steps: 10, seed: 1 }),
      ),
    );
    return xs.data();
  };
  for (let s = 1; s <= total; s++) {
    const r = await lib.trainStep(o, d, st, data, order);
    yield { step: s, total, loss: r.loss, preview: s % 50 === 0 || s === total ? await preview() : undefined };
  }
  return null;
}
