// The playground page: samples a diffusers model with a live view of the reverse chain and the forward chain on the
// samples, interpolates, steers the model (the class and guidance of a class-conditional one: classes.ts; a drawing
// pad finished by RePaint or cleaned up by SDEdit: pad.ts, steer.ts; Fig. 7's shared x_t: fig7.ts; one action at a
// time, each stopped by the Stop button: jobs.ts), loads a shipped model or a dropped folder, and trains the tiny
// preset in the tab. Runs on the best backend the page has (WebGPU on a GPU, else wasm, else the reference backend).
// Query parameters preset the controls (?sampler=ddim&steps=20&seed=0&num=8&clip=1&model=mnist; auto=0 does not
// sample on load; backend=webgpu|wasm|reference takes that backend first); one the page cannot use is answered next
// to its control.
import * as lib from '../src/browser.js';
import { batchFactor, classWords, denoiserFor, showClasses, wireClasses } from './classes.js';
import { drawForward, drawGrid, drawLossChart } from './draw.js';
import { wireFig7 } from './fig7.js';
import {
  count,
  drive,
  errText,
  nextFrame,
  refreshActions,
  requestStop,
  runAction,
  runningAction,
  beginLoad,
  setLoading,
  setUsable,
} from './jobs.js';
import {
  type GivenFile,
  type Loaded,
  chosenFiles,
  describeFile,
  droppedFiles,
  loadGiven,
  loadShipped,
  shippedNames,
} from './models.js';
import { resetPad } from './pad.js';
import { remote, trainer } from './remote.js';
import { wireSteer } from './steer.js';
import {
  $,
  Estimator,
  SAMPLER_INFO,
  StepClock,
  backendKind,
  evalsOf,
  fmtDuration,
  modelCost,
  readField,
  say,
  wholeNumber,
} from './ui.js';

const params = new URLSearchParams(location.search);
const button = (id: string) => $<HTMLButtonElement>(id);
const input = (id: string) => $<HTMLInputElement>(id);

let current: Loaded | null = null;
let est = new Estimator('reference');
/** The last sampling run's images, the endpoints of the interpolation. */
let lastSamples: { x: Float32Array; shape: number[] } | null = null;
let trainStop = false;
/** The backend asked for in the address (the training worker takes the same). */
let backendWanted: 'webgpu' | 'wasm' | 'reference' | undefined;
const busy = { train: false };
/** Whether the clip box was set by the visitor (or the address); else it follows the sampler's default. */
let clipTouched = false;

/** A model's cost per image asked for (twice under guidance: each step runs the network on both halves). */
const cost = (m: Loaded) => modelCost(m.parameterCount, m.cfg.sample_size) * batchFactor(m);
const samplerValue = () => $<HTMLSelectElement>('sampler').value as lib.SamplerName;
const status = (s: string, kind: 'info' | 'error' = 'info') => say('status', s, kind);

/** The clip box follows the sampler's default for this model (see defaultClip) until the visitor sets it. */
function updateSamplerNotes(): void {
  const s = samplerValue();
  $('samplerInfo').textContent = SAMPLER_INFO[s] ?? '';
  if (!current) return;
  const d = lib.defaultClip(s, current.diffusion);
  if (!clipTouched) input('clip').checked = d;
  $('clipNote').textContent = `(the default for ${s} on this model: ${d ? 'on' : 'off'})`;
}

/** The estimates shown next to the buttons of the actions not running now. */
function updateEstimates(): void {
  const m = current;
  const T = m?.diffusion.numTimesteps ?? 1000;
  const steps = wholeNumber(input('steps').value),
    n = wholeNumber(input('num').value);
  if (runningAction() !== 'sample')
    say(
      'sampleEta',
      m && steps !== null && n !== null && steps >= 1 && steps <= T && n >= 1 && n <= 64
        ? `estimate: ${est.describe(est.seconds(evalsOf(samplerValue(), steps), n, cost(m)))}`
        : '',
    );
  const t = wholeNumber(input('it').value);
  if (runningAction() !== 'interp')
    say(
      'interpEta',
      m && lastSamples && t !== null && t >= 0 && t < T
        ? `estimate: ${est.describe(est.seconds(t + 1, 8, cost(m)))}`
        : lastSamples
          ? ''
          : 'sample first: this mixes two samples of the last run',
    );
  const ts = wholeNumber(input('trainSteps').value);
  if (!busy.train)
    say('trainEta', ts !== null && ts >= 1 ? `estimate: ${est.describe(est.trainSeconds(ts), true)}` : '');
}

