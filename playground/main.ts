// The playground page: samples a diffusers model with a live view of the reverse chain, loads a dropped model folder,
// and trains the tiny preset in the tab. Runs on the best backend the page has (WebGPU, else the reference backend).
// Query parameters preset the controls (?sampler=ddim&steps=20&seed=0&num=8; auto=0 does not sample on load;
// backend=webgpu|wasm|reference takes that backend first).
import * as lib from '../src/browser.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);

/** Draws [N, C, H, W] images on [-1, 1] into a canvas as a grid, each pixel `scale` screen pixels. */
function drawGrid(canvas: HTMLCanvasElement, x: Float32Array, shape: number[], cols: number, scale = 3): void {
  const [N, C, H, W] = shape;
  const rows = Math.ceil(N / cols),
    pad = 2;
  const w = cols * (W + pad) + pad,
    h = rows * (H + pad) + pad;
  canvas.width = w;
  canvas.height = h;
  canvas.style.width = `${w * scale}px`;
  canvas.style.height = `${h * scale}px`;
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(w, h);
  img.data.fill(255);
  for (let n = 0; n < N; n++) {
    const ox = pad + (n % cols) * (W + pad),
      oy = pad + Math.floor(n / cols) * (H + pad);
    for (let y = 0; y < H; y++)
      for (let xx = 0; xx < W; xx++) {
        const o = ((oy + y) * w + ox + xx) * 4;
        for (let c = 0; c < 3; c++) {
          const v = x[((n * C + (C === 1 ? 0 : c)) * H + y) * W + xx];
          img.data[o + c] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
        }
      }
  }
  ctx.putImageData(img, 0, 0);
}

interface Loaded {
  name: string;
  model: lib.UNet;
  diffusion: lib.GaussianDiffusion;
  cfg: lib.UNetConfig;
}
let current: Loaded | null = null;

function fromFolder(
  name: string,
  files: { config: Record<string, unknown>; scheduler?: Record<string, unknown>; weights: Uint8Array },
): Loaded {
  const folder = lib.parseModelFolder(files, {
    dir: name,
    config: `${name}/config.json`,
    scheduler: `${name}/scheduler_config.json`,
    weights: `${name}/diffusion_pytorch_model.safetensors`,
  });
  for (const w of folder.warnings) console.warn(w);
  const model = new lib.UNet(folder.unetConfig);
  lib.loadWeights(model, folder.weights, name);
  return {
    name,
    model,
    diffusion: new lib.GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas),
    cfg: folder.unetConfig,
  };
}

async function loadShipped(name: string): Promise<Loaded> {
  const get = async (f: string) => {
    const r = await fetch(`models/${name}/${f}`);
    if (!r.ok) throw new Error(`models/${name}/${f}: HTTP ${r.status}`);
    return r;
  };
  return fromFolder(name, {
    config: await (await get('config.json')).json(),
    scheduler: await (await get('scheduler_config.json')).json(),
    weights: new Uint8Array(await (await get('diffusion_pytorch_model.safetensors')).arrayBuffer()),
  });
}

/** The shipped model folders the server lists (models/index.json); none when the page is served without it. */
async function shippedNames(): Promise<string[]> {
  try {
    const r = await fetch('models/index.json');
    return r.ok ? ((await r.json()) as string[]) : [];
  } catch {
    return [];
  }
}

function setModel(m: Loaded): void {
  current = m;
  lastSamples = null; // the interpolation's endpoints belong to the previous model
  ($('interp') as HTMLButtonElement).disabled = true;
  ($('modelPick') as HTMLSelectElement).value = m.name; // blank for a dropped folder
  $('model').textContent =
    `${m.name} (${m.cfg.in_channels}x${m.cfg.sample_size}x${m.cfg.sample_size}, ${m.model.parameterCount.toLocaleString()} parameters, T = ${m.diffusion.numTimesteps})`;
}

let stopRequested = false;
/** The last sampling run's images, the endpoints of the interpolation. */
let lastSamples: { x: Float32Array; shape: number[] } | null = null;
const status = (s: string) => ($('status').textContent = s);

