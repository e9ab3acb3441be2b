// A progress line with rate and ETA on stderr (redrawn in place on a terminal, a line every 10 s otherwise).

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '--';
  const h = Math.floor(s / 3600),
    m = Math.floor((s % 3600) / 60),
    sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export class Progress {
  private readonly start = Date.now();
  private lastPrint = 0;
  private readonly tty = process.stderr.isTTY;
  private startCount: number | undefined;

  /** budgetSeconds: a time limit that may end the work before `total` (the bar then shows the time used). */
  /** startAt: the count already done when this run began (default: one less than the first update, as on a resume). */
  constructor(
    private readonly label: string,
    private readonly total: number,
    startAt?: number,
    private readonly quiet = false,
    private readonly budgetSeconds?: number,
  ) {
    this.startCount = startAt;
  }

  update(done: number, extra = ''): void {
    if (this.quiet) return;
    this.startCount ??= done - 1;
    const now = Date.now();
    if (done < this.total && now - this.lastPrint < (this.tty ? 200 : 10_000)) return;
    this.lastPrint = now;
    const el = (now - this.start) / 1000;
    const rate = (done - this.startCount) / Math.max(el, 1e-9);
    let eta = (this.total - done) / rate;
    let frac = done / this.total;
    if (this.budgetSeconds !== undefined) {
      eta = Math.min(eta, Math.max(0, this.budgetSeconds - el));
      frac = Math.min(1, Math.max(frac, el / this.budgetSeconds));
    }
    const bar = '#'.repeat(Math.round(frac * 20)).padEnd(20, '-');
    // with a time budget that ends the work first, the bar counts toward the budget, not toward `total`
    const budgetBound = this.budgetSeconds !== undefined && el / this.budgetSeconds >= done / this.total;
    const count = budgetBound
      ? `step ${done}, ${fmtTime(el)} of ${fmtTime(this.budgetSeconds!)}`
      : `${done}/${this.total} ${fmtTime(el)} elapsed`;
    const line =
      `${this.label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${count}, ETA ${fmtTime(eta)} ` + `${extra}`;
    if (this.tty)
      process.stderr.write(
        `\r${line.padEnd(120).slice(0, Math.max(120, line.length))}${done >= this.total ? '\n' : ''}`,
      );
    else process.stderr.write(`${line}\n`);
  }
}
