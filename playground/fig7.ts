// The paper's Fig. 7: samples that share x_t. One reverse chain (ancestral, Algorithm 2) runs down to each chosen t;
// its x_t is copied K times and every copy continues down the chain with noise of its own. A row per t, the shared
// x_t first: copies that part early (t = 1000, the shared x_T) differ in everything, those that part late only in
// details, and at t = 0 they are the one sample.
import * as lib from '../src/browser.js';
import { batchFactor, classWords, denoiserFor } from './classes.js';
import { remote } from './remote.js';
import { drawGrid } from './draw.js';
import { count, drive, runAction } from './jobs.js';
import type { Loaded } from './models.js';
import { $, type Estimator, StepClock, fmtDuration, modelCost, readField, say } from './ui.js';

const status = (s: string, kind: 'info' | 'error' = 'info') => say('f7Status', s, kind);

/** The t list ("1000, 750, 500, 250, 0"): 1 to 8 whole numbers in [0, T]; null, said next to the field, if not. */
function readTs(T: number): number[] | null {
  const el = $<HTMLInputElement>('f7t');
  const parts = el.value.split(/[\s,]+/).filter(Boolean);
  const bad = parts.find((p) => !/^\d+$/.test(p) || Number(p) > T);
  const why = !parts.length
    ? `t: enter 1 to 8 whole numbers from 0 to ${T}, e.g. ${T}, ${(3 * T) / 4}, ${T / 2}, ${T / 4}, 0`
    : bad !== undefined
      ? `t: "${bad}" is not a whole number from 0 to ${T}`
      : parts.length > 8
        ? `t: at most 8 rows, got ${parts.length}`
        : '';
  el.setAttribute('aria-invalid', String(!!why));
  say('f7tMsg', why, why ? 'error' : 'info');
  return why ? null : parts.map(Number);
}

/** The rows' elements: "t = ...", the shared x_t, the K samples from it. */
function makeRows(labels: number[]): { xt: HTMLCanvasElement; out: HTMLCanvasElement }[] {
  const box = $('f7Out');
  box.textContent = '';
  return labels.map((t) => {
    const row = document.createElement('div');
    row.className = 'f7row';
    row.dataset.t = String(t);
    const label = document.createElement('span');
    label.className = 'f7label';
    label.textContent = `t = ${t}`;
    const xt = document.createElement('canvas'),
      out = document.createElement('canvas');
    xt.className = 'f7xt';
    out.className = 'f7samples';
    xt.width = xt.height = out.width = out.height = 1;
    row.append(label, xt, out);
    box.append(row);
    return { xt, out };
  });
}

