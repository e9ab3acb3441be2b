// `npm run bench`: the same workloads through this engine and through PyTorch in one run, paired, printing times,
// GFLOP/s and the ratio PyTorch time / our time (above 1: we are faster). Options: --rounds N (default 5),
// --only W1,W3 (a subset), --conv-algorithm winograd|direct (the native backend's), --markdown (print table rows),
// --write docs/benchmarks.md (regenerate the document's
// generated part: tables, machine, date, command, bf16, peak fraction, time to 1,000 samples).
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import * as ops from '../src/engine/ops.js';
import { Tensor, getBackend, noGrad, setBackend } from '../src/engine/tensor.js';
import { existsSync, readFileSync } from 'node:fs';
import { loadModel } from '../src/io/checkpoint.js';
import { GaussianDiffusion } from '../src/diffusion/gaussian.js';
import { loadEmbeddedDigits } from '../src/data/load.js';
import { makeBatch } from '../src/data/dataset.js';
import { Adam } from '../src/engine/optim.js';
import { fillRandom } from '../src/engine/random.js';
import { useBackend } from '../src/backends/select.js';
import { type ConvAlgorithm, NativeBackend } from '../src/backends/native/index.js';
import { UNet, PRESETS } from '../src/model/unet.js';
import { type Row, type Workload, writeDoc } from './doc.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

function rnd(shape: number[], scale = 1, grad = false): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  fillRandom(v, n, { seed: 11, stream: n % 9973 }, 0, 'normal');
  if (scale !== 1) for (let i = 0; i < n; i++) v[i] *= scale;
  return new Tensor(v, shape, grad);
}

function fwdOrBwd(f: () => Tensor, backward: boolean): () => void {
  if (!backward) return () => void noGrad(f);
  return () => {
    const y = f();
    y.backward(new Tensor(new Float32Array(y.size).fill(1), y.shape));
  };
}

/**
 * FLOPs of the convolutions and matrix products of one U-Net forward pass, counted by running it once through a
 * counting wrapper of the backend (2 per multiply-add).
 */
function unetForwardGflop(preset: 'cifar10' | 'mnist', B: number): number {
  const be = getBackend();
  let flop = 0;
  const counting = new Proxy(be, {
    get(target, prop, recv) {
      const f = Reflect.get(target, prop, recv);
      if (prop === 'conv2d')
        return (
          x: unknown,
          xs: number[],
          w: unknown,
          ws: number[],
          b: unknown,
          p: { stride: number; padTop: number; padBottom: number; padLeft: number; padRight: number },
        ) => {
          const ho = Math.floor((xs[2] + p.padTop + p.padBottom - ws[2]) / p.stride) + 1,
            wo = Math.floor((xs[3] + p.padLeft + p.padRight - ws[3]) / p.stride) + 1;
          flop += 2 * xs[0] * ws[0] * ho * wo * ws[1] * ws[2] * ws[3];
          return f.call(target, x, xs, w, ws, b, p);
        };
      if (prop === 'matmul')
        return (a: unknown, b: unknown, batch: number, m: number, k: number, n: number, ta: boolean, tb: boolean) => {
          flop += 2 * batch * m * k * n;
          return f.call(target, a, b, batch, m, k, n, ta, tb);
        };
      return typeof f === 'function' ? f.bind(target) : f;
    },
  });
  const cfg = PRESETS[preset]();
  const m = new UNet(cfg).init(0);
  setBackend(counting);
  try {
    noGrad(() => m.forward(rnd([B, cfg.in_channels, cfg.sample_size, cfg.sample_size]), new Int32Array(B).fill(1)));
  } finally {
    setBackend(be);
  }
  return flop / 1e9;
}

function unetWorkload(
  preset: 'cifar10' | 'mnist',
  mode: 'train' | 'sample',
  B: number,
  iters: number,
  precision: 'f32' | 'bf16' = 'f32',
): Workload {
  const cfg = PRESETS[preset]();
  const bf16 = precision === 'bf16';
  return {
    name: `U-${preset}-${mode}-${B}${bf16 ? '-bf16' : ''}`,
    what:
      `U-Net ${preset} ${mode === 'train' ? 'training step (fwd+bwd+Adam)' : 'sampling step (fwd)'}, batch ` +
      `${B}${bf16 ? ', bf16' : ''}`,
    bf16,
    gflop: -1, // counted when the backend is installed (forward; x3 for a training step)
    iters,
    build: () => {
      const m = new UNet(cfg).init(0);
      m.precision = precision;
      const x = rnd([B, cfg.in_channels, cfg.sample_size, cfg.sample_size]);
      const t = Int32Array.from({ length: B }, (_, i) => (i * 97) % 1000);
      if (mode === 'sample') return () => void noGrad(() => m.forward(x, t));
      const opt = new Adam([...m.params.values()], { lr: 2e-4 });
      const noise = rnd(x.shape);
      let step = 0;
      return () => {
        const y = m.forward(x, t, { dropout: { seed: 1, micro: step++ } });
        ops.mean(ops.square(ops.sub(y, noise))).backward();
        opt.update();
        opt.zeroGrad();
      };
    },
  };
}

