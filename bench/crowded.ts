// `npm run bench:crowded -- [ROUNDS] [--fixed]`: sampling on a crowded CPU. Times
// `ddpm sample --model mnist -n 64 --sampler ddim --steps 20` on an idle machine, beside one busy process and beside
// three (each a JavaScript busy loop), in paired rounds, and prints the medians and their ratios to the idle time.
// --fixed also runs each with the thread count fixed to every CPU (`--threads N`, the behaviour without the governor).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');
const rounds = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 3);
const fixed = process.argv.includes('--fixed');
const n = availableParallelism();
const out = mkdtempSync(join(tmpdir(), 'ddpm-crowded-'));

function sampleSeconds(extra: string[]): number {
  const t0 = performance.now();
  const args = [cli, 'sample', '--model', 'mnist', '-n', '64', '--sampler', 'ddim', '--steps', '20'];
  const r = spawnSync(process.execPath, [...args, '--out', join(out, `s${t0}`), ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ddpm sample failed: ${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

async function beside(busy: number, extra: string[]): Promise<number> {
  const loops = Array.from({ length: busy }, () => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
  await new Promise((r) => setTimeout(r, 300));
  try {
    return sampleSeconds(extra);
  } finally {
    for (const p of loops) p.kill('SIGKILL');
  }
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];
const cases: [string, number, string[]][] = [
  ['idle', 0, []],
  ['beside 1 busy', 1, []],
  ['beside 3 busy', 3, []],
];
if (fixed) cases.push(['idle, fixed', 0, ['--threads', String(n)]], ['beside 1, fixed', 1, ['--threads', String(n)]]);
if (fixed) cases.push(['beside 3, fixed', 3, ['--threads', String(n)]]);
const times = new Map<string, number[]>(cases.map(([name]) => [name, []]));
console.error(`${cpus()[0]?.model ?? 'CPU'}, ${n} CPUs; ${rounds} rounds`);
for (let r = 0; r < rounds; r++) {
  for (const [name, busy, extra] of cases) {
    const s = await beside(busy, extra);
    times.get(name)?.push(s);
    console.error(`round ${r + 1}: ${name} ${s.toFixed(1)} s`);
  }
}
rmSync(out, { recursive: true, force: true });
const idle = median(times.get('idle') ?? []);
const idleFixed = fixed ? median(times.get('idle, fixed') ?? []) : idle;
console.log('| 64 DDIM-20 digits | median s | x idle |');
console.log('|---|---|---|');
for (const [name] of cases) {
  const m = median(times.get(name) ?? []);
  console.log(`| ${name} | ${m.toFixed(1)} | ${(m / (name.includes('fixed') ? idleFixed : idle)).toFixed(2)} |`);
}