function setModel(m: Loaded): void {
  resetPad(m.cfg.sample_size); // first: what could fail does so before the page switches
  current = m;
  lastSamples = null; // the interpolation's endpoints belong to the previous model
  refreshActions();
  $<HTMLSelectElement>('modelPick').value = m.source === 'shipped' ? m.name : ''; // blank for a dropped folder
  if (m.source === 'shipped') $('dropFiles').textContent = '';
  const T = m.diffusion.numTimesteps;
  input('steps').max = String(T);
  input('it').max = String(T - 1);
  input('padSteps').max = input('f7steps').max = String(T);
  showClasses(m);
  const from = m.source === 'files' ? ', from your files' : '';
  $('model').textContent =
    `${m.name}${from} (${m.cfg.in_channels}x${m.cfg.sample_size}x${m.cfg.sample_size}, ` +
    `${m.parameterCount.toLocaleString()} parameters, T = ${T})`;
  for (const w of m.warnings) console.warn(w);
  updateSamplerNotes();
  updateEstimates();
}

/** The sampling form, checked: null, with the reasons next to the fields, when one is not usable. */
function sampleForm() {
  const T = current?.diffusion.numTimesteps ?? 1000;
  const steps = readField('steps', 1, T, 'steps'),
    seed = readField('seed', 0, Number.MAX_SAFE_INTEGER, 'seed'),
    n = readField('num', 1, 64, 'images');
  const sampler = samplerValue();
  // a valid choice answers the address's complaints about the sampler and the clip box
  if (lib.SAMPLERS.includes(sampler)) say('samplerMsg', '');
  else say('samplerMsg', 'choose a sampler from the list', 'error');
  say('clipMsg', '');
  if (steps === null || seed === null || n === null || !lib.SAMPLERS.includes(sampler)) return null;
  return { sampler, steps, seed, n, clip: input('clip').checked };
}

/** The sampler, seed and clip box of the sampling form, for the drawing pad's actions. */
function steerForm() {
  const seed = readField('seed', 0, Number.MAX_SAFE_INTEGER, 'seed');
  const sampler = samplerValue();
  if (!lib.SAMPLERS.includes(sampler)) say('samplerMsg', 'choose a sampler from the list', 'error');
  return seed === null || !lib.SAMPLERS.includes(sampler) ? null : { sampler, seed, clip: input('clip').checked };
}

async function runSampling(): Promise<void> {
  const m = current;
  if (!m) return status('no model is loaded: choose one under Model below', 'error');
  const f = sampleForm();
  if (!f) return status('fix the fields marked above to sample', 'error');
  const { cfg } = m;
  const { sampler, steps, seed, n, clip } = f;
  const shape = [n, cfg.in_channels, cfg.sample_size, cfg.sample_size];
  const cols = Math.ceil(Math.sqrt(n));
  const evalsPerStep = evalsOf(sampler, steps) / steps;
  await runAction('sample', 'status', 'sampling', async () => {
    const cls = classWords(m);
    status(`sampling ${n} images, ${sampler}, ${steps} steps, clip ${clip ? 'on' : 'off'}${cls}...`);
    say('sampleEta', `estimate: ${est.describe(est.seconds(evalsOf(sampler, steps), n, cost(m)))}`);
    await nextFrame();
    const strip: Float32Array[] = [];
    const clock = new StepClock(steps);
    let at = 0;
    const it = remote.run({ kind: 'sample', denoiser: denoiserFor(m, n), shape, opts: { sampler, steps, seed, clip } });
    const every = Math.max(1, Math.floor(steps / 10));
    const out = await drive(it, async (st) => {
      const [xt, x0] = await Promise.all([st.x.data(), st.predX0.data()]);
      at = st.step;
      clock.tick(st.step);
      drawGrid($('xt'), xt, shape, cols);
      drawGrid($('x0'), x0, shape, cols);
      if (st.step % every === 0 || st.step === st.total)
        strip.push(x0.slice(0, Math.min(n, 8) * shape[1] * shape[2] * shape[3]));
      status(`step ${st.step} / ${st.total} (t = ${st.t}), ${clock.elapsed().toFixed(1)} s`);
      say(
        'sampleEta',
        `${fmtDuration(clock.left())} left on ${est.kind} (timed: ${clock.perStep().toFixed(2)} s a step)`,
      );
    });
    // the interpolation's endpoints, unless another model was loaded meanwhile
    if (out && current === m) lastSamples = { x: await out.data(), shape };
    est.record(clock.perStep(), evalsPerStep, n, cost(m));
    if (strip.length) {
      const k = Math.min(n, 8),
        per = shape[1] * shape[2] * shape[3];
      const all = new Float32Array(k * strip.length * per);
      for (let s = 0; s < k; s++)
        strip.forEach((row, j) => all.set(row.subarray(s * per, (s + 1) * per), (s * strip.length + j) * per));
      drawGrid($('strip'), all, [k * strip.length, ...shape.slice(1)], strip.length, 2);
    }
    if (lastSamples?.shape === shape)
      await drawForward($('forward'), $('forwardTs'), m.diffusion, lastSamples.x, shape);
    status(
      !out
        ? `stopped at step ${at}`
        : `done: ${n} samples, ${sampler}, ${steps} steps, seed ${seed}, clip ${clip ? 'on' : 'off'}${cls}, ` +
            `in ${clock.elapsed().toFixed(1)} s`,
    );
    count('sampled');
  });
  updateEstimates();
}

