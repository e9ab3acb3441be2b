// The playground's model worker: the network and every long computation run here, off the page's main thread, so that
// the page repaints and answers input while they run. The page (remote.ts) asks it to pick a backend, to load a model
// folder, and to run jobs: sampling, RePaint, SDEdit, interpolation and training in the tab. A job sends each step's
// images back as it goes, and gives the worker's event loop a turn after every step, so that a Stop sent meanwhile
// ends it after that step. Jobs run one after another.
import * as lib from '../src/browser.js';
import { type FolderFiles, parseFolder } from './folder.js';
import type { DenoiserSpec, Job, JobStep, ToPage, ToWorker } from './protocol.js';
import { trainSteps } from './train-job.js';

let model: lib.UNet | null = null;
let loaded: ReturnType<typeof parseFolder> | null = null;
const stops = new Set<number>();
let queue: Promise<void> = Promise.resolve();

const post = (m: ToPage, transfer: Transferable[] = []) => (self as unknown as Worker).postMessage(m, transfer);
/** A turn of this worker's event loop (a task, not a microtask), in which a Stop message is received. */
const turn = () => new Promise<void>((r) => setTimeout(r, 0));

function need(): { model: lib.UNet; m: NonNullable<typeof loaded> } {
  if (!model || !loaded) throw new Error('no model is loaded');
  return { model, m: loaded };
}

function denoiser(spec: DenoiserSpec): lib.DenoiseFn {
  const { model: net, m } = need();
  if (!spec.conditional) return (x, t) => net.forward(x, t);
  return lib.classDenoiser(net, m.cfg, spec.classes, spec.guidance, spec.n)!(0, spec.batch);
}

const tensor = (x: Float32Array, shape: number[]) => lib.ops.fromArray(x, shape);

/** The library generator a job runs. */
function generator(job: Job): Generator<unknown, unknown> {
  const d = need().m.diffusion;
  switch (job.kind) {
    case 'sample': {
      const { start, ...opts } = job.opts;
      const s = start ? { step: start.step, x: tensor(start.x, job.shape) } : undefined;
      return lib.sample(d, denoiser(job.denoiser), job.shape, { ...opts, start: s });
    }
    case 'inpaint':
      return lib.inpaint(
        d,
        denoiser(job.denoiser),
        tensor(job.known, job.shape),
        tensor(job.mask, [1, 1, job.shape[2], job.shape[3]]),
        job.opts,
      );
    case 'sdedit':
      return lib.sdedit(d, denoiser(job.denoiser), tensor(job.x0, job.shape), job.strength, job.opts);
    case 'interpolate': {
      const one = [1, ...job.shape.slice(1)];
      const { a, b, lambdas, t, seed } = job;
      return lib.interpolationSteps(d, denoiser(job.denoiser), tensor(a, one), tensor(b, one), lambdas, t, seed);
    }
    case 'train':
      throw new Error('training runs in train()');
  }
}

/** Training: its steps need gradients, and each is asynchronous (its loss is read back). */
async function train(id: number, total: number): Promise<void> {
  const it = trainSteps(total);
  for (;;) {
    const r = await it.next();
    if (r.done) return post({ id, type: 'done', result: null, stopped: false });
    post({ id, type: 'step', step: r.value });
    await turn();
    if (stops.has(id)) return post({ id, type: 'done', result: null, stopped: true });
  }
}

const read = async (x: unknown) => (x instanceof lib.Tensor ? await x.data() : undefined);

/** Runs a job: one message per step, and a last one with its result (null when stopped). */
async function run(id: number, job: Job): Promise<void> {
  if (job.kind === 'train') return train(id, job.total);
  const it = generator(job);
  let steps = 0;
  let last: unknown;
  for (;;) {
    const r = lib.noGrad(() => it.next());
    if (r.done) {
      const x = await read(r.value);
      return post({ id, type: 'done', result: x ?? null, stopped: false }, x ? [x.buffer] : []);
    }
    const s = r.value as { step: number; total: number; t?: number; x?: unknown; predX0?: unknown };
    const step: JobStep = { step: s.step, total: s.total, t: s.t };
    const [x, x0] = await Promise.all([read(s.x), read(s.predX0)]);
    step.x = x;
    step.predX0 = x0;
    last = s.x;
    post({ id, type: 'step', step });
    steps++;
    if (job.kind === 'sample' && job.stopAfter !== undefined && steps >= job.stopAfter) {
      const y = await read(last);
      return post({ id, type: 'done', result: y ?? null, stopped: false });
    }
    await turn();
    if (stops.has(id)) return post({ id, type: 'done', result: null, stopped: true });
  }
}

async function handle(msg: ToWorker): Promise<void> {
  const { id } = msg;
  try {
    if (msg.type === 'init') {
      const { backend, notes } = await lib.useBestBackend(msg.prefer);
      const info = backend instanceof lib.WebGPUBackend && backend.adapterInfo ? backend.adapterInfo : '';
      const fallback = backend instanceof lib.WebGPUBackend && backend.isFallbackAdapter;
      post({ id, type: 'ready', backend: backend.name, adapterInfo: info, fallback, notes });
    } else if (msg.type === 'load') {
      const m = parseFolder(msg.name, msg.source, msg.files as FolderFiles, msg.paths);
      const net = new lib.UNet(m.cfg);
      lib.loadWeights(net, m.weights, msg.name);
      [model, loaded] = [net, m];
      post({ id, type: 'done', result: null, stopped: false, parameterCount: net.parameterCount });
    } else if (msg.type === 'run') await run(id, msg.job);
  } catch (e) {
    post({ id, type: 'error', message: e instanceof Error ? e.message : String(e) });
  } finally {
    stops.delete(id);
  }
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const msg = e.data;
  if (msg.type === 'stop') {
    stops.add(msg.id);
    return;
  }
  queue = queue.then(() => handle(msg));
};
