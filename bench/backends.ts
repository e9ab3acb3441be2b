// The browser backends (wasm, WebGPU) against the native one on the same workloads, in one run: sgemm, a 3x3
// convolution, and the mnist U-Net's forward pass (a sampling step). WebGPU runs on whatever adapter Dawn finds (on a
// machine without a GPU: SwiftShader, a CPU emulation, so its ratio says little about a GPU). Prints medians of
// --rounds N (default 3) and native time / backend time.
import { createNodeWebGPU, useBackend } from '../src/backends/select.js';
import type { Backend } from '../src/engine/backend.js';
import type { WebGPUBackend } from '../src/backends/webgpu/index.js';
import { WasmBackend } from '../src/backends/wasm/index.js';
import * as ops from '../src/engine/ops.js';
import { type Tensor, noGrad, setBackend } from '../src/engine/tensor.js';
import { PRESETS, UNet } from '../src/model/unet.js';

const rounds = process.argv.includes('--rounds') ? Number(process.argv[process.argv.indexOf('--rounds') + 1]) : 3;
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

interface Work {
  name: string;
  gflop: number;
  build: () => () => Tensor;
}
const works: Work[] = [
  {
    name: 'sgemm 512^3',
    gflop: (2 * 512 ** 3) / 1e9,
    build: () => {
      const a = ops.randn([512, 512], { seed: 0, stream: 1 });
      return () => ops.matmul(a, a);
    },
  },
  {
    name: 'conv3x3 64->64 28x28 b4',
    gflop: (2 * 4 * 64 * 64 * 9 * 784) / 1e9,
    build: () => {
      const x = ops.randn([4, 64, 28, 28], { seed: 0, stream: 2 }),
        w = ops.randn([64, 64, 3, 3], { seed: 0, stream: 3 }),
        b = ops.randn([64], { seed: 0, stream: 4 });
      return () => ops.conv2d(x, w, b, { padding: 1 });
    },
  },
  {
    name: 'U-Net mnist forward b4',
    gflop: NaN,
    build: () => {
      const m = new UNet(PRESETS.mnist()).init(0),
        x = ops.randn([4, 1, 28, 28], { seed: 0, stream: 5 }),
        t = Int32Array.from([1, 250, 500, 999]);
      return () => noGrad(() => m.forward(x, t));
    },
  },
];

async function time(b: Backend, w: Work): Promise<number> {
  setBackend(b);
  const f = w.build();
  await f().data(); // warm-up (pipelines compiled, buffers pooled)
  const ts: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    await f().data();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

const native = useBackend('native');
const wasm = new WasmBackend();
const gpu: WebGPUBackend = await createNodeWebGPU();
console.log(
  `webgpu adapter: ${gpu.adapterInfo}; native threads: ${process.env.DDPM_THREADS ?? 'all'}; wasm: one thread; ` +
    `median of ${rounds}`,
);
console.log(
  '| workload | native ms | wasm ms | native / wasm | wasm GFLOP/s | webgpu ms | native / webgpu | webgpu GFLOP/s |',
);
console.log('|---|---|---|---|---|---|---|---|');
const gf = (w: Work, ms: number) => (Number.isNaN(w.gflop) ? '' : (w.gflop / (ms / 1000)).toFixed(2));
for (const w of works) {
  const n = await time(native, w),
    a = await time(wasm, w),
    g = await time(gpu, w);
  console.log(
    `| ${w.name} | ${n.toFixed(1)} | ${a.toFixed(1)} | ${(n / a).toFixed(3)} | ${gf(w, a)} | ${g.toFixed(1)} | ` +
      `${(n / g).toFixed(3)} | ${gf(w, g)} |`,
  );
}
process.exit(0);