/** The paper's Fig. 8: samples a and b encoded to x_t with the same noise, mixed for 8 lambdas, decoded from t. */
async function runInterpolation(): Promise<void> {
  const m = current,
    last = lastSamples;
  if (!m || !last) return say('interpStatus', 'sample first: this mixes two samples of the last run', 'error');
  const { diffusion } = m;
  const [n, C, H, W] = last.shape,
    per = C * H * W;
  const a = readField('ia', 0, n - 1, 'sample a'),
    b = readField('ib', 0, n - 1, 'sample b'),
    t = readField('it', 0, diffusion.numTimesteps - 1, 't');
  if (a === null || b === null || t === null)
    return say('interpStatus', 'fix the fields marked above to interpolate', 'error');
  const one = (i: number) => last.x.slice(i * per, (i + 1) * per);
  const lambdas = Array.from({ length: 8 }, (_, k) => k / 7);
  await runAction('interp', 'interpStatus', 'the interpolation', async () => {
    say('interpStatus', `decoding ${t + 1} steps of 8 mixtures...`);
    say('interpEta', `estimate: ${est.describe(est.seconds(t + 1, 8, cost(m)))}`);
    const clock = new StepClock(t + 1);
    // a class-conditional model decodes with sample a's class (the chosen one, or a's own when it is "any")
    const job = { denoiser: denoiserFor(m, 8, a), shape: [8, C, H, W], a: one(a), b: one(b), lambdas, t, seed: 0 };
    let at = 0;
    const x = await drive(remote.run({ kind: 'interpolate', ...job }), async (st) => {
      at = st.step;
      clock.tick(st.step);
      drawGrid($('interpOut'), await st.x.data(), [8, C, H, W], 8);
      say('interpStatus', `decoding: step ${st.step} / ${st.total} (t = ${st.t}), ${clock.elapsed().toFixed(1)} s`);
      say('interpEta', `${fmtDuration(clock.left())} left on ${est.kind}`);
    });
    if (!x) return say('interpStatus', `stopped at step ${at} / ${t + 1}`);
    drawGrid($('interpOut'), await x.data(), [8, C, H, W], 8);
    const took = clock.elapsed();
    est.record(took, t + 1, 8, cost(m));
    say('interpStatus', `lambda = 0, 1/7, ..., 1 from t = ${t}, in ${took.toFixed(1)} s`);
  });
  say('interpEta', '');
  updateEstimates();
}

// ---- training in the tab (its own worker: it runs beside the generating actions) ----
async function runTraining(): Promise<void> {
  if (busy.train) return;
  const total = readField('trainSteps', 1, 100_000, 'training steps');
  if (total === null) return say('trainStatus', 'fix the steps field to train', 'error');
  trainStop = false;
  busy.train = true;
  button('train').disabled = true;
  button('trainStop').disabled = false;
  say('trainStatus', 'starting...');
  say('trainEta', `estimate: ${est.describe(est.trainSeconds(total), true)}`);
  const svg = $('loss') as unknown as SVGSVGElement;
  const losses: number[] = [];
  drawLossChart(svg, losses, total);
  await nextFrame();
  const clock = new StepClock(total);
  try {
    if (!trainer.backend) await trainer.init(backendWanted);
    let s = 0;
    const it = trainer.run({ kind: 'train', total });
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      const st = r.value;
      s = st.step;
      losses.push(st.loss ?? Number.NaN);
      clock.tick(s);
      drawLossChart(svg, losses, total);
      say('trainStatus', `step ${s} / ${total}, loss ${(st.loss ?? Number.NaN).toFixed(4)}`);
      say(
        'trainEta',
        `${fmtDuration(clock.left())} left on ${est.kind} (timed: ${clock.perStep().toFixed(2)} s a step)`,
      );
      if (st.preview) drawGrid($('trainSamples'), st.preview, [16, 1, 8, 8], 8, 4);
      if (trainStop) {
        await it.return(null);
        break;
      }
    }
    if (s) est.recordTrain(clock.perStep());
    const lastLoss = losses.length ? `, last loss ${losses[losses.length - 1].toFixed(4)}` : '';
    say(
      'trainStatus',
      `${s < total ? 'stopped' : 'done'} after ${s} steps in ${clock.elapsed().toFixed(1)} s${lastLoss}`,
    );
    document.body.dataset.trained = String(Number(document.body.dataset.trained ?? 0) + 1);
  } catch (e) {
    say('trainStatus', `error: training failed: ${errText(e)}`, 'error');
    console.error(e);
  } finally {
    busy.train = false;
    button('train').disabled = false;
    button('trainStop').disabled = true;
    updateEstimates();
  }
}

