// Tensors and reverse-mode automatic differentiation.
// The engine has no default backend: the entry point installs one (useBackend in Node, or setBackend).
import type { Backend, Storage } from './backend.js';

export interface GradNode {
  op: string;
  inputs: Tensor[];
  /** Given dL/d(output), returns dL/d(input) for each input (null where an input needs no gradient). */
  backward: (grad: Tensor) => (Tensor | null)[];
}

interface EngineState {
  backend: Backend | null;
  gradEnabled: boolean;
  checkNumerics: boolean;
}

const state: EngineState = { backend: null, gradEnabled: true, checkNumerics: false };

export function getBackend(): Backend {
  if (!state.backend)
    throw new Error(
      'engine: no backend installed; call useBackend() (Node) or setBackend(new ReferenceBackend()) first',
    );
  return state.backend;
}

// ---- scopes: memory released by construction ----
// A scope collects the buffers allocated while it is open (each the first time a tensor wraps it). Closing it releases
// every one that no kept tensor holds: the backend takes the buffer back at once (WebGPU: into its pool; CPU backends
// leave it to the collector), and any tensor on it refuses further use. Kept buffers pass to the enclosing scope. The
// sampling driver closes one per step and the training step one per step, so a long loop holds a bounded set of
// buffers whatever the collector's pace.

/** The buffers a scope owns, and the tensors made while it was open. */
export interface Scope {
  storages: Storage[];
  tensors: Tensor[];
}
const scopes: Scope[] = [];
/** Every buffer some tensor has wrapped: a tensor on one of these is a view (reshape, detach), not a new buffer. */
let wrapped = new WeakSet<object>();
/** The buffers released: every tensor on one (views included) refuses further use. */
let releasedBuffers = new WeakSet<object>();

/** Opens a scope (close it with closeScope, in a finally). */
export function openScope(): Scope {
  const s: Scope = { storages: [], tensors: [] };
  scopes.push(s);
  return s;
}

/**
 * Closes the innermost scope, which must be `s`: releases the buffers it owns that no tensor of `keep` holds. Returns
 * the kept tensors whose buffers it owned (now the enclosing scope's, or nobody's outside any scope).
 */
export function closeScope(s: Scope, keep: Tensor[]): Tensor[] {
  const at = scopes.lastIndexOf(s);
  if (at < 0) throw new Error('closeScope: this scope is not open');
  scopes.splice(at, 1); // innermost as a rule; an outer one when asynchronous work interleaved
  const parent = scopes[at - 1];
  const kept = new Set<Storage>(keep.map((t) => t.storage));
  const owned = new Set<Storage>(s.storages);
  for (const t of s.tensors) {
    const st = t.rawStorage();
    if (!owned.has(st)) continue;
    if (kept.has(st)) parent?.tensors.push(t);
    else t.markReleased();
  }
  for (const st of s.storages) {
    if (kept.has(st)) parent?.storages.push(st);
    else getBackend().release?.(st);
  }
  return keep.filter((t) => owned.has(t.storage));
}

/** Runs fn in a scope that keeps what `keep` picks from its result (by default: nothing). */
export function withScope<T>(fn: () => T, keep: (r: T) => Tensor[] = () => []): T {
  return scoped(fn, keep).r;
}

/** fn in a scope (released whatever fn throws); its result and the kept tensors whose buffers the scope made. */
function scoped<T>(fn: () => T, keep: (r: T) => Tensor[]): { r: T; made: Tensor[] } {
  const s = openScope();
  let r: T;
  try {
    r = fn();
  } catch (e) {
    closeScope(s, []);
    throw e;
  }
  return { r, made: closeScope(s, keep(r)) };
}

/**
 * The memory of a loop whose steps carry state (a sampler's x_t and history): each step's temporaries go when it
 * ends, and the tensors it kept go once a later step no longer carries them. A step's tensors live until the next.
 */
export class LoopMemory {
  private owned: Tensor[] = [];

  /** Runs one step; keep: the tensors of its result to keep for now; carried: those the next step still needs. */
  step<T>(fn: () => T, keep: (r: T) => Tensor[], carried: (r: T) => Tensor[] = keep): T {
    const { r, made } = scoped(fn, keep);
    const now = new Set(carried(r).map((t) => t.storage));
    release(this.owned.filter((t) => !now.has(t.rawStorage())));
    this.owned = [...made, ...this.owned.filter((t) => now.has(t.rawStorage()))];
    return r;
  }
}

