// The drawing pad's two actions: "finish it" inpaints the drawing with RePaint (Lugmayr et al. 2022; the drawn pixels
// or a chosen half kept, the rest generated) and "clean it up" runs SDEdit (Meng et al. 2021: the drawing noised part
// of the way up the chain, then the reverse chain from there; the strength is that part). Both draw several results
// with different noise, show them as they form, and stop with the Stop button.
import * as lib from '../src/browser.js';
import { batchFactor, classWords, denoiserFor } from './classes.js';
import { remote } from './remote.js';
import { drawGrid } from './draw.js';
import { count, drive, runAction } from './jobs.js';
import type { Loaded } from './models.js';
import { type Keep, padImage, padInked, padMask, wirePad } from './pad.js';
import { $, type Estimator, StepClock, fmtDuration, modelCost, readField, say } from './ui.js';

export interface SteerContext {
  model: () => Loaded | null;
  /** The sampling form's sampler, seed and clip box; null, with the reasons next to its fields, when not usable. */
  form: () => { sampler: lib.SamplerName; seed: number; clip: boolean } | null;
  est: () => Estimator;
}

const status = (s: string, kind: 'info' | 'error' = 'info') => say('padStatus', s, kind);
const KEPT: Record<Keep, string> = {
  drawn: 'what you drew',
  top: 'the top half',
  bottom: 'the bottom half',
  left: 'the left half',
  right: 'the right half',
};

/** The input and the results in one row: [input, result 1, ..., result n]. */
function showRow(input: Float32Array, results: Float32Array, m: Loaded, n: number): void {
  const { in_channels: C, sample_size: S } = m.cfg;
  const all = new Float32Array((n + 1) * C * S * S);
  all.set(input);
  all.set(results.subarray(0, n * C * S * S), C * S * S);
  drawGrid($('padOut'), all, [n + 1, C, S, S], n + 1, Math.max(2, Math.round(84 / S)));
}

/** n copies of one image. */
const copies = (x: Float32Array, n: number) => {
  const out = new Float32Array(n * x.length);
  for (let i = 0; i < n; i++) out.set(x, i * x.length);
  return out;
};

/** The fields every pad action reads, checked (null, with the reasons next to the fields, when one is not usable). */
function padForm(c: SteerContext) {
  const m = c.model();
  if (!m) {
    status('no model is loaded: choose one under Model below', 'error');
    return null;
  }
  const n = readField('padNum', 1, 16, 'results'),
    steps = readField('padSteps', 1, m.diffusion.numTimesteps, 'steps'),
    f = c.form();
  if (n === null || steps === null || !f) {
    status('fix the fields marked above (here and in the Sample form) to run this', 'error');
    return null;
  }
  return { m, n, steps, ...f };
}

async function finish(c: SteerContext): Promise<void> {
  const p = padForm(c);
  if (!p) return;
  const jumps = readField('jumps', 1, 20, 'resampling');
  if (jumps === null) return status('fix the fields marked above to run this', 'error');
  const keep = $<HTMLSelectElement>('keep').value as Keep;
  if (keep === 'drawn' && !padInked())
    return status('draw something first: "what I drew" keeps your strokes and generates the rest', 'error');
  const { m, n, steps, seed, clip } = p;
  const { in_channels: C, sample_size: S } = m.cfg,
    per = C * S * S,
    T = m.diffusion.numTimesteps;
  await runAction('finish', 'padStatus', 'finishing the drawing', async () => {
    const img = padImage(C),
      mask = padMask(keep);
    // the input as the model sees it, the part it generates in grey
    const hole = img.map((v, i) => (mask[i % (S * S)] ? v : 0));
    const jumpLength = Math.max(1, Math.round(Math.min(steps, T) / 25));
    const ts = lib.repaintTimesteps(T, steps, jumpLength, jumps);
    const evals = ts.filter((t, k) => k === 0 || t < ts[k - 1]).length;
    const cost = modelCost(m.parameterCount, S);
    say('padEta', `estimate: ${c.est().describe(c.est().seconds(evals, n * batchFactor(m), cost))}`);
    const opts = { steps, jumpLength, jumpNSample: jumps, seed, clip };
    const it = remote.run({
      kind: 'inpaint',
      denoiser: denoiserFor(m, n),
      shape: [n, C, S, S],
      known: copies(img, n),
      mask,
      opts,
    });
    const clock = new StepClock(ts.length);
    showRow(hole, copies(hole, n), m, n);
    let at = 0;
    const x = await drive(it, async (st) => {
      at = st.step;
      clock.tick(st.step);
      // the x0 estimate in the generated part, the drawing in the kept part
      if (st.hasPredX0) {
        const x0 = await st.predX0.data();
        showRow(
          hole,
          x0.map((v, i) => (mask[i % (S * S)] ? img[i % per] : v)),
          m,
          n,
        );
      }
      status(`finishing: step ${st.step} / ${st.total} (t = ${st.t}), ${clock.elapsed().toFixed(1)} s`);
      say('padEta', `${fmtDuration(clock.left())} left on ${c.est().kind}`);
    });
    if (!x) return status(`stopped at step ${at} / ${ts.length}`);
    showRow(hole, await x.data(), m, n);
    status(
      `done: ${n} results, kept ${KEPT[keep]}, RePaint ${ts.length} steps (${Math.min(steps, T)} down the chain, ` +
        `jumps of ${jumpLength} x ${jumps}), seed ${seed}${classWords(m)}, in ${clock.elapsed().toFixed(1)} s`,
    );
    count('inpainted');
  });
  say('padEta', ''); // the time left, once it has run (or stopped, or failed)
}