// ---- models ----
async function pickShipped(name: string): Promise<void> {
  beginLoad(name);
  try {
    const m = await loadShipped(name);
    setModel(m);
    say('modelStatus', `model ${m.name} loaded${m.warnings.length ? ` (${m.warnings.join('; ')})` : ''}`);
  } catch (e) {
    say('modelStatus', `error: could not load model ${name}: ${errText(e)}`, 'error');
    $<HTMLSelectElement>('modelPick').value = current?.source === 'shipped' ? current.name : '';
    console.error(e);
  } finally {
    setLoading(false);
  }
}

/** Loads a dropped or chosen folder and names, in the page, the files it read (and those it left). */
async function loadFromFiles(given: GivenFile[], how: string): Promise<void> {
  const list = $('dropFiles');
  list.textContent = `${how}: ${given.map((g) => g.path).join(', ') || 'no files'}`;
  beginLoad(`${given.length} file${given.length === 1 ? '' : 's'}`);
  try {
    const { loaded, used } = await loadGiven(given);
    setModel(loaded);
    const left = given.filter((g) => !used.includes(g)).map((g) => g.path);
    list.textContent =
      `${how}: model "${loaded.name}" read from ${used.map(describeFile).join(', ')}` +
      (left.length ? `; not used: ${left.join(', ')}` : '');
    say(
      'modelStatus',
      `model ${loaded.name} loaded from your files${loaded.warnings.length ? ` (${loaded.warnings.join('; ')})` : ''}`,
    );
  } catch (e) {
    say('modelStatus', `error: could not load the model: ${errText(e)}`, 'error');
    console.error(e);
  } finally {
    setLoading(false);
  }
}

/** Wires every control first, so that a failure later (a backend, a model) leaves the rest of the page working. */
function wire(): void {
  const sel = $<HTMLSelectElement>('sampler');
  for (const s of lib.SAMPLERS) sel.add(new Option(s, s));
  sel.value = 'ddim';
  sel.onchange = () => {
    say('samplerMsg', '');
    updateSamplerNotes();
    updateEstimates();
  };
  const fields: Record<string, [number, () => number, string]> = {
    steps: [1, () => current?.diffusion.numTimesteps ?? 1000, 'steps'],
    seed: [0, () => Number.MAX_SAFE_INTEGER, 'seed'],
    num: [1, () => 64, 'images'],
    ia: [0, () => (lastSamples ? lastSamples.shape[0] - 1 : 63), 'sample a'],
    ib: [0, () => (lastSamples ? lastSamples.shape[0] - 1 : 63), 'sample b'],
    it: [0, () => (current?.diffusion.numTimesteps ?? 1000) - 1, 't'],
    trainSteps: [1, () => 100_000, 'training steps'],
  };
  for (const [id, [lo, hi, what]] of Object.entries(fields))
    input(id).oninput = () => {
      readField(id, lo, hi(), what);
      updateEstimates();
    };
  setUsable('interp', () => !!lastSamples);
  wireClasses(updateEstimates);
  wireSteer({ model: () => current, form: steerForm, est: () => est });
  wireFig7(
    () => current,
    () => est,
    () => readField('seed', 0, Number.MAX_SAFE_INTEGER, 'seed'),
  );
  input('clip').onchange = () => {
    clipTouched = true;
    say('clipMsg', '');
  };
  button('sample').onclick = () => void runSampling();
  button('stop').onclick = requestStop;
  button('interp').onclick = () => void runInterpolation();
  button('train').onclick = () => void runTraining();
  button('trainStop').onclick = () => {
    trainStop = true;
    trainer.stop();
  };
  const pick = $<HTMLSelectElement>('modelPick');
  pick.onchange = () => void pickShipped(pick.value);
  const drop = $('drop');
  drop.ondragover = (e) => {
    e.preventDefault();
    drop.classList.add('over');
  };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    void droppedFiles(e.dataTransfer!)
      .then((g) => loadFromFiles(g, 'dropped'))
      .catch((err) => say('modelStatus', `error: could not read the dropped files: ${errText(err)}`, 'error'));
  };
  input('files').onchange = () => void loadFromFiles(chosenFiles(input('files').files), 'chosen files');
  input('folder').onchange = () => void loadFromFiles(chosenFiles(input('folder').files), 'chosen folder');
  drawLossChart($('loss') as unknown as SVGSVGElement, [], Number(input('trainSteps').value));
}