async function runFig7(model: () => Loaded | null, est: () => Estimator, seedOf: () => number | null) {
  const m = model();
  if (!m) return status('no model is loaded: choose one under Model below', 'error');
  const T = m.diffusion.numTimesteps;
  const ts = readTs(T),
    K = readField('f7k', 1, 16, 'samples per row'),
    S = readField('f7steps', 1, T, 'steps'),
    seed = seedOf();
  if (!ts || K === null || S === null || seed === null)
    return status('fix the fields marked above (here and the seed in the Sample form) to draw this', 'error');
  const { in_channels: C, sample_size: H } = m.cfg,
    one = [1, C, H, H],
    per = C * H * H,
    scale = Math.max(2, Math.round(84 / H));
  await runAction('fig7', 'f7Status', 'Fig. 7', async () => {
    const d = m.diffusion,
      clip = lib.defaultClip('ancestral', d);
    const { plan } = lib.samplerPlan(d, { sampler: 'ancestral', steps: S }),
      P = plan.length;
    // after k steps the chain stands at x_t, t = plan[k].t + 1 (x_T at k = 0, x_0 at k = P): each row starts from
    // the point of the chain nearest its t, and is labelled with the t it really starts from
    const tAfter = (k: number) => (k >= P ? 0 : plan[k].t + 1);
    const nearest = (t: number) =>
      Array.from({ length: P + 1 }, (_, k) => k).reduce((b, k) =>
        Math.abs(tAfter(k) - t) < Math.abs(tAfter(b) - t) ? k : b,
      );
    const dones = ts.map(nearest);
    const labels = dones.map(tAfter);
    const rows = makeRows(labels);
    for (const row of rows) {
      drawGrid(row.xt, new Float32Array(per), one, 1, scale); // grey until drawn
      drawGrid(row.out, new Float32Array(K * per), [K, C, H, H], K, scale);
    }
    const need = Math.max(...dones);
    const work = need + dones.reduce((s, k) => s + K * (P - k), 0);
    const cost = modelCost(m.parameterCount, H) * batchFactor(m);
    say('f7Eta', `estimate: ${est().describe(est().seconds(1, work, cost))}`);
    const clock = new StepClock(work);
    let units = 0;
    const progress = (what: string) => {
      clock.tick(units);
      status(`${what}, ${clock.elapsed().toFixed(1)} s`);
      say('f7Eta', `${fmtDuration(clock.left())} left on ${est().kind}`);
    };
    // the shared chain, one image, with x_t kept at every step a row starts from
    const shared = new Map<number, Float32Array>();
    if (dones.includes(0)) shared.set(0, await lib.initialNoise(one, seed, 0).data());
    const chain = remote.run({
      kind: 'sample',
      denoiser: denoiserFor(m, 1, seed),
      shape: one,
      opts: { sampler: 'ancestral', steps: S, seed, clip },
      stopAfter: need,
    });
    // no step to take when every row starts from x_T
    const ok =
      need === 0
        ? true
        : await drive(chain, async (st) => {
            units++;
            if (dones.includes(st.step)) shared.set(st.step, await st.x.data());
            progress(`the shared chain: step ${st.step} / ${need}`);
          });
    if (ok === null) return status(`stopped on the shared chain at step ${units} / ${need}`);
    const denoiser = denoiserFor(m, K, seed);
    for (const [r, k] of dones.entries()) {
      const xt = shared.get(k)!;
      drawGrid(rows[r].xt, xt, one, 1, scale);
      const start = Float32Array.from({ length: K * per }, (_, i) => xt[i % per]);
      // every copy its own noise: samples 1 + r K .. of the run (the shared chain is sample 0)
      const opts = {
        sampler: 'ancestral' as const,
        steps: S,
        seed,
        clip,
        sampleStart: 1 + r * K,
        start: { step: k, x: start },
      };
      const x = await drive(remote.run({ kind: 'sample', denoiser, shape: [K, C, H, H], opts }), async (st) => {
        units += K;
        drawGrid(rows[r].out, await st.predX0.data(), [K, C, H, H], K, scale);
        progress(`row ${r + 1} of ${rows.length} (t = ${labels[r]}): step ${st.step - k} / ${P - k}`);
      });
      if (x === null) return status(`stopped in row ${r + 1} of ${rows.length} (t = ${labels[r]})`);
      drawGrid(rows[r].out, await x.data(), [K, C, H, H], K, scale);
    }
    status(
      `done: ${rows.length} rows of ${K} samples sharing x_t at t = ${labels.join(', ')} (ancestral, ${P} steps, ` +
        `seed ${seed}${classWords(m, seed)}), in ${clock.elapsed().toFixed(1)} s`,
    );
    count('fig7');
  });
  say('f7Eta', ''); // the time left, once it has run (or stopped, or failed)
}

export function wireFig7(model: () => Loaded | null, est: () => Estimator, seedOf: () => number | null): void {
  const T = () => model()?.diffusion.numTimesteps ?? 1000;
  $<HTMLInputElement>('f7t').oninput = () => readTs(T());
  $<HTMLInputElement>('f7k').oninput = () => readField('f7k', 1, 16, 'samples per row');
  $<HTMLInputElement>('f7steps').oninput = () => readField('f7steps', 1, T(), 'steps');
  $<HTMLButtonElement>('fig7').onclick = () => void runFig7(model, est, seedOf);
}
