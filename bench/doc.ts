// docs/benchmarks.md from a run of `npm run bench -- --write docs/benchmarks.md`: the generated tables, machine,
// date and command above a marker; the hand-written sections below it are kept.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

export interface Workload {
  name: string;
  what: string;
  gflop: number;
  iters: number;
  /** sampling with --precision bf16: also timed against our own f32 run of the same workload in each round */
  bf16?: boolean;
  build: () => () => void;
}

export interface Row {
  w: Workload;
  ours: number;
  torch: number;
  layout: string;
  ratio: number;
  ratios: number[];
  /** bf16 rows: our own f32 time of the same workload, PyTorch's autocast-bf16 time, and the ratios */
  oursF32?: number;
  selfRatio?: number;
  torchBf16?: number;
}

const MARKER =
  '<!-- everything above is written by `npm run bench -- --write docs/benchmarks.md`; what follows is kept -->';

/** docs/benchmarks.md: the generated part (replaced) and the sections below the marker (kept). */
export function writeDoc(
  file: string,
  rows: Row[],
  m: {
    rounds: number;
    cpuModel: string;
    cores: number;
    threads: number;
    info: { onednn?: string; build?: string; bf16?: boolean; convAlgorithm?: string; conv3x3?: string };
    peak: number;
    peakText: string;
    torchVersion: string;
    eps: { t: number; max: number; mean: number }[];
    command: string;
  },
) {
  const ms = (t: number) => (t * 1000).toFixed(1);
  const gf = (r: Row, t: number) => (r.w.gflop ? (r.w.gflop / t).toFixed(1) : '-');
  const find = (name: string) => rows.find((r) => r.w.name === name);
  const out: string[] = [];
  out.push('# Benchmarks: this engine against PyTorch on the same workloads', '');
  out.push(
    `Generated on ${new Date().toISOString().slice(0, 10)} by \`${m.command}\`. Machine: ${m.cpuModel}, ${m.cores} ` +
      `cores, ${m.threads} threads; Node ${process.version}; native backend (oneDNN ${m.info.onednn ?? '?'}, ` +
      `${m.info.build ?? '?'} ` +
      `build${m.info.bf16 ? ', bf16 kernels available' : ''}` +
      `${m.info.convAlgorithm ? `, ${m.info.convAlgorithm} convolutions` : ''}` +
      `${m.info.conv3x3 ? ` (${m.info.conv3x3})` : ''}); ` +
      `PyTorch ${m.torchVersion} with libopenblas0-pthread, \`torch.set_num_threads(2)\`.`,
    '',
  );
  out.push(
    `Method: every workload runs through this engine and through PyTorch in one run, paired: ${m.rounds} rounds of ` +
      `(ours, then PyTorch), each round the median of several timed runs after 2 warm-up runs. Times are medians ` +
      `over the rounds; the ratio is the median of the per-round ratios PyTorch time / our time (above 1: we are ` +
      `faster). PyTorch runs each workload in NCHW and channels_last and the better is used (named). GFLOP/s ` +
      `counts the convolutions and matrix products only (a training step or forward+backward = 3x the ` +
      `forward). The machine is noisy: compare ratios, not times across days.`,
    '',
  );
  out.push(
    '| workload | ours ms | ours GFLOP/s | PyTorch ms (layout) | PyTorch GFLOP/s | PyTorch / ours |',
    '|---|---|---|---|---|---|',
  );
  for (const r of rows.filter((r) => !r.w.bf16))
    out.push(
      `| ${r.w.what} | ${ms(r.ours)} | ${gf(r, r.ours)} | ${ms(r.torch)} (${r.layout}) | ${gf(r, r.torch)} | ` +
        `**${r.ratio.toFixed(2)}** |`,
    );
  const b16 = rows.filter((r) => r.w.bf16);
  if (b16.length) {
    out.push('', '## Sampling in bf16 (`--precision bf16`)', '');
    out.push(
      "The diffusion model's convolutions (all but the first, which sees x_t itself) with input and weights rounded " +
        "to bfloat16 and float32 accumulation (oneDNN's AVX512-BF16 kernels); group norm, attention and the rest " +
        'stay float32. Our f32 and bf16 are timed in the same rounds; PyTorch\'s bf16 is `torch.autocast("cpu", ' +
        'dtype=torch.bfloat16)` on the same model.',
      '',
    );
    out.push(
      '| workload | ours f32 ms | ours bf16 ms | ours f32 / bf16 | PyTorch f32 ms | PyTorch autocast-bf16 ms | ' +
        'PyTorch f32 / ours bf16 |',
      '|---|---|---|---|---|---|---|',
    );
    for (const r of b16)
      out.push(
        `| ${r.w.what.replace(', bf16', '')} | ${ms(r.oursF32!)} | ${ms(r.ours)} | **${r.selfRatio!.toFixed(2)}** | ` +
          `${ms(r.torch)} | ${ms(r.torchBf16!)} | **${r.ratio.toFixed(2)}** |`,
      );
    if (m.eps.length) {
      out.push(
        '',
        'Error of bf16 against f32 on the shipped MNIST model (eps of x_t for 64 embedded digits, the same noise):',
        '',
      );
      out.push('| t | max abs error | mean abs error |', '|---|---|---|');
      for (const e of m.eps) out.push(`| ${e.t} | ${e.max.toExponential(2)} | ${e.mean.toExponential(2)} |`);
    }
  }
  out.push('', '## Achieved GFLOP/s against the peak', '');
  out.push(
    `Peak (assumed): ${m.peakText}. The clock under load may be higher (turbo), so W3 (sgemm) is the practical ` +
      `ceiling.`,
    '',
  );
  if (m.info.convAlgorithm === 'winograd')
    out.push(
      "With Winograd convolutions (the default) these are effective GFLOP/s: the direct algorithm's FLOP count over " +
        'the time. Winograd F(4x4, 3x3) does about a quarter of those multiplications, so the effective rate can ' +
        'pass what any direct kernel reaches.',
      '',
    );
  out.push(
    'bf16 rows are measured against twice that peak (AVX512-BF16 multiplies two bf16 pairs per float lane per ' +
      'instruction), and not against sgemm.',
    '',
  );
  out.push('| workload | ours GFLOP/s | % of peak | % of our sgemm (W3) |', '|---|---|---|---|');
  const w3 = find('W3');
  for (const r of rows.filter((r) => r.w.name.startsWith('U-'))) {
    const g = r.w.gflop / r.ours;
    const ofW3 = w3 && !r.w.bf16 ? `${((100 * g * w3.ours) / w3.w.gflop).toFixed(0)}%` : '-';
    out.push(
      `| ${r.w.what} | ${g.toFixed(1)} | ${((100 * g) / (r.w.bf16 ? 2 * m.peak : m.peak)).toFixed(0)}% | ${ofW3} |`,
    );
  }
  const s32 = find('U-mnist-sample-64'),
    s16 = find('U-mnist-sample-64-bf16');
  if (s32) {
    // 1,000 samples x 100 network evaluations, from the per-image cost of a batch-64 sampling step
    const per = (t: number) => (1000 * 100 * t) / 64;
    out.push('', '## Time to 1,000 MNIST samples', '');
    out.push(
      'At the quality of the best row of the sampler table ([samplers.md](samplers.md)): ancestral sampling with ' +
        '100 respaced steps (FD 0.151 there, better than every ODE solver at 10-50 steps; 1000-step ancestral was ' +
        'not measured). 1,000 samples x 100 network evaluations of the mnist U-Net, from the batch-64 sampling ' +
        "step above (the sampler's own elementwise updates are not counted).",
      '',
    );
    out.push('| engine | seconds for 1,000 samples |', '|---|---|');
    out.push(`| ours, f32 | ${per(s32.ours).toFixed(0)} |`);
    if (s16) out.push(`| ours, bf16 | ${per(s16.ours).toFixed(0)} |`);
    out.push(`| PyTorch, f32 (${s32.layout}) | ${per(s32.torch).toFixed(0)} |`);
    if (s16) out.push(`| PyTorch, autocast bf16 | ${per(s16.torchBf16!).toFixed(0)} |`);
  }
  const kept =
    existsSync(file) && readFileSync(file, 'utf8').includes(MARKER)
      ? readFileSync(file, 'utf8').split(MARKER)[1]
      : '\n';
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${out.join('\n')}\n\n${MARKER}${kept}`);
  renameSync(tmp, file);
}