/** Applies the address's settings; each one the page cannot use is said next to its control. Returns how many. */
function applyParams(): number {
  let rejected = 0;
  const reject = (msgId: string, text: string) => {
    rejected++;
    say(msgId, text, 'error');
  };
  const s = params.get('sampler');
  if (s !== null) {
    if (lib.SAMPLERS.includes(s as lib.SamplerName)) $<HTMLSelectElement>('sampler').value = s;
    else reject('samplerMsg', `the address asks for sampler "${s}", which this page does not have; using ddim`);
  }
  const ranges: Record<string, [number, number, string]> = {
    steps: [1, 1000, 'steps'],
    seed: [0, Number.MAX_SAFE_INTEGER, 'seed'],
    num: [1, 64, 'images'],
  };
  for (const [k, [lo, hi, what]] of Object.entries(ranges)) {
    const raw = params.get(k);
    if (raw === null) continue;
    const v = wholeNumber(raw);
    if (v !== null && v >= lo && v <= hi) input(k).value = String(v);
    else {
      const range = hi === Number.MAX_SAFE_INTEGER ? `${lo} or more` : `from ${lo} to ${hi}`;
      reject(`${k}Msg`, `the address's ${k}=${raw} is not a whole number ${range}; using ${input(k).value} ${what}`);
    }
  }
  const c = params.get('clip');
  if (c !== null) {
    const v = ({ 1: true, true: true, on: true, 0: false, false: false, off: false } as Record<string, boolean>)[c];
    if (v === undefined) reject('clipMsg', `the address's clip=${c} is not 1 or 0; using the sampler's default`);
    else {
      input('clip').checked = v;
      clipTouched = true;
    }
  }
  return rejected;
}

async function main(): Promise<void> {
  wire();
  let rejected = applyParams();
  updateSamplerNotes();
  let want = params.get('backend');
  if (want !== null && !['webgpu', 'wasm', 'reference'].includes(want)) {
    say('backendMsg', `the address asks for backend "${want}"; expected webgpu, wasm or reference`, 'error');
    rejected++;
    want = null;
  }
  // the page itself draws with the plain backend (the forward chain); the model runs in the worker
  lib.useReferenceBackend();
  backendWanted = (want ?? undefined) as typeof backendWanted;
  const backend = await remote.init(backendWanted);
  const { notes } = backend;
  const info = backend.adapterInfo ? ` (${backend.adapterInfo})` : '';
  $('backend').textContent =
    `${backend.name}${info}, in a worker${notes.length ? ` (passed over: ${notes.join('; ')})` : ''}`;
  document.body.dataset.backend = backend.name;
  est = new Estimator(backendKind(backend));
  updateEstimates();
  const pick = $<HTMLSelectElement>('modelPick');
  const names = await shippedNames();
  for (const n of names) pick.add(new Option(n, n));
  const asked = params.get('model');
  const fallback = names.includes('mnist') ? 'mnist' : (names[0] ?? 'mnist');
  if (asked !== null && names.length && !names.includes(asked)) {
    rejected++;
    await pickShipped(fallback);
    say(
      'modelStatus',
      `the address asks for model "${asked}", which is not shipped (${names.join(', ')}); loaded ${fallback} instead`,
      'error',
    );
  } else await pickShipped(asked ?? fallback);
  document.body.dataset.ready = '1';
  if (params.get('auto') === '0' || !current) return;
  if (rejected) status('not sampling on load: the address has settings this page cannot use (see above); press Sample');
  else await runSampling();
}

main().catch((e) => {
  status(`error: ${errText(e)}`, 'error');
  console.error(e);
});
