// `ddpm report RUN`: one self-contained HTML page for a training run.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { runReport } from '../../eval/report.js';
import { writeFileAtomic } from '../../io/files.js';
import { ensureWritableFile } from '../shared.js';

export interface ReportOptions {
  out?: string;
}

export function register(program: Command): void {
  program
    .command('report')
    .description('write one self-contained HTML page for a training run: loss curves, sample grids, bits/dim, quality')
    .argument('<run>', 'run folder (the --out of ddpm train)')
    .option('--out <file>', 'HTML file to write (default: RUN/report.html)')
    .action(reportCommand);
}

export function reportCommand(run: string, o: ReportOptions): void {
  if (!existsSync(run) || !statSync(run).isDirectory())
    throw new Error(`${run}: run folder not found (the --out of ddpm train)`);
  const out = o.out ?? join(run, 'report.html');
  // the page replaces an earlier page, never another file (the run's log, a model)
  if (existsSync(out) && !/\.html?$/i.test(out))
    throw new Error(`--out ${out}: exists and is not an HTML page; choose a .html file`);
  ensureWritableFile(out, '--out');
  writeFileAtomic(out, runReport(run));
  console.error(`wrote ${out}`);
}