/** Releases tensors now (their buffers return to the backend); each must not be used again, nor any view of it. */
export function release(ts: Tensor[]): void {
  const done = new Set<Storage>();
  for (const t of ts) {
    const st = t.rawStorage();
    if (t.released || done.has(st)) continue;
    done.add(st);
    t.markReleased();
    getBackend().release?.(st);
  }
}

/** Swaps the values of two lists of tensors of equal shapes (the EMA weights in and out of a model), on the device. */
export function swapValues(a: Tensor[], b: Tensor[]): void {
  if (a.length !== b.length) throw new Error(`swapValues: ${a.length} tensors vs ${b.length}`);
  a.forEach((x, i) => {
    const y = b[i];
    if (x.size !== y.size) throw new Error(`swapValues: tensor ${i} has ${x.size} values vs ${y.size}`);
    [x.storage, y.storage] = [y.storage, x.storage];
  });
}

export function setBackend(b: Backend): void {
  state.backend = b;
  wrapped = new WeakSet<object>();
  releasedBuffers = new WeakSet<object>();
}

/** Runs fn without recording operations for autodiff (sampling, evaluation, optimiser updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = state.gradEnabled;
  state.gradEnabled = false;
  try {
    return fn();
  } finally {
    state.gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return state.gradEnabled;
}

/** When on, every op scans its output and throws naming the first op that produced NaN or Inf. */
export function setCheckNumerics(on: boolean): void {
  state.checkNumerics = on;
}