const W1_GF = (2 * 2 * 128 * 128 * 9 * 32 * 32 * 8) / 1e9;
const W2_GF = (2 * 64 * 64 * 9 * 28 * 28 * 32) / 1e9;
const W4_GF = (4 * 2 * 256 * 256 * 256 * 8 + 2 * 2 * 256 * 256 * 256 * 8) / 1e9;

function w1(backward: boolean): () => void {
  const x = rnd([8, 128, 32, 32], 1, true);
  const [g1, b1, g2, b2] = [
    rnd([128], 0.05, true),
    rnd([128], 0.05, true),
    rnd([128], 0.05, true),
    rnd([128], 0.05, true),
  ];
  const [w1_, w2_] = [rnd([128, 128, 3, 3], 0.05, true), rnd([128, 128, 3, 3], 0.05, true)];
  const [c1, c2] = [rnd([128], 0.05, true), rnd([128], 0.05, true)];
  return fwdOrBwd(() => {
    let h = ops.conv2d(ops.groupNorm(x, g1, b1, 32, 1e-6, true), w1_, c1, { padding: 1 });
    h = ops.conv2d(ops.groupNorm(h, g2, b2, 32, 1e-6, true), w2_, c2, { padding: 1 });
    return ops.add(x, h);
  }, backward);
}

function w4(backward: boolean): () => void {
  const x = rnd([8, 256, 16, 16], 1, true);
  const g = rnd([256], 0.05, true),
    bb = rnd([256], 0.05, true);
  const W = [0, 1, 2, 3].map(() => rnd([256, 256], 0.05, true));
  const Bs = [0, 1, 2, 3].map(() => rnd([256], 0.05, true));
  return fwdOrBwd(() => {
    const [B, C, H, Wd] = x.shape;
    const h = ops.permute(ops.reshape(ops.groupNorm(x, g, bb, 32, 1e-6), [B, C, H * Wd]), [0, 2, 1]);
    const q = ops.linear(h, W[0], Bs[0]),
      k = ops.linear(h, W[1], Bs[1]),
      v = ops.linear(h, W[2], Bs[2]);
    const a = ops.linear(
      ops.matmul(ops.softmax(ops.mul(ops.matmul(q, k, false, true), 1 / Math.sqrt(C))), v),
      W[3],
      Bs[3],
    );
    return ops.add(x, ops.reshape(ops.permute(a, [0, 2, 1]), [B, C, H, Wd]));
  }, backward);
}

const WORKLOADS: Workload[] = [
  { name: 'W1f', what: 'W1 residual block 128ch 32x32 b8, forward', gflop: W1_GF, iters: 5, build: () => w1(false) },
  {
    name: 'W1fb',
    what: 'W1 residual block 128ch 32x32 b8, forward+backward',
    gflop: 3 * W1_GF,
    iters: 5,
    build: () => w1(true),
  },
  {
    name: 'W2f',
    what: 'W2 conv3x3 64->64 28x28 b32, forward',
    gflop: W2_GF,
    iters: 5,
    build: () => {
      const x = rnd([32, 64, 28, 28], 1, true),
        w = rnd([64, 64, 3, 3], 0.05, true),
        b = rnd([64], 0.05, true);
      return fwdOrBwd(() => ops.conv2d(x, w, b, { padding: 1 }), false);
    },
  },
  {
    name: 'W2fb',
    what: 'W2 conv3x3 64->64 28x28 b32, forward+backward',
    gflop: 3 * W2_GF,
    iters: 5,
    build: () => {
      const x = rnd([32, 64, 28, 28], 1, true),
        w = rnd([64, 64, 3, 3], 0.05, true),
        b = rnd([64], 0.05, true);
      return fwdOrBwd(() => ops.conv2d(x, w, b, { padding: 1 }), true);
    },
  },
  {
    name: 'W3',
    what: 'W3 sgemm 1024^3',
    gflop: (2 * 1024 ** 3) / 1e9,
    iters: 5,
    build: () => {
      const a = rnd([1024, 1024]),
        b = rnd([1024, 1024]);
      return () => void noGrad(() => ops.matmul(a, b));
    },
  },
  {
    name: 'W4f',
    what: 'W4 self-attention 16x16 tokens 256ch b8, forward',
    gflop: W4_GF,
    iters: 5,
    build: () => w4(false),
  },
  {
    name: 'W4fb',
    what: 'W4 self-attention 16x16 tokens 256ch b8, forward+backward',
    gflop: 3 * W4_GF,
    iters: 5,
    build: () => w4(true),
  },
  unetWorkload('cifar10', 'train', 8, 3),
  unetWorkload('cifar10', 'sample', 8, 3),
  unetWorkload('mnist', 'train', 64, 3),
  unetWorkload('mnist', 'sample', 64, 3),
  unetWorkload('cifar10', 'sample', 8, 3, 'bf16'),
  unetWorkload('mnist', 'sample', 64, 3, 'bf16'),
];

