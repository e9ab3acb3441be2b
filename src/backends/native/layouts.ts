// The native backend's activation-layout bookkeeping: which buffers hold their values in a layout of a convolution
// (nChw16c for f32, NHWC for bf16) rather than plain NCHW, the plain copies made for the kernels that need them, and
// the identities and versions of weight buffers (the addon caches converted weights under them). NativeBackend
// (index.ts) extends NativeLayouts and calls these helpers around every kernel.
import type { Addon } from './addon.js';

/** This backend's buffers: Float32Arrays that the addon reads and writes in place. */
export type Storage = Float32Array;

/**
 * An output buffer left uninitialised (malloc without the zero fill of new Float32Array, which costs 0.5 ms per 6 MB
 * on one thread here), for kernels that write every value of their outputs.
 */
export const out = (n: number): Storage => new Float32Array(Buffer.allocUnsafeSlow(n * 4).buffer, 0, n);

/**
 * Activation layouts of the addon (native/conv.cc): channel-blocked nChw16c (f32 convolutions) and NHWC
 * (bf16).
 */
export const BLOCKED16 = 1;
/** A buffer's layout and the [N, C, H, W] it holds. */
export interface Tag {
  layout: number;
  dims: number[];
}
/** The row-major shape whose order is the buffer's: [N, C/16, H*W, 16] or [N, H*W, C]. */
export const physical = (t: Tag) =>
  t.layout === BLOCKED16
    ? [t.dims[0], t.dims[1] / 16, t.dims[2] * t.dims[3], 16]
    : [t.dims[0], t.dims[2] * t.dims[3], t.dims[1]];
/** The same for a [1|N, C|1, 1, 1] operand broadcast against it. */
export const physicalPerChannel = (t: Tag, s: number[]) =>
  t.layout === BLOCKED16 ? [s[0], s[1] === 1 ? 1 : s[1] / 16, 1, s[1] === 1 ? 1 : 16] : [s[0], 1, s[1]];
export const sameDims = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

export class NativeLayouts {
  protected readonly a: Addon;
  /**
   * Layout tags. A buffer in this map holds [N, C, H, W] in the layout its convolution computed in (nChw16c for f32,
   * NHWC for bf16; the size is unchanged), as the convolution (or its data gradient) left it. Kernels that know the
   * layouts keep them: convolution forward and backward, group norm and its gradient, elementwise ops, per-channel
   * broadcasts and their reductions, concatenation and channel slices, upsampling and its gradient. Every other
   * kernel, and every read, sees the plain NCHW copy made by plain() (kept with the buffer, so a second read or a
   * second plain consumer costs nothing). In-place adds and scales keep a buffer's layout (gradient accumulation);
   * Adam and EMA run on plain buffers (weights, optimiser state); write() makes a buffer plain.
   */
  protected readonly blocked = new WeakMap<Storage, Tag>();
  private readonly plainCopies = new WeakMap<Storage, Storage>();
  /**
   * Identities and versions of weight buffers: the addon keeps each convolution's weights in its own layout (and in
   * bf16, converted once) under (id, version); every in-place write bumps the version, so a cached copy is never
   * stale, and ids are never reused.
   */
  private readonly ids = new WeakMap<Storage, number>();
  protected readonly versions = new WeakMap<Storage, number>();
  private nextId = 1;

  constructor(addon: Addon) {
    this.a = addon;
  }

  protected idOf(w: Storage): number {
    let id = this.ids.get(w);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(w, id);
    }
    return id;
  }
  /** Called by every kernel that writes a buffer in place. */
  protected touched(x: Storage): void {
    this.versions.set(x, (this.versions.get(x) ?? 0) + 1);
    this.plainCopies.delete(x);
  }

  /** x in NCHW (x itself when it is plain; a conversion made once per blocked buffer otherwise). */
  protected plain(x: Storage): Storage {
    const t = this.blocked.get(x);
    if (!t) return x;
    let y = this.plainCopies.get(x);
    if (!y) {
      y = out(x.length);
      this.a.relayout(x, t.dims, t.layout, 0, y);
      this.plainCopies.set(x, y);
    }
    return y;
  }
  /** x in the layout of tag t (x itself when it is already; converted otherwise). */
  protected inLayout(x: Storage, t: Tag): Storage {
    const have = this.blocked.get(x);
    if (have && have.layout === t.layout && sameDims(have.dims, t.dims)) return x;
    const y = out(x.length);
    this.a.relayout(this.plain(x), t.dims, 0, t.layout, y);
    return this.tag(y, t);
  }
  protected tag(y: Storage, t: Tag | undefined): Storage {
    if (t) this.blocked.set(y, t);
    return y;
  }
  /** x's tag when x is in a layout of ours and holds the 4-D shape xs. */
  protected blockedAs(x: Storage, xs: number[]): Tag | undefined {
    const t = this.blocked.get(x);
    return t && sameDims(t.dims, xs) ? t : undefined;
  }
  /** Makes an in-place target plain (Adam and EMA targets are weights and optimiser state, plain already). */
  protected makePlain(x: Storage): void {
    if (!this.blocked.has(x)) return;
    x.set(this.plain(x));
    this.blocked.delete(x);
    this.touched(x);
  }
  /** Whether x is stored blocked (tests and benchmarks). */
  isBlocked(x: unknown): boolean {
    return x instanceof Float32Array && this.blocked.has(x);
  }
}