async function runSampling(): Promise<void> {
  if (!current) return;
  const { model, diffusion, cfg } = current;
  const sampler = ($('sampler') as HTMLSelectElement).value as lib.SamplerName;
  const steps = Number(($('steps') as HTMLInputElement).value),
    seed = Number(($('seed') as HTMLInputElement).value);
  const n = Number(($('num') as HTMLInputElement).value);
  const shape = [n, cfg.in_channels, cfg.sample_size, cfg.sample_size];
  const cols = Math.ceil(Math.sqrt(n));
  stopRequested = false;
  ($('sample') as HTMLButtonElement).disabled = true;
  ($('stop') as HTMLButtonElement).disabled = false;
  const strip: Float32Array[] = [];
  const t0 = performance.now();
  try {
    const it = lib.sample(diffusion, (x, t) => model.forward(x, t), shape, { sampler, steps, seed });
    const every = Math.max(1, Math.floor(steps / 10));
    for (;;) {
      const r = lib.noGrad(() => it.next());
      if (r.done) {
        lastSamples = { x: await r.value.data(), shape };
        ($('interp') as HTMLButtonElement).disabled = false;
        break;
      }
      const st = r.value;
      const [xt, x0] = await Promise.all([st.x.data(), st.predX0.data()]);
      drawGrid($('xt'), xt, shape, cols);
      drawGrid($('x0'), x0, shape, cols);
      if (st.step % every === 0 || st.step === st.total)
        strip.push(x0.slice(0, Math.min(n, 8) * shape[1] * shape[2] * shape[3]));
      status(`step ${st.step} / ${st.total} (t = ${st.t}), ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      if (stopRequested) {
        status(`stopped at step ${st.step}`);
        break;
      }
    }
    if (strip.length) {
      const k = Math.min(n, 8),
        per = shape[1] * shape[2] * shape[3];
      const all = new Float32Array(k * strip.length * per);
      for (let s = 0; s < k; s++)
        strip.forEach((row, j) => all.set(row.subarray(s * per, (s + 1) * per), (s * strip.length + j) * per));
      drawGrid($('strip'), all, [k * strip.length, ...shape.slice(1)], strip.length, 2);
    }
    if (!stopRequested)
      status(
        `done: ${n} samples, ${sampler}, ${steps} steps, seed ${seed}, in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    document.body.dataset.sampled = String(Number(document.body.dataset.sampled ?? 0) + 1);
  } catch (e) {
    status(`error: ${(e as Error).message}`);
    throw e;
  } finally {
    ($('sample') as HTMLButtonElement).disabled = false;
    ($('stop') as HTMLButtonElement).disabled = true;
  }
}

/** Reads a dropped or chosen model folder's three files by name. */
async function loadFiles(files: File[]): Promise<void> {
  const by = (n: string) => files.find((f) => f.name === n);
  const cfg = by('config.json'),
    sched = by('scheduler_config.json'),
    w = by('diffusion_pytorch_model.safetensors');
  if (!cfg || !w)
    throw new Error(
      `a model folder needs config.json and diffusion_pytorch_model.safetensors; got ${files.map((f) => f.name).join(', ') || 'no files'}`,
    );
  setModel(
    fromFolder(cfg.webkitRelativePath.split('/')[0] || 'dropped model', {
      config: JSON.parse(await cfg.text()),
      scheduler: sched ? JSON.parse(await sched.text()) : undefined,
      weights: new Uint8Array(await w.arrayBuffer()),
    }),
  );
  status('model loaded');
}

/** Collects the files of dropped items, descending into a dropped folder. */
async function droppedFiles(dt: DataTransfer): Promise<File[]> {
  const out: File[] = [];
  const walk = async (e: FileSystemEntry): Promise<void> => {
    if (e.isFile) out.push(await new Promise<File>((res, rej) => (e as FileSystemFileEntry).file(res, rej)));
    else if (e.isDirectory) {
      const entries = await new Promise<FileSystemEntry[]>((res, rej) =>
        (e as FileSystemDirectoryEntry).createReader().readEntries(res, rej),
      );
      for (const c of entries) await walk(c);
    }
  };
  for (const item of Array.from(dt.items)) {
    const e = item.webkitGetAsEntry();
    if (e) await walk(e);
  }
  return out;
}

/** The paper's Fig. 8: samples a and b encoded to x_t with the same noise, mixed for 8 lambdas, decoded from t. */
async function runInterpolation(): Promise<void> {
  if (!current || !lastSamples) return;
  const { model, diffusion } = current;
  const [, C, H, W] = lastSamples.shape,
    per = C * H * W;
  const num = (id: string) => Number(($(id) as HTMLInputElement).value);
  const a = num('ia'),
    b = num('ib'),
    t = num('it');
  const n = lastSamples.shape[0];
  if (!(a >= 0 && a < n && b >= 0 && b < n)) {
    $('interpStatus').textContent = `samples a and b must be in [0, ${n - 1}]`;
    return;
  }
  const one = (i: number) => lib.ops.fromArray(lastSamples!.x.slice(i * per, (i + 1) * per), [1, C, H, W]);
  const lambdas = Array.from({ length: 8 }, (_, k) => k / 7);
  ($('interp') as HTMLButtonElement).disabled = true;
  $('interpStatus').textContent = `decoding ${t + 1} steps...`;
  const t0 = performance.now();
  try {
    const x = lib.interpolate(diffusion, (xx, tt) => model.forward(xx, tt), one(a), one(b), lambdas, t, 0);
    drawGrid($('interpOut'), await x.data(), [8, C, H, W], 8);
    $('interpStatus').textContent =
      `lambda = 0, 1/7, ..., 1 from t = ${t}, in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  } catch (e) {
    $('interpStatus').textContent = `error: ${(e as Error).message}`;
  } finally {
    ($('interp') as HTMLButtonElement).disabled = false;
  }
}

// ---- training in the tab ----
let trainStop = false;
async function runTraining(): Promise<void> {
  trainStop = false;
  ($('train') as HTMLButtonElement).disabled = true;
  ($('trainStop') as HTMLButtonElement).disabled = false;
  // the training core of `ddpm train` (Algorithm 1 with the paper's recipe), on the tiny preset and T = 100
  const o = {
    ...lib.trainOptionsFrom({
      out: '',
      preset: 'tiny',
      steps: 2000,
      batch: 16,
      lr: 2e-3,
      warmup: 0,
      ema: 0.99,
      emaWarmup: false,
      seed: 0,
    }),
  };
  o.diffusion = { ...o.diffusion, timesteps: 100, betaEnd: 0.2 };
  const st = lib.createTrainState(o);
  const params = [...st.model.params.values()];
  const d = new lib.GaussianDiffusion(o.diffusion);
  // 16 blobs at varying positions
  const N = 16,
    pixels = new Uint8Array(N * 64);
  for (let i = 0; i < N; i++)
    for (let y = 0; y < 8; y++)
      for (let x = 0; x < 8; x++)
        pixels[i * 64 + y * 8 + x] = (y - 2 - (i % 4)) ** 2 + (x - 2 - (i >> 2)) ** 2 <= 3 ? 255 : 0;
  const data = { name: 'blobs', count: N, channels: 1, height: 8, width: 8, pixels };
  const order = new Map<number, Int32Array>();
  const model = st.model,
    ema = st.ema;
  const losses: number[] = [];
  const ctx = ($('loss') as HTMLCanvasElement).getContext('2d')!;
  for (let s = 0; !trainStop && s < o.steps; s++) {
    const m = await lib.trainStep(o, d, st, data, order);
    losses.push(m.loss);
    // the loss curve (log scale)
    ctx.clearRect(0, 0, 400, 160);
    const lo = Math.log(Math.min(...losses)),
      hi = Math.log(Math.max(...losses)) + 1e-9;
    ctx.beginPath();
    losses.forEach((l, i) =>
      ctx.lineTo((i / Math.max(1, losses.length - 1)) * 398 + 1, 158 - ((Math.log(l) - lo) / (hi - lo)) * 156),
    );
    ctx.stroke();
    $('trainStatus').textContent = `step ${s + 1}, loss ${losses[losses.length - 1].toFixed(4)}`;
    if ((s + 1) % 50 === 0) {
      const xs = lib.withValues(params, ema.shadow, () =>
        lib.noGrad(() =>
          lib.sampleAll(d, (x, tt) => model.forward(x, tt), [16, 1, 8, 8], { sampler: 'ddim', steps: 10, seed: 1 }),
        ),
      );
      drawGrid($('trainSamples'), await xs.data(), [16, 1, 8, 8], 8, 4);
    }
  }
  ($('train') as HTMLButtonElement).disabled = false;
  ($('trainStop') as HTMLButtonElement).disabled = true;
}

async function main(): Promise<void> {
  const want = params.get('backend');
  if (want && !['webgpu', 'wasm', 'reference'].includes(want))
    throw new Error(`?backend=${want}: expected webgpu, wasm or reference`);
  const { backend, notes } = await lib.useBestBackend(
    (want ?? undefined) as 'webgpu' | 'wasm' | 'reference' | undefined,
  );
  const info = backend instanceof lib.WebGPUBackend && backend.adapterInfo ? ` (${backend.adapterInfo})` : '';
  $('backend').textContent = `${backend.name}${info}${notes.length ? ` (passed over: ${notes.join('; ')})` : ''}`;
  document.body.dataset.backend = backend.name;
  const sel = $('sampler') as HTMLSelectElement;
  for (const s of lib.SAMPLERS) sel.add(new Option(s, s));
  sel.value = params.get('sampler') ?? 'ddim';
  for (const k of ['steps', 'seed', 'num']) if (params.has(k)) ($(k) as HTMLInputElement).value = params.get(k)!;
  const pick = $('modelPick') as HTMLSelectElement;
  for (const n of await shippedNames()) pick.add(new Option(n, n));
  setModel(await loadShipped(params.get('model') ?? 'mnist'));
  pick.onchange = () => {
    status(`loading ${pick.value}...`);
    void loadShipped(pick.value)
      .then((m) => {
        setModel(m);
        status(`model ${m.name} loaded`);
      })
      .catch((err) => status(`error: ${err.message}`));
  };
  $('sample').onclick = () => void runSampling();
  $('stop').onclick = () => (stopRequested = true);
  $('interp').onclick = () => void runInterpolation();
  $('train').onclick = () => void runTraining();
  $('trainStop').onclick = () => (trainStop = true);
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
      .then(loadFiles)
      .catch((err) => status(`error: ${err.message}`));
  };
  ($('files') as HTMLInputElement).onchange = (e) =>
    void loadFiles(Array.from((e.target as HTMLInputElement).files ?? [])).catch((err) =>
      status(`error: ${err.message}`),
    );
  document.body.dataset.ready = '1';
  if (params.get('auto') !== '0') await runSampling();
}

main().catch((e) => {
  status(`error: ${e.message}`);
  console.error(e);
});