export function shapeSize(shape: readonly number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

export class Tensor {
  readonly shape: number[];
  readonly size: number;
  private buffer: Storage;
  readonly backend: Backend;
  requiresGrad: boolean;
  grad: Tensor | null = null;
  node: GradNode | null = null;

  /** Wraps a backend buffer (engine-internal; elsewhere use ops.fromArray, which uploads host values). */
  constructor(storage: Storage, shape: readonly number[], requiresGrad = false, backend: Backend = getBackend()) {
    for (const d of shape)
      if (!Number.isInteger(d) || d < 0) throw new Error(`tensor: invalid shape ${fmtShape(shape)}`);
    const size = shapeSize(shape);
    if (storage instanceof Int32Array || storage instanceof Uint8Array || Array.isArray(storage))
      throw new Error(
        `tensor: storage must be a backend buffer (a Float32Array on CPU backends), got ` +
          `${Object.prototype.toString.call(storage)}; use ops.fromArray for host values`,
      );
    const n = backend.size(storage);
    if (n !== size) throw new Error(`tensor: shape ${fmtShape(shape)} needs ${size} values, storage has ${n}`);
    this.shape = [...shape];
    this.size = size;
    this.buffer = storage;
    this.backend = backend;
    this.requiresGrad = requiresGrad;
    const scope = scopes[scopes.length - 1];
    if (scope) scope.tensors.push(this);
    if (typeof storage === 'object' && storage !== null && !wrapped.has(storage)) {
      wrapped.add(storage);
      scope?.storages.push(storage);
    }
  }

  /** The backend's buffer handle: engine-internal (code above src/engine uses data(), dataSync() and write()). */
  get storage(): Storage {
    if (this.released)
      throw new Error(
        `tensor ${fmtShape(this.shape)}: used after its buffer was released by a scope (a sampler or training ` +
          "step's tensors live until the next step: read them with await t.data() before resuming)",
      );
    return this.buffer;
  }
  /** Whether a scope released its buffer (closeScope, release): any further use throws. */
  get released(): boolean {
    return typeof this.buffer === 'object' && this.buffer !== null && releasedBuffers.has(this.buffer);
  }
  set storage(s: Storage) {
    this.buffer = s;
  }
  /** The buffer without the released check (scope bookkeeping). */
  rawStorage(): Storage {
    return this.buffer;
  }
  markReleased(): void {
    if (typeof this.buffer === 'object' && this.buffer !== null) releasedBuffers.add(this.buffer);
  }

  /** Reads the values back to JavaScript (a copy), once the work that produces them has finished. */
  async data(): Promise<Float32Array> {
    return this.backend.read(this.storage);
  }

  /** Synchronous read for CPU backends (may be the buffer itself: treat it as read-only). Device backends throw. */
  dataSync(): Float32Array {
    return this.backend.readSync(this.storage);
  }

  /** Overwrites the values in place (weights loaded from a file, an initialisation). */
  write(values: ArrayLike<number>): void {
    if (values.length !== this.size)
      throw new Error(`write: ${values.length} values for a tensor of shape ${fmtShape(this.shape)}`);
    this.backend.write(this.storage, values instanceof Float32Array ? values : Float32Array.from(values));
  }

  item(): number {
    if (this.size !== 1)
      throw new Error(`item: tensor of shape ${fmtShape(this.shape)} has ${this.size} values, expected 1`);
    return this.dataSync()[0];
  }

  /** A tensor sharing this one's values but cut off from the autodiff graph. */
  detach(): Tensor {
    return new Tensor(this.storage, this.shape, false, this.backend);
  }

  /** Reverse-mode autodiff: accumulates dL/dx into .grad of every leaf x with requiresGrad. */
  backward(seed?: Tensor): void {
    if (!seed && this.size !== 1)
      throw new Error(
        `backward: output has shape ${fmtShape(this.shape)}; pass the output gradient or reduce to a scalar`,
      );
    const order: Tensor[] = [];
    const seen = new Set<Tensor>();
    // iterative depth-first topological order
    const stack: [Tensor, number][] = [[this, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [t, i] = top;
      if (i === 0 && seen.has(t)) {
        stack.pop();
        continue;
      }
      seen.add(t);
      const inputs = t.node ? t.node.inputs : [];
      if (i < inputs.length) {
        top[1]++;
        const c = inputs[i];
        if (!seen.has(c) && (c.node || c.requiresGrad)) stack.push([c, 0]);
      } else {
        stack.pop();
        order.push(t);
      }
    }
    const grads = new Map<Tensor, Tensor>();
    grads.set(this, seed ?? new Tensor(this.backend.upload(Float32Array.of(1)), this.shape, false, this.backend));
    noGrad(() => {
      for (let k = order.length - 1; k >= 0; k--) {
        const t = order[k];
        const g = grads.get(t);
        if (!g) continue;
        if (!t.node) {
          if (t.requiresGrad) {
            if (t.grad) t.backend.addInPlace(t.grad.storage, g.storage);
            else t.grad = new Tensor(t.backend.copy(g.storage), t.shape);
          }
          continue;
        }
        grads.delete(t); // free intermediate gradients as soon as they are used
        const gin = t.node.backward(g);
        t.node.inputs.forEach((inp, j) => {
          const gi = gin[j];
          if (!gi || !(inp.node || inp.requiresGrad)) return;
          if (gi.size !== inp.size)
            throw new Error(
              `backward of ${t.node!.op}: gradient ${fmtShape(gi.shape)} for input ${fmtShape(inp.shape)}`,
            );
          const prev = grads.get(inp);
          if (prev) {
            // a new buffer (either gradient may be shared with another tensor), in one pass
            grads.set(
              inp,
              new Tensor(
                inp.backend.binary('add', prev.storage, inp.shape, gi.storage, inp.shape, inp.shape),
                inp.shape,
              ),
            );
          } else grads.set(inp, gi);
        });
      }
    });
  }
}

/** Wraps a freshly computed storage as the output of an op, recording how to differentiate it. */
export function makeResult(
  op: string,
  storage: Storage,
  shape: readonly number[],
  inputs: Tensor[],
  backward: GradNode['backward'],
): Tensor {
  const out = new Tensor(storage, shape);
  if (state.checkNumerics) {
    // a readback per op: a debugging mode
    const v = out.dataSync();
    for (let i = 0; i < v.length; i++)
      if (!Number.isFinite(v[i]))
        throw new Error(`check numerics: ${op} produced ${v[i]} at index ${i} of output ${fmtShape(shape)}`);
  }
  if (state.gradEnabled && inputs.some((t) => t.requiresGrad || t.node)) out.node = { op, inputs, backward };
  return out;
}