async function clean(c: SteerContext): Promise<void> {
  const p = padForm(c);
  if (!p) return;
  const { m, n, steps, seed, sampler, clip } = p;
  const strength = Number($<HTMLInputElement>('strength').value);
  const { in_channels: C, sample_size: S } = m.cfg;
  await runAction('clean', 'padStatus', 'cleaning up the drawing', async () => {
    const img = padImage(C);
    const { plan } = lib.samplerPlan(m.diffusion, { sampler, steps });
    const run = lib.sdeditStart(plan.length, strength).steps;
    const cost = modelCost(m.parameterCount, S);
    say('padEta', `estimate: ${c.est().describe(c.est().seconds(run, n * batchFactor(m), cost))}`);
    const opts = { sampler, steps, seed, clip };
    const x0 = copies(img, n);
    const it = remote.run({ kind: 'sdedit', denoiser: denoiserFor(m, n), shape: [n, C, S, S], x0, strength, opts });
    const clock = new StepClock(run);
    let at = 0;
    const x = await drive(it, async (st) => {
      at = st.step - (plan.length - run);
      clock.tick(at);
      showRow(img, await st.predX0.data(), m, n);
      status(`cleaning up: step ${at} / ${run} (t = ${st.t}), ${clock.elapsed().toFixed(1)} s`);
      say('padEta', `${fmtDuration(clock.left())} left on ${c.est().kind}`);
    });
    if (!x) return status(`stopped at step ${at} / ${run}`);
    showRow(img, await x.data(), m, n);
    status(
      `done: ${n} results, SDEdit strength ${strength.toFixed(2)} (${run} of ${plan.length} ${sampler} steps), ` +
        `seed ${seed}${classWords(m)}, in ${clock.elapsed().toFixed(1)} s`,
    );
    count('sdedited');
  });
  say('padEta', ''); // the time left, once it has run (or stopped, or failed)
}

/** Wires the pad, its fields and its two buttons. */
export function wireSteer(c: SteerContext): void {
  wirePad();
  const strength = $<HTMLInputElement>('strength');
  const showStrength = () => {
    $('strengthVal').textContent = Number(strength.value).toFixed(2);
  };
  strength.oninput = showStrength;
  showStrength();
  const T = () => c.model()?.diffusion.numTimesteps ?? 1000;
  $<HTMLInputElement>('padNum').oninput = () => readField('padNum', 1, 16, 'results');
  $<HTMLInputElement>('padSteps').oninput = () => readField('padSteps', 1, T(), 'steps');
  $<HTMLInputElement>('jumps').oninput = () => readField('jumps', 1, 20, 'resampling');
  $<HTMLButtonElement>('finish').onclick = () => void finish(c);
  $<HTMLButtonElement>('clean').onclick = () => void clean(c);
}
