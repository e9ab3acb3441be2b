// `ddpm report RUN`: one self-contained HTML page for a training run.
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
  const out = o.out ?? join(run, 'report.html');
  ensureWritableFile(out, '--out');
  writeFileAtomic(out, runReport(run));
  console.error(`wrote ${out}`);
}
