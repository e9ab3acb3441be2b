#!/usr/bin/env node
// `npm run lint`, second half: Biome formats code to 120 columns but leaves long strings and comments alone; this
// check holds every line of the sources to 120 columns and every source file to 500 lines (generated files aside).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MAX_COLUMNS = 120,
  MAX_LINES = 500;
const DIRS = ['src', 'test', 'bench', 'playground', 'scripts', 'native'];
const EXT = /\.(ts|mjs|js|cc|h|html|py|sh)$/;
/**
 * The column limit holds where Biome (or clang-style C++) formats; Python and shell scripts keep only the line count.
 */
const COLUMNS_CHECKED = /\.(ts|mjs|js|cc|h|html)$/;
const GENERATED = [/^src\/backends\/wasm\/gemm-wasm\.ts$/];

const files = [];
const walk = (d) => {
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) {
      if (e !== 'goldens' && e !== 'node_modules') walk(p);
    } else if (EXT.test(e)) files.push(p);
  }
};
for (const d of DIRS) walk(join(ROOT, d));

const faults = [];
for (const f of files) {
  const rel = relative(ROOT, f).replace(/\\/g, '/');
  if (GENERATED.some((g) => g.test(rel))) continue;
  const lines = readFileSync(f, 'utf8').split('\n');
  if (lines.length > MAX_LINES) faults.push(`${rel}: ${lines.length} lines (at most ${MAX_LINES})`);
  if (!COLUMNS_CHECKED.test(f)) continue;
  lines.forEach((l, i) => {
    if (l.length > MAX_COLUMNS) faults.push(`${rel}:${i + 1}: ${l.length} columns (at most ${MAX_COLUMNS})`);
  });
}
if (faults.length) {
  console.error(faults.slice(0, 50).join('\n'));
  if (faults.length > 50) console.error(`... and ${faults.length - 50} more`);
  console.error(`check-lines: ${faults.length} faults in ${files.length} files`);
  process.exit(1);
}
console.log(
  `check-lines: ${files.length} files, every line within ${MAX_COLUMNS} columns and every file within ` +
    `${MAX_LINES} lines`,
);
