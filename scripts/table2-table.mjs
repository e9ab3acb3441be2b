#!/usr/bin/env node
// Prints the markdown table of docs/table2-mnist.md from the run folders written by scripts/table2-mnist.sh, and
// copies each row's sample grid into docs/img/table2-<row>.png.
//   node scripts/table2-table.mjs OUT_DIR
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const out = process.argv[2];
if (!out) throw new Error('usage: table2-table.mjs OUT_DIR');
// our row -> the paper's Table 2 row (CIFAR-10, FID) it corresponds to
const ROWS = [
  ['eps-simple-fixed', 'eps', 'L_simple (eq. 14)', 'fixed, sigma^2 = beta', 'eps prediction, L_simple: FID 3.17'],
  [
    'eps-vlb-fixed',
    'eps',
    'L (the bound, eq. 5)',
    'fixed, sigma^2 = beta',
    'eps prediction, L, fixed isotropic: FID 13.51',
  ],
  [
    'eps-vlb-learned',
    'eps',
    'L',
    'learned (range, improved-diffusion)',
    'eps prediction, L, learned diagonal: unstable',
  ],
  [
    'x0-vlb-fixed',
    'x0 (mean through eq. 7)',
    'L',
    'fixed, sigma^2 = beta',
    'mu~ prediction, L, fixed isotropic: FID 13.22',
  ],
  [
    'x0-vlb-learned',
    'x0 (mean through eq. 7)',
    'L',
    'learned (range)',
    'mu~ prediction, L, learned diagonal: FID 23.69',
  ],
  [
    'eps-hybrid-learned',
    'eps',
    'L_simple + L_vlb / 1000 (hybrid)',
    'learned (range)',
    'not in the paper (improved DDPM)',
  ],
];
const lines = [
  '| row | prediction | loss | variance | FD (500 samples) | KID x 1e3 | IS | bits/dim (64 test images) | training ' +
    'loss (last 50 steps) | the paper (CIFAR-10) |',
  '|---|---|---|---|---|---|---|---|---|---|',
];
for (const [name, pred, loss, variance, paper] of ROWS) {
  const dir = join(out, name);
  if (!existsSync(join(dir, 'quality.json'))) {
    lines.push(`| ${name} | ${pred} | ${loss} | ${variance} | not run | | | | | ${paper} |`);
    continue;
  }
  const q = JSON.parse(readFileSync(join(dir, 'quality.json'), 'utf8'));
  const b = existsSync(join(dir, 'bpd.json')) ? JSON.parse(readFileSync(join(dir, 'bpd.json'), 'utf8')) : null;
  const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((m) => m.loss !== undefined);
  const tail = metrics.slice(-50);
  const lastLoss = tail.reduce((s, m) => s + m.loss, 0) / tail.length;
  const kid = q.kid ? `${(q.kid.mean * 1e3).toFixed(2)} +- ${(q.kid.stderr * 1e3).toFixed(2)}` : '-';
  const bpd = b ? `${b.total.toFixed(3)} (decoder ${b.decoder.toFixed(3)})` : '-';
  lines.push(
    `| [${name}](img/table2-${name}.png) | ${pred} | ${loss} | ${variance} | ${q.fd.toFixed(3)} | ${kid} | ` +
      `${q.is ? q.is.mean.toFixed(2) : '-'} | ${bpd} | ${lastLoss.toPrecision(3)} | ${paper} |`,
  );
  const grid = join(dir, 'grid', 'grid.png');
  if (existsSync(grid)) copyFileSync(grid, join('docs', 'img', `table2-${name}.png`));
}
console.log(lines.join('\n'));
