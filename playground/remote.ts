// The page's side of its model workers (worker.ts): the generating actions share one worker, which holds the loaded
// model; training in the tab has a second one, so that it can run beside them. A job is an async generator of its
// steps (their images as `{ data() }`, as the library's tensors read); returning from it early (Stop) asks the worker
// to end the job after its current step, and waits until it has, so that the next job starts at once.
import type { FolderFiles } from './folder.js';
import type { Job, JobStep, ToPage, ToWorker } from './protocol.js';

/** An image batch that has come back from the worker, read as a tensor is. */
export interface Images {
  data(): Promise<Float32Array>;
}
const images = (x: Float32Array): Images => ({ data: async () => x });

/** A step as the page's actions see it. */
export interface Step extends Omit<JobStep, 'x' | 'predX0'> {
  x: Images;
  predX0: Images;
  hasPredX0: boolean;
}

type Backend = 'webgpu' | 'wasm' | 'reference';
/** What the worker runs on. */
export interface WorkerBackend {
  name: string;
  adapterInfo: string;
  fallback: boolean;
  notes: string[];
}

class ModelWorker {
  private worker: Worker | null = null;
  private next = 1;
  private readonly handlers = new Map<number, (m: ToPage) => void>();
  /** the jobs sent and not yet ended */
  private readonly active = new Set<number>();
  backend: WorkerBackend | null = null;

  constructor(private readonly url: string) {}

  private send(m: ToWorker): void {
    if (!this.worker) throw new Error('the model worker has not started');
    this.worker.postMessage(m);
  }

  /** Starts the worker and its backend (`prefer` first when it works, see useBestBackend). */
  async init(prefer?: Backend): Promise<WorkerBackend> {
    const w = new Worker(this.url, { type: 'module' });
    this.worker = w;
    w.onmessage = (e: MessageEvent<ToPage>) => this.handlers.get(e.data.id)?.(e.data);
    const failed = new Promise<never>((_, reject) => {
      w.onerror = (e) => {
        e.preventDefault();
        const why = new Error(`the model worker failed: ${e.message || 'it could not start'}`);
        for (const h of this.handlers.values()) h({ id: 0, type: 'error', message: why.message });
        reject(why);
      };
    });
    failed.catch(() => {}); // said through the handlers and the calls that wait
    const id = this.next++;
    const ready = new Promise<WorkerBackend>((resolve, reject) =>
      this.handlers.set(id, (m) => {
        this.handlers.delete(id);
        if (m.type === 'ready')
          resolve({ name: m.backend, adapterInfo: m.adapterInfo, fallback: m.fallback, notes: m.notes });
        else reject(new Error(m.type === 'error' ? m.message : 'the model worker did not start'));
      }),
    );
    this.send({ id, type: 'init', prefer });
    this.backend = await Promise.race([ready, failed]);
    return this.backend;
  }

  /** Builds the network of a folder in the worker; returns its parameter count. */
  load(
    name: string,
    source: 'shipped' | 'files',
    files: FolderFiles,
    paths?: { config: string; scheduler: string },
  ): Promise<number> {
    const id = this.next++;
    return new Promise<number>((resolve, reject) => {
      this.handlers.set(id, (m) => {
        this.handlers.delete(id);
        if (m.type === 'done') resolve(m.parameterCount ?? 0);
        else reject(new Error(m.type === 'error' ? m.message : 'the model worker answered out of turn'));
      });
      this.send({ id, type: 'load', name, source, files, paths });
    });
  }

  /** Runs a job; yields its steps, returns its result (null when it was stopped). */
  async *run(job: Job): AsyncGenerator<Step, Images | null> {
    const id = this.next++;
    const queue: ToPage[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    this.handlers.set(id, (m) => {
      queue.push(m);
      wake?.();
      wake = null;
    });
    const take = async () => {
      while (!queue.length) await new Promise<void>((r) => (wake = r));
      const m = queue.shift()!;
      if (m.type !== 'step') finished = true;
      return m;
    };
    this.send({ id, type: 'run', job });
    this.active.add(id);
    try {
      for (;;) {
        const m = await take();
        if (m.type === 'error') throw new Error(m.message);
        if (m.type === 'done') return m.stopped || !m.result ? null : images(m.result);
        if (m.type !== 'step') throw new Error('the model worker answered out of turn');
        const { x, predX0, ...rest } = m.step;
        const empty = new Float32Array(0);
        yield { ...rest, x: images(x ?? empty), predX0: images(predX0 ?? x ?? empty), hasPredX0: !!predX0 };
      }
    } finally {
      // returned early (Stop, or the page's step handler failed): end the job there and wait for its end
      if (!finished) {
        this.send({ id, type: 'stop' });
        while (!finished) await take().catch(() => (finished = true));
      }
      this.handlers.delete(id);
      this.active.delete(id);
    }
  }

  /** Stop, at once: the worker ends its jobs after the step each is in (their generators then return null). */
  stop(): void {
    for (const id of this.active) this.send({ id, type: 'stop' });
  }
}

const url = new URL('worker.js', import.meta.url).href;
/** The worker of the generating actions (it holds the loaded model). */
export const remote = new ModelWorker(url);
/** The worker that trains the tiny preset in the tab. */
export const trainer = new ModelWorker(url);
