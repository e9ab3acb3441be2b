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
  /** The backend's buffer handle: engine-internal (code above src/engine uses data(), dataSync() and write()). */
  storage: Storage;
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
    this.storage = storage;
    this.backend = backend;
    this.requiresGrad = requiresGrad;
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
