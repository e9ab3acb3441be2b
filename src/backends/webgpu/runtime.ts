/// <reference types="@webgpu/types" />
// The WebGPU backend's plumbing, apart from its ops (index.ts): buffers and their pool, command recording and
// submission, the parameter arena, the pipeline cache, and the dispatch helpers that every op goes through.
//
// Memory: a buffer handle owns one GPUBuffer. It returns to a pool keyed by size when the engine releases it (the
// scopes of tensor.ts, which the sampling and training loops close every step), or else when the handle becomes
// unreachable (a FinalizationRegistry), so a loop reuses buffers instead of allocating, whatever the collector's pace.
// Reuse is safe in queue order: dispatches run in the order recorded, and recorded work is submitted before any queue
// write. Work is recorded into one command encoder and submitted when a value is read, written or uploaded (queue
// writes must not overtake recorded work) or after FLUSH_EVERY dispatches. Each dispatch's parameters sit in a
// 256-byte slot of a parameter arena that is written while mapped and unmapped at submit. Nothing is read back unless
// read() is called: a training step runs without a readback.
import { GEMM_TILE } from './gemm-kernels.js';
import { WG } from './wgsl.js';

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

/**
 * The device side of WebGPUBackend: buffer handles, the pool their GPU buffers return to, and the recording of
 * dispatches. WebGPUBackend (index.ts) extends it with the ops.
 */
export class GpuRuntime {
  private readonly kernels = new Map<string, Kernel>();
  private readonly pool = new Map<number, GPUBuffer[]>();
  private pooledBytes = 0;
  private created = 0;
  private allocations = 0;
  /** handles handed out and not yet taken back */
  private live = 0;
  /**
   * Whether the garbage collector's finalisation also returns buffers (true). False: only the engine's releases do
   * (scopes, tensor.ts), as when the collector cannot keep up; for tests and diagnostics.
   */
  gcRecycling = true;
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
    this.registry = new FinalizationRegistry((buf) => {
      if (!this.gcRecycling) return; // the buffer stays unused: what a loop holds without the collector shows
      this.live--;
      this.recycle(buf);
    });
    device.lost?.then((info) => {
      this.lost = info.message || info.reason || 'device lost';
    });
    device.onuncapturederror = (e) => {
      this.error ??= e.error.message;
    };
  }

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

  protected alloc(n: number): GpuStorage {
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
    this.registry.register(h, buf, h);
    this.live++;
    return h;
  }

  /** Takes a buffer back into the pool now (the engine released it: nothing uses the handle again). */
  release(h: GpuStorage): void {
    if (!this.registry.unregister(h)) return; // released before
    this.live--;
    this.recycle(h.buf);
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
  get info() {
    return { adapter: this.adapterInfo, software: this.isFallbackAdapter, ...this.stats() };
  }

  /**
   * Buffer handles handed out, GPU buffers created for them (the rest came from the pool), handles not yet taken back
   * (live), and bytes now pooled.
   */
  stats(): { allocations: number; created: number; live: number; pooledBytes: number } {
    return { allocations: this.allocations, created: this.created, live: this.live, pooledBytes: this.pooledBytes };
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
  protected encoder(): GPUCommandEncoder {
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
  protected run(
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
  protected each(
    key: string,
    source: () => string,
    n: number,
    rest: number[],
    inputs: GpuStorage[],
    outputs: GpuStorage[],
  ): void {
    const [gx, gy] = grid(Math.ceil(n / WG));
    this.run(key, source, [n, ...rest], inputs, outputs, [gx, gy, 1]);
  }

  /** A kernel with one workgroup per row. */
  protected rows(
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

  /** A GEMM kernel: one 8x8-thread workgroup per GEMM_TILE block of the m x n output, the batch along z. */
  protected gemm(
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
      [Math.ceil(n / GEMM_TILE.N), Math.ceil(m / GEMM_TILE.M), batch],
    );
  }
}
