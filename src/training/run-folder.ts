// The run folder of `ddpm train` on disk: its checkpoints, the lock a trainer holds while it writes, the refusal of a
// folder the trainer did not make, and the removal of what a killed writer left. Node-only.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { LEFTOVER } from '../io/files.js';

export function checkpointDirs(outDir: string): { step: number; dir: string }[] {
  const root = join(outDir, 'checkpoints');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((d) => /^step-(\d+)$/.exec(d))
    .filter((m): m is RegExpExecArray => !!m && existsSync(join(root, m[0], 'trainer_state.json')))
    .map((m) => ({ step: Number(m[1]), dir: join(root, m[0]) }))
    .sort((a, b) => a.step - b.step);
}

// ---------------------------------------------------------------- the run folder: lock and crash leftovers

/**
 * Refuses an output folder that is neither new, empty, nor a run folder of this trainer (one with a checkpoint), so
 * that
 * training never overwrites a model it did not make (a shipped model, a converted folder, a run whose checkpoints were
 * moved). What a run leaves before its first checkpoint (its log, lock, sample grids, leftovers) may be reused.
 */
export function checkRunFolder(outDir: string): void {
  if (!existsSync(outDir) || checkpointDirs(outDir).length) return;
  // the log, the lock, leftovers, and checkpoints/ or samples/ holding only leftovers or sample grids
  const ownFolder = (name: string) =>
    (name === 'checkpoints' || name === 'samples') &&
    statSync(join(outDir, name)).isDirectory() &&
    readdirSync(join(outDir, name)).every((f) => LEFTOVER.test(f) || (name === 'samples' && /^step-\d+\.png$/.test(f)));
  const ours = (name: string) =>
    LEFTOVER.test(name) || name === 'metrics.jsonl' || name === 'train.lock' || ownFolder(name);
  const foreign = readdirSync(outDir).filter((name) => !ours(name));
  if (foreign.length)
    throw new Error(
      `--out ${outDir}: holds ` +
        `${foreign.slice(0, 4).join(', ')}${foreign.length > 4 ? ` and ${foreign.length - 4} more` : ''} but no ` +
        `checkpoint of a ddpm training run; training there would overwrite it. Use a new or empty folder (a run ` +
        `folder of ddpm train, with its checkpoints/, resumes)`,
    );
}

/**
 * Takes outDir/train.lock for this process: a second trainer on the same folder is refused at once; a lock left by a
 * process that no longer exists (on this host) is taken over. Returns a function that releases it.
 */
export function lockRun(outDir: string, warn: (msg: string) => void = () => {}): () => void {
  const path = join(outDir, 'train.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() }));
      closeSync(fd);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        rmSync(path, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new Error(
          `${path}: cannot create the run lock (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
        );
    }
    let holder: { pid?: number; host?: string; started?: string } = {};
    try {
      holder = JSON.parse(readFileSync(path, 'utf8'));
    } catch {
      // a lock being written this instant, or garbage: judge it by its age
      if (Date.now() - statSync(path).mtimeMs < 5000)
        throw new Error(`${outDir}: another trainer is starting in this folder (${path}); use another --out`);
    }
    if (holder.pid && holder.host === hostname() && holder.pid !== process.pid && isAlive(holder.pid))
      throw new Error(
        `${outDir}: another trainer (pid ${holder.pid}, started ${holder.started}) is writing this run; wait for ` +
          `it, stop it, or use another --out`,
      );
    if (holder.pid && holder.host && holder.host !== hostname())
      throw new Error(
        `${outDir}: locked by a trainer on host ${holder.host} (pid ${holder.pid}); remove ${path} if that run is gone`,
      );
    warn(
      `warning: taking over the lock of a trainer that is gone (pid ${holder.pid ?? '?'}, started ` +
        `${holder.started ?? '?'})`,
    );
    rmSync(path, { force: true });
  }
  throw new Error(`${path}: could not take the run lock`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes what a killed writer leaves behind: *.tmp files and folders, *.old folders (in outDir and checkpoints/). */
export function cleanLeftovers(outDir: string): string[] {
  const removed: string[] = [];
  for (const dir of [outDir, join(outDir, 'checkpoints')]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      if (!LEFTOVER.test(name)) continue;
      rmSync(join(dir, name), { recursive: true, force: true });
      removed.push(join(dir, name));
    }
  }
  return removed;
}