function median(a: number[]): number {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function timeIt(fn: () => void, iters: number, warmup = 2): number {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    fn();
    ts.push((performance.now() - t0) / 1000);
  }
  return median(ts);
}

/**
 * bf16 against f32 on the shipped MNIST model: eps of x_t = sqrt(abar) x0 + sqrt(1 - abar) noise for 64 embedded
 * digits at several t, max and mean absolute difference.
 */
async function bf16EpsError(): Promise<{ t: number; max: number; mean: number }[]> {
  const { model, folder } = loadModel(join(root, 'models', 'mnist'));
  const d = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
  const ds = loadEmbeddedDigits();
  const B = 64;
  const x0 = makeBatch(
    ds,
    Array.from({ length: B }, (_, i) => i % ds.count),
  );
  const out = [];
  for (const t of [0, 10, 100, 250, 500, 750, 999]) {
    const ts = new Int32Array(B).fill(t);
    const xt = noGrad(() => d.qSample(x0, ts, rnd(x0.shape)));
    model.precision = 'f32';
    const a = await noGrad(() => model.forward(xt, ts)).data();
    model.precision = 'bf16';
    const b = await noGrad(() => model.forward(xt, ts)).data();
    let max = 0,
      sum = 0;
    for (let i = 0; i < a.length; i++) {
      const e = Math.abs(a[i] - b[i]);
      max = Math.max(max, e);
      sum += e;
    }
    out.push({ t, max, mean: sum / a.length });
  }
  return out;
}

