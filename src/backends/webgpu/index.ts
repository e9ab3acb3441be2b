/// <reference types="@webgpu/types" />
// The WebGPU backend: every kernel of the engine in WGSL (kernels.ts), forward and backward, on one GPUDevice. It runs
// wherever WebGPU does: a browser tab (navigator.gpu) or Node through the `webgpu` package (src/backends/select.ts).
//
// Memory: a buffer handle owns one GPUBuffer. When a handle becomes unreachable its buffer returns to a pool keyed by
// size (a FinalizationRegistry), so a sampling or training loop reuses buffers instead of allocating. Work is
// recorded into one command encoder and submitted when a value is read, written or uploaded (queue writes must not
// overtake recorded work) or after FLUSH_EVERY dispatches. Each dispatch's parameters sit in a 256-byte slot of a
// parameter arena that is written while mapped and unmapped at submit. Nothing is read back unless read() is called:
// a training step runs without a readback.
//
// Random numbers are drawn on the host by the engine (src/engine/random.ts) and uploaded, so every backend sees the
// same Philox words and sample i gets the same noise everywhere.
import {
  type AdamHyper,
  type Backend,
  type BinaryOp,
  type ConvParams,
  type UnaryOp,
  convOutSize,
} from '../../engine/backend.js';
import * as K from './kernels.js';

/** A WebGPU buffer handle: n float32 values in buf. */
export interface GpuStorage {
  buf: GPUBuffer;
  n: number;
}

// numeric flags (the GPUBufferUsage / GPUMapMode globals are not defined in Node unless installed)
const USAGE_MAP_READ = 0x1,
  USAGE_COPY_SRC = 0x4,
  USAGE_COPY_DST = 0x8,
  USAGE_STORAGE = 0x80;
const MAP_READ = 0x1;
const STAGE_COMPUTE = 0x4;
const DATA_USAGE = USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST;
const SLOT_BYTES = 256; // minStorageBufferOffsetAlignment's largest allowed value
const FLUSH_EVERY = 64;
const POOL_MAX_BYTES = 2 ** 30;