async function main() {
  const args = process.argv.slice(2);
  const opt = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
  const rounds = Number(opt('--rounds')) || 5;
  const only = opt('--only')?.split(',') ?? null;
  const markdown = args.includes('--markdown');
  const write = opt('--write');
  const backend = useBackend(args.includes('--reference') ? 'reference' : undefined);
  const algo = opt('--conv-algorithm');
  if (algo) {
    if (!(backend instanceof NativeBackend)) throw new Error('bench: --conv-algorithm needs the native backend');
    backend.setConvAlgorithm(algo as ConvAlgorithm);
  }
  const info =
    (
      backend as {
        info?: { threads?: number; bf16?: boolean; onednn?: string; build?: string; convAlgorithm?: string };
      }
    ).info ?? {};
  const py = spawn('/usr/bin/python3', [join(root, 'bench', 'torch_bench.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: py.stdout })[Symbol.asyncIterator]();
  const torchTime = async (name: string, iters: number) => {
    py.stdin.write(`${name} ${iters}\n`);
    const r = await lines.next();
    if (r.done) throw new Error('bench: the PyTorch side exited (needs /usr/bin/python3 with python3-torch)');
    const [nchw, cl] = r.value.split(' ').map(Number);
    return { best: Math.min(nchw, cl), layout: nchw <= cl ? 'NCHW' : 'channels_last' };
  };
  const cpuModel = cpus()[0].model.trim();
  console.error(`backend ${backend.name}, ${rounds} paired rounds, ${cpus().length} cores (${cpuModel})`);
  // the CPU's peak, as an assumption stated in full: threads x clock x FLOPs per cycle of its widest FMA
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const avx512 = / avx512f /.test(cpuinfo);
  const mhz = cpus()[0].speed || Math.round(Number(/cpu MHz\s*:\s*([\d.]+)/.exec(cpuinfo)?.[1] ?? 0)),
    threads = info.threads ?? cpus().length;
  const perCycle = avx512 ? 64 : 32; // two FMA units x 16 (AVX-512) or 8 (AVX2) float lanes x 2 FLOPs
  const peak = (threads * mhz * perCycle) / 1000;
  const peakText =
    `${threads} threads x ${mhz} MHz (the clock /proc/cpuinfo reports) x ${perCycle} FLOP/cycle (two ` +
    `${avx512 ? '512' : '256'}-bit FMA units x ${perCycle / 4} float lanes x 2) = ${peak.toFixed(0)} GFLOP/s`;
  console.log(
    `peak (assumed): ${peakText}; the clock under load may be higher (turbo), so sgemm (W3) is the practical ceiling`,
  );
  const rows: Row[] = [];
  for (const w of WORKLOADS) {
    if (only && !only.some((o) => w.name.startsWith(o))) continue;
    if (w.bf16 && !info.bf16) {
      console.error(`${w.name}: skipped (no bf16 on this backend / CPU)`);
      continue;
    }
    const f32Name = w.name.replace(/-bf16$/, '');
    if (w.gflop < 0) {
      const [, preset, mode, b] = f32Name.split('-');
      w.gflop = unetForwardGflop(preset as 'cifar10' | 'mnist', Number(b)) * (mode === 'train' ? 3 : 1);
    }
    const fn = w.build();
    const f32fn = w.bf16 ? WORKLOADS.find((v) => v.name === f32Name)!.build() : null;
    const ours: number[] = [],
      theirs: number[] = [],
      ratios: number[] = [],
      oursF32: number[] = [],
      selfRatios: number[] = [],
      theirsBf16: number[] = [];
    let layout = '';
    for (let r = 0; r < rounds; r++) {
      const a = timeIt(fn, w.iters);
      const b = await torchTime(f32Name, w.iters);
      ours.push(a);
      theirs.push(b.best);
      ratios.push(b.best / a);
      layout = b.layout;
      if (f32fn) {
        const a32 = timeIt(f32fn, w.iters);
        oursF32.push(a32);
        selfRatios.push(a32 / a);
        theirsBf16.push((await torchTime(w.name, w.iters)).best);
      }
    }
    const row: Row = { w, ours: median(ours), torch: median(theirs), layout, ratio: median(ratios), ratios };
    if (f32fn)
      Object.assign(row, { oursF32: median(oursF32), selfRatio: median(selfRatios), torchBf16: median(theirsBf16) });
    rows.push(row);
    const gf = (t: number) => (w.gflop ? (w.gflop / t).toFixed(1) : '-');
    const extra = row.selfRatio
      ? ` | own f32 ${(row.oursF32! * 1000).toFixed(1)} ms, f32/bf16 ${row.selfRatio.toFixed(2)} | torch ` +
        `autocast-bf16 ${(row.torchBf16! * 1000).toFixed(1)} ms`
      : '';
    console.log(
      markdown
        ? `| ${w.what} | ${(row.ours * 1000).toFixed(1)} | ${gf(row.ours)} | ${(row.torch * 1000).toFixed(1)} ` +
            `(${layout}) | ${gf(row.torch)} | **${row.ratio.toFixed(2)}** |`
        : `${w.name.padEnd(22)} ours ${(row.ours * 1000).toFixed(1).padStart(8)} ms ${gf(row.ours).padStart(6)} ` +
            `GFLOP/s | torch ${(row.torch * 1000).toFixed(1).padStart(8)} ms ${gf(row.torch).padStart(6)} GFLOP/s ` +
            `(${layout}) | ratio torch/ours ${row.ratio.toFixed(2)}  ` +
            `[${ratios.map((x) => x.toFixed(2)).join(' ')}]${extra}`,
    );
  }
  py.stdin.end();
  if (write) {
    const eps = info.bf16 && existsSync(join(root, 'models', 'mnist', 'config.json')) ? await bf16EpsError() : [];
    const torchVersion = spawnSync('/usr/bin/python3', [join(root, 'bench', 'torch_bench.py'), '--version'], {
      encoding: 'utf8',
    }).stdout.trim();
    writeDoc(write, rows, {
      rounds,
      cpuModel,
      cores: cpus().length,
      threads,
      info,
      peak,
      peakText,
      torchVersion,
      eps,
      command: `npm run bench -- ${args.join(' ')}`,
    });
    console.error(`wrote ${write}`);
  }
}

main().catch((e) => {
  console.error(`bench: ${(e as Error).message}`);
  process.exitCode = 1;
});