interface Kernel {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

/** Workgroup counts for `groups` workgroups, split over x and y when more than 65,535. */
function grid(groups: number): [number, number] {
  if (groups <= 65535) return [groups, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}

const f32bits = (() => {
  const f = new Float32Array(1),
    u = new Uint32Array(f.buffer);
  return (v: number) => {
    f[0] = v;
    return u[0];
  };
})();

function rowMajorStrides(shape: number[]): number[] {
  const st = new Array<number>(shape.length).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

/**
 * Merges adjacent dimensions that every stride list walks contiguously (and drops size-1 ones), so index decoding in
 * the kernels loops over as few dimensions as possible: a same-shape elementwise op becomes rank 1, a bias add rank 2-3.
 */
function collapse(shape: number[], strides: number[][]): { shape: number[]; strides: number[][] } {
  const sh: number[] = [],
    st: number[][] = strides.map(() => []);
  shape.forEach((d, i) => {
    if (d === 1) return;
    const k = sh.length - 1;
    if (k >= 0 && strides.every((s, j) => st[j][k] === s[i] * d)) {
      sh[k] *= d;
      strides.forEach((s, j) => (st[j][k] = s[i]));
    } else {
      sh.push(d);
      strides.forEach((s, j) => st[j].push(s[i]));
    }
  });
  if (!sh.length) return { shape: [1], strides: strides.map(() => [0]) };
  if (sh.length > K.MAX_RANK) throw new Error(`webgpu: rank ${sh.length} above ${K.MAX_RANK}`);
  return { shape: sh, strides: st };
}

/** A list padded to MAX_RANK entries (the kernels read the first `rank`). */
const fill6 = (v: number[], fill: number) => [...v, ...new Array<number>(K.MAX_RANK - v.length).fill(fill)];

export class WebGPUBackend implements Backend<GpuStorage> {
  readonly name = 'webgpu';
  private readonly kernels = new Map<string, Kernel>();
  private readonly pool = new Map<number, GPUBuffer[]>();
  private pooledBytes = 0;
  private created = 0;
  private allocations = 0;
  private readonly registry: FinalizationRegistry<GPUBuffer>;
  private enc: GPUCommandEncoder | null = null;
  /** the open compute pass: consecutive dispatches share one (Dawn orders them by their buffer usage) */
  private pass: GPUComputePassEncoder | null = null;
  private arena: GPUBuffer | null = null;
  private arenaWords: Uint32Array | null = null;
  private dispatches = 0;
  private lost: string | null = null;
  /** The first uncaptured validation error since the last read (reported by the next read). */
  private error: string | null = null;

  /**
   * adapterInfo: a description of the adapter, for `info` and the playground. gpu: the GPU object the device came
   * from, held so that it lives as long as the backend (in Node, Dawn stops processing events when it is collected).
   */
  constructor(
    readonly device: GPUDevice,
    readonly adapterInfo = '',
    readonly gpu: GPU | null = null,
    readonly isFallbackAdapter = false,
  ) {
    this.registry = new FinalizationRegistry((buf) => this.recycle(buf));
    device.lost?.then((info) => {
      this.lost = info.message || info.reason || 'device lost';
    });
    device.onuncapturederror = (e) => {
      this.error ??= e.error.message;
    };
  }

  // ---- memory ----

  private recycle(buf: GPUBuffer): void {
    const bytes = buf.size;
    if (this.pooledBytes + bytes > POOL_MAX_BYTES) {
      buf.destroy();
      return;
    }
    let list = this.pool.get(bytes);
    if (!list) {
      list = [];
      this.pool.set(bytes, list);
    }
    list.push(buf);
    this.pooledBytes += bytes;
  }

  private alloc(n: number): GpuStorage {
    if (this.lost) throw new Error(`webgpu: the device is lost (${this.lost})`);
    const bytes = Math.max(n, 1) * 4;
    const list = this.pool.get(bytes);
    let buf = list?.pop();
    this.allocations++;
    if (buf) this.pooledBytes -= bytes;
    else {
      buf = this.device.createBuffer({ size: bytes, usage: DATA_USAGE });
      this.created++;
    }
    const h: GpuStorage = { buf, n };
    this.registry.register(h, buf);
    return h;
  }

  upload(values: Float32Array): GpuStorage {
    const h = this.alloc(values.length);
    this.write(h, values);
    return h;
  }
  zeros(n: number): GpuStorage {
    const h = this.alloc(n);
    this.encoder().clearBuffer(h.buf);
    return h;
  }
  size(x: GpuStorage): number {
    return x.n;
  }
  async read(x: GpuStorage): Promise<Float32Array> {
    const out = new Float32Array(x.n);
    if (x.n === 0) return out;
    const staging = this.device.createBuffer({ size: x.n * 4, usage: USAGE_MAP_READ | USAGE_COPY_DST });
    this.encoder().copyBufferToBuffer(x.buf, 0, staging, 0, x.n * 4);
    this.flush();
    await staging.mapAsync(MAP_READ);
    out.set(new Float32Array(staging.getMappedRange()));
    staging.unmap();
    staging.destroy();
    if (this.lost) throw new Error(`webgpu: the device is lost (${this.lost})`);
    if (this.error) {
      const e = this.error;
      this.error = null;
      throw new Error(`webgpu: a kernel failed: ${e}`);
    }
    return out;
  }
  readSync(): Float32Array {
    throw new Error(
      'webgpu: values live on the GPU; read them with `await tensor.data()` (dataSync is for the CPU backends)',
    );
  }
  write(x: GpuStorage, values: Float32Array): void {
    if (values.length !== x.n) throw new Error(`write: ${values.length} values for a buffer of ${x.n}`);
    if (!x.n) return;
    this.flush(); // recorded work that reads this buffer must run before the queue write
    this.device.queue.writeBuffer(x.buf, 0, values.buffer, values.byteOffset, values.byteLength);
  }
  copy(x: GpuStorage): GpuStorage {
    const y = this.alloc(x.n);
    if (x.n) this.encoder().copyBufferToBuffer(x.buf, 0, y.buf, 0, x.n * 4);
    return y;
  }

  /** What `ddpm info` shows: the adapter, whether it is a software one, and the buffer pool's counts. */
  get info(): { adapter: string; software: boolean; allocations: number; created: number; pooledBytes: number } {
    return { adapter: this.adapterInfo, software: this.isFallbackAdapter, ...this.stats() };
  }

  /** Buffer handles handed out, GPU buffers created for them (the rest came from the pool), and bytes now pooled. */
  stats(): { allocations: number; created: number; pooledBytes: number } {
    return { allocations: this.allocations, created: this.created, pooledBytes: this.pooledBytes };
  }

  /** Submits the recorded work. */
  flush(): void {
    if (!this.enc) return;
    this.endPass();
    this.arena!.unmap();
    this.device.queue.submit([this.enc.finish()]);
    this.arena!.destroy(); // freed once the submitted work is done
    this.enc = null;
    this.arena = null;
    this.arenaWords = null;
    this.dispatches = 0;
  }

  /** Waits until all submitted work has finished. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /** The command encoder, for copies and clears (which cannot sit inside a compute pass). */
  private encoder(): GPUCommandEncoder {
    this.endPass();
    return this.recorder();
  }

  private recorder(): GPUCommandEncoder {
    if (!this.enc) {
      this.enc = this.device.createCommandEncoder();
      this.arena = this.device.createBuffer({
        size: SLOT_BYTES * FLUSH_EVERY,
        usage: USAGE_STORAGE,
        mappedAtCreation: true,
      });
      this.arenaWords = new Uint32Array(this.arena.getMappedRange());
    }
    return this.enc;
  }

  private kernel(key: string, source: () => string, outputs: number, inputs: number): Kernel {
    let k = this.kernels.get(key);
    if (!k) {
      const entries: GPUBindGroupLayoutEntry[] = [
        { binding: 0, visibility: STAGE_COMPUTE, buffer: { type: 'read-only-storage' } },
      ];
      for (let i = 0; i < inputs + outputs; i++)
        entries.push({
          binding: i + 1,
          visibility: STAGE_COMPUTE,
          buffer: { type: i < inputs ? 'read-only-storage' : 'storage' },
        });
      const layout = this.device.createBindGroupLayout({ entries });
      const module = this.device.createShaderModule({ code: source() });
      const pipeline = this.device.createComputePipeline({
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: 'main' },
      });
      k = { pipeline, layout };
      this.kernels.set(key, k);
    }
    return k;
  }

  /**
   * Records one dispatch: params (u32 words; floats already bit-cast), the input buffers then the output buffers (in
   * the kernel's binding order), and the workgroup counts.
   */
  private run(
    key: string,
    source: () => string,
    params: number[],
    inputs: GpuStorage[],
    outputs: GpuStorage[],
    groups: [number, number, number],
  ): void {
    if (groups[0] === 0 || groups[1] === 0 || groups[2] === 0) return;
    if (params.length > SLOT_BYTES / 4) throw new Error(`webgpu: ${key}: ${params.length} parameters`);
    const k = this.kernel(key, source, outputs.length, inputs.length);
    const enc = this.recorder();
    const slot = this.dispatches++;
    this.arenaWords!.set(params, slot * (SLOT_BYTES / 4));
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: this.arena!, offset: slot * SLOT_BYTES, size: SLOT_BYTES } },
    ];
    [...inputs, ...outputs].forEach((s, i) => entries.push({ binding: i + 1, resource: { buffer: s.buf } }));
    this.pass ??= enc.beginComputePass();
    this.pass.setPipeline(k.pipeline);
    this.pass.setBindGroup(0, this.device.createBindGroup({ layout: k.layout, entries }));
    this.pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    if (this.dispatches >= FLUSH_EVERY) this.flush();
  }

  /** An elementwise kernel over n values. */
  private each(
    key: string,
    source: () => string,
    n: number,
    rest: number[],
    inputs: GpuStorage[],
    outputs: GpuStorage[],
  ): void {
    const [gx, gy] = grid(Math.ceil(n / K.WG));
    this.run(key, source, [n, ...rest], inputs, outputs, [gx, gy, 1]);
  }

  /** A kernel with one workgroup per row. */
  private rows(
    key: string,
    source: () => string,
    rows: number,
    rest: number[],
    inputs: GpuStorage[],
    outputs: GpuStorage[],
  ): void {
    const [gx, gy] = grid(rows);
    this.run(key, source, [rows, ...rest], inputs, outputs, [gx, gy, 1]);
  }

  private gemm(
    key: string,
    source: () => string,
    m: number,
    n: number,
    k: number,
    rest: number[],
    inputs: GpuStorage[],
    output: GpuStorage,
    batch: number,
  ): void {
    if (batch > 65535) throw new Error(`webgpu: ${key}: batch ${batch} above 65535`);
    this.run(
      key,
      source,
      [m, n, k, ...rest],
      inputs,
      [output],
      [Math.ceil(n / K.GEMM_TILE.N), Math.ceil(m / K.GEMM_TILE.M), batch],
    );
  }

  // ---- kernels ----

  private convParams(xs: number[], ws: number[], p: ConvParams, hasBias: boolean): number[] {
    const [, C, H, W] = xs;
    const [O, , KH, KW] = ws;
    const Ho = convOutSize(H, KH, p.padTop, p.padBottom, p.stride),
      Wo = convOutSize(W, KW, p.padLeft, p.padRight, p.stride);
    return [C, H, W, O, KH, KW, Ho, Wo, p.stride, p.padTop, p.padLeft, hasBias ? 1 : 0];
  }

  conv2d(x: GpuStorage, xs: number[], w: GpuStorage, ws: number[], b: GpuStorage | null, p: ConvParams): GpuStorage {
    if (p.bf16)
      throw new Error(
        'backend webgpu: precision bf16 is not implemented here (it is a CPU path: native backend on AVX512-BF16 / AMX); use f32',
      );
    const [N, C, H, W] = xs,
      [O, , KH, KW] = ws;
    const { padTop: pt, padBottom: pb, padLeft: pl, padRight: pr } = p;
    const Hp = H + pt + pb,
      Wp = W + pl + pr;
    let xp = x;
    if (pt || pb || pl || pr) {
      xp = this.alloc(N * C * Hp * Wp);
      this.each('padPlanes', () => K.padPlanes, xp.n, [H, W, Hp, Wp, pt, pl], [x], [xp]);
    }
    const cp = this.convParams(
      [N, C, Hp, Wp],
      ws,
      { stride: p.stride, padTop: 0, padBottom: 0, padLeft: 0, padRight: 0 },
      !!b,
    );
    const y = this.alloc(N * O * cp[6] * cp[7]);
    this.gemm('conv2d', () => K.conv2d, O, cp[6] * cp[7], C * KH * KW, cp, [xp, w, b ?? w], y, N);
    return y;
  }

  conv2dBackward(
    x: GpuStorage,
    xs: number[],
    dy: GpuStorage,
    w: GpuStorage,
    ws: number[],
    p: ConvParams,
    needDx: boolean,
    withBias: boolean,
  ) {
    const cp = this.convParams(xs, ws, p, false);
    const [N, C, H, W] = xs,
      [O, , KH, KW] = ws,
      Ho = cp[6],
      Wo = cp[7];
    let dx: GpuStorage | null = null;
    if (needDx) {
      dx = this.alloc(N * C * H * W);
      this.gemm('conv2dBackwardData', () => K.conv2dBackwardData, C, H * W, O * KH * KW, cp, [dy, w], dx, N);
    }
    const dw = this.alloc(O * C * KH * KW);
    this.gemm('conv2dBackwardWeights', () => K.conv2dBackwardWeights, O, C * KH * KW, N * Ho * Wo, cp, [dy, x], dw, 1);
    const db = withBias ? this.reduceSum(dy, [N, O, Ho * Wo], [1, O, 1]) : null;
    return { dx, dw, db };
  }

  matmul(
    a: GpuStorage,
    b: GpuStorage,
    batch: number,
    m: number,
    k: number,
    n: number,
    transA: boolean,
    transB: boolean,
  ): GpuStorage {
    const c = this.alloc(batch * m * n);
    if (k === 0) {
      this.encoder().clearBuffer(c.buf);
      return c;
    }
    // strides of A along m and k, of B along k and n
    const sa = transA ? [1, m] : [k, 1],
      sb = transB ? [1, k] : [n, 1];
    this.gemm('matmul', () => K.matmul, m, n, k, [...sa, ...sb], [a, b], c, batch);
    return c;
  }

  binary(op: BinaryOp, a: GpuStorage, as: number[], b: GpuStorage, bs: number[], outShape: number[]): GpuStorage {
    const n = outShape.reduce((p, q) => p * q, 1);
    const y = this.alloc(n);
    const strides = (s: number[]) => rowMajorStrides(s).map((st, i) => (s[i] === 1 && outShape[i] !== 1 ? 0 : st));
    const c = collapse(outShape, [strides(as), strides(bs)]);
    if (c.shape.length === 1 && c.strides[0][0] === 1 && c.strides[1][0] === 1)
      this.each(`same_${op}`, () => K.binarySame(op), n, [], [a, b], [y]);
    else
      this.each(
        `binary_${op}`,
        () => K.binary(op),
        n,
        [c.shape.length, ...fill6(c.shape, 1), ...fill6(c.strides[0], 0), ...fill6(c.strides[1], 0)],
        [a, b],
        [y],
      );
    return y;
  }

  reduceSum(x: GpuStorage, xs: number[], outShape: number[]): GpuStorage {
    const nOut = outShape.reduce((p, q) => p * q, 1);
    const y = this.alloc(nOut);
    const red = xs.map((d, i) => (outShape[i] === 1 ? d : 1));
    const nRed = red.reduce((p, q) => p * q, 1);
    // kept dimensions (decoded from the output index) and reduced ones (from the reduction index), each collapsed
    const xst = rowMajorStrides(xs);
    const kept = collapse(outShape, [xst]),
      reduced = collapse(red, [xst]);
    const rank = Math.max(kept.shape.length, reduced.shape.length);
    const padTo = (v: number[], f: number) => [...new Array<number>(rank - v.length).fill(f), ...v];
    this.rows(
      'reduceSum',
      () => K.reduceSum,
      nOut,
      [
        rank,
        nRed,
        0,
        ...fill6(padTo(kept.shape, 1), 1),
        ...fill6(padTo(reduced.shape, 1), 1),
        ...fill6(padTo(kept.strides[0], 0), 0),
        ...fill6(padTo(reduced.strides[0], 0), 0),
      ],
      [x],
      [y],
    );
    return y;
  }

  unary(op: UnaryOp, x: GpuStorage): GpuStorage {
    const y = this.alloc(x.n);
    this.each(`unary_${op}`, () => K.unary(op), x.n, [], [x], [y]);
    return y;
  }
  unaryBackward(op: UnaryOp, x: GpuStorage, y: GpuStorage, dy: GpuStorage): GpuStorage {
    const dx = this.alloc(x.n);
    this.each(`unaryBackward_${op}`, () => K.unaryBackward(op), x.n, [], [x, y, dy], [dx]);
    return dx;
  }
  clamp(x: GpuStorage, lo: number, hi: number): GpuStorage {
    const y = this.alloc(x.n);
    this.each('clamp', () => K.clamp, x.n, [f32bits(lo), f32bits(hi)], [x], [y]);
    return y;
  }
  clampBackward(x: GpuStorage, lo: number, hi: number, dy: GpuStorage): GpuStorage {
    const dx = this.alloc(x.n);
    this.each('clampBackward', () => K.clampBackward, x.n, [f32bits(lo), f32bits(hi)], [x, dy], [dx]);
    return dx;
  }
  affine(x: GpuStorage, alpha: number, beta: number): GpuStorage {
    const y = this.alloc(x.n);
    this.each('affine', () => K.affine, x.n, [f32bits(alpha), f32bits(beta)], [x], [y]);
    return y;
  }

  groupNorm(
    x: GpuStorage,
    xs: number[],
    gamma: GpuStorage,
    beta: GpuStorage,
    groups: number,
    eps: number,
    silu: boolean,
  ) {
    const [N, C] = xs,
      S = xs.slice(2).reduce((p, q) => p * q, 1);
    const y = this.alloc(x.n),
      mean = this.alloc(N * groups),
      rstd = this.alloc(N * groups);
    this.rows(
      'groupNorm',
      () => K.groupNorm,
      N * groups,
      [C, S, groups, f32bits(eps), silu ? 1 : 0],
      [x, gamma, beta],
      [y, mean, rstd],
    );
    return { y, mean, rstd };
  }

  groupNormBackward(
    x: GpuStorage,
    xs: number[],
    gamma: GpuStorage,
    beta: GpuStorage,
    mean: GpuStorage,
    rstd: GpuStorage,
    groups: number,
    silu: boolean,
    dy: GpuStorage,
  ) {
    const [N, C] = xs,
      S = xs.slice(2).reduce((p, q) => p * q, 1);
    const dx = this.alloc(x.n),
      dgamma = this.alloc(C),
      dbeta = this.alloc(C);
    const ins = [x, gamma, beta, mean, rstd, dy];
    this.rows('groupNormBackwardData', () => K.groupNormBackwardData, N * groups, [C, S, groups, silu ? 1 : 0], ins, [
      dx,
    ]);
    this.rows('groupNormBackwardAffine', () => K.groupNormBackwardAffine, C, [N, S, groups, silu ? 1 : 0], ins, [
      dgamma,
      dbeta,
    ]);
    return { dx, dgamma, dbeta };
  }

  softmax(x: GpuStorage, rows: number, cols: number): GpuStorage {
    const y = this.alloc(x.n);
    this.rows('softmax', () => K.softmax, rows, [cols], [x], [y]);
    return y;
  }
  softmaxBackward(y: GpuStorage, dy: GpuStorage, rows: number, cols: number): GpuStorage {
    const dx = this.alloc(y.n);
    this.rows('softmaxBackward', () => K.softmaxBackward, rows, [cols], [y, dy], [dx]);
    return dx;
  }

  permute(x: GpuStorage, xs: number[], perm: number[]): GpuStorage {
    const outShape = perm.map((p) => xs[p]);
    const st = rowMajorStrides(xs);
    const y = this.alloc(x.n);
    const c = collapse(outShape, [rowMajorStrides(outShape), perm.map((p) => st[p])]);
    this.each(
      'permute',
      () => K.permute,
      x.n,
      [c.shape.length, ...fill6(c.shape, 1), ...fill6(c.strides[1], 0)],
      [x],
      [y],
    );
    return y;
  }

  /** y[r*dstRow + dstOff + j] = x[r*srcRow + srcOff + j] for r < rows, j < len */
  private blockCopy(
    x: GpuStorage,
    y: GpuStorage,
    rows: number,
    len: number,
    srcRow: number,
    srcOff: number,
    dstRow: number,
    dstOff: number,
  ): void {
    this.each('blockCopy', () => K.blockCopy, rows * len, [len, srcRow, srcOff, dstRow, dstOff], [x], [y]);
  }

  concat(xs: GpuStorage[], shapes: number[][]): GpuStorage {
    const N = shapes[0][0],
      S = shapes[0].slice(2).reduce((p, q) => p * q, 1);
    const Ctot = shapes.reduce((a, s) => a + s[1], 0);
    const y = this.alloc(N * Ctot * S);
    let c0 = 0;
    xs.forEach((x, i) => {
      const c = shapes[i][1];
      this.blockCopy(x, y, N, c * S, c * S, 0, Ctot * S, c0 * S);
      c0 += c;
    });
    return y;
  }

  sliceChannels(x: GpuStorage, xs: number[], c0: number, c: number): GpuStorage {
    const [N, C] = xs,
      S = xs.slice(2).reduce((p, q) => p * q, 1);
    const y = this.alloc(N * c * S);
    this.blockCopy(x, y, N, c * S, C * S, c0 * S, c * S, 0);
    return y;
  }

  upsample2x(x: GpuStorage, xs: number[]): GpuStorage {
    const [, , H, W] = xs;
    const y = this.alloc(x.n * 4);
    this.each('upsample2x', () => K.upsample2x, y.n, [H, W], [x], [y]);
    return y;
  }
  upsample2xBackward(dy: GpuStorage, xs: number[]): GpuStorage {
    const [N, C, H, W] = xs;
    const dx = this.alloc(N * C * H * W);
    this.each('upsample2xBackward', () => K.upsample2xBackward, dx.n, [H, W], [dy], [dx]);
    return dx;
  }

  pool2d(
    kind: 'max' | 'avg',
    x: GpuStorage,
    xs: number[],
    k: number,
    stride: number,
    pad: number,
    countPad: boolean,
  ): GpuStorage {
    const [N, C, H, W] = xs;
    const Ho = convOutSize(H, k, pad, pad, stride),
      Wo = convOutSize(W, k, pad, pad, stride);
    const y = this.alloc(N * C * Ho * Wo);
    this.each(
      'pool2d',
      () => K.pool2d,
      y.n,
      [H, W, Ho, Wo, k, stride, pad, kind === 'max' ? 1 : 0, countPad ? 1 : 0],
      [x],
      [y],
    );
    return y;
  }

  adamStep(p: GpuStorage, g: GpuStorage, m: GpuStorage, v: GpuStorage, h: AdamHyper): void {
    const bc1 = 1 - h.beta1 ** h.step,
      bc2 = 1 - h.beta2 ** h.step;
    this.each(
      'adamStep',
      () => K.adamStep,
      p.n,
      [h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, bc1, bc2].map(f32bits),
      [g],
      [p, m, v],
    );
  }
  emaUpdate(ema: GpuStorage, p: GpuStorage, decay: number): void {
    this.each('emaUpdate', () => K.emaUpdate, p.n, [f32bits(decay)], [p], [ema]);
  }
  sumSquares(x: GpuStorage): GpuStorage {
    const y = this.alloc(1);
    this.rows(
      'reduceSum',
      () => K.reduceSum,
      1,
      [1, x.n, 1, ...fill6([1], 1), ...fill6([x.n], 1), ...fill6([0], 0), ...fill6([1], 0)],
      [x],
      [y],
    );
    return y;
  }
  scaleInPlace(x: GpuStorage, s: GpuStorage): void {
    this.each('scaleInPlace', () => K.scaleInPlace, x.n, [], [s], [x]);
  }
  addInPlace(x: GpuStorage, y: GpuStorage): void {
    this.each('addInPlace', () => K.addInPlace, x.n, [], [y], [x]);
  }
}

/** Requests an adapter and a device from a WebGPU implementation (navigator.gpu, or the `webgpu` package's create()). */
export async function createWebGPUBackend(gpu: GPU): Promise<WebGPUBackend> {
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('webgpu: no adapter (WebGPU is present but no GPU, or a software one, is available)');
  const lim = adapter.limits;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBuffersPerShaderStage: Math.min(10, lim.maxStorageBuffersPerShaderStage),
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
      maxBufferSize: lim.maxBufferSize,
    },
  });
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const desc = info ? [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') : '';
  // a fallback adapter is a software one (SwiftShader): correct, but slower than the wasm backend on the same CPU
  const fallback =
    info?.isFallbackAdapter ?? (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
  return new WebGPUBackend(device, desc, gpu, fallback);
}
