// File helpers (Node-only): atomic writes and gzip-aware reads.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';

/**
 * Creates a folder and its missing parents, one level at a time. (Node 20's mkdirSync with `recursive` spins forever
 * where a parent exists but refuses new entries with ENOENT, as /proc does.) Throws naming the folder and the reason.
 */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      throw Object.assign(new Error(`${dir}: cannot create the folder ${d} (${code ?? (e as Error).message})`), {
        code,
      });
    }
  }
}

/**
 * The names a killed writer of ours leaves (writeFileAtomic's and writeDirAtomic's temporary and moved-aside
 * copies): distinctive, so that a clean-up never takes a user's own *.tmp or *.old file.
 */
export const LEFTOVER = /\.ddpm-(tmp|old)-\d+(-\d+)?$/;

/** Writes a file atomically: a temporary file beside it, then a rename. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  makeDirs(dirname(path));
  const tmp = `${path}.ddpm-tmp-${process.pid}-${Date.now()}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

/**
 * Writes a directory: fill() builds it under `dir.ddpm-tmp-PID`, which is then renamed into place (one atomic rename
 * when dir does not exist yet, as for each new checkpoint). An existing dir is first moved aside to
 * `dir.ddpm-old-PID` and removed after; a kill between those two renames leaves neither name in place, only the copies
 * copies, which the trainer's cleanLeftovers removes at the next start.
 */
export function writeDirAtomic(dir: string, fill: (tmpDir: string) => void): void {
  const tmp = `${dir}.ddpm-tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  makeDirs(tmp);
  fill(tmp);
  const old = `${dir}.ddpm-old-${process.pid}`;
  if (existsSync(dir)) renameSync(dir, old);
  renameSync(tmp, dir);
  rmSync(old, { recursive: true, force: true });
}

/** Reads a file, gunzipping it when it starts with the gzip magic bytes. */
export function readMaybeGzip(path: string): Uint8Array {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      return new Uint8Array(gunzipSync(buf));
    } catch (e) {
      throw new Error(`${path}: corrupt or truncated gzip data (${(e as Error).message})`);
    }
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function readJson(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('expected a JSON object');
    return v;
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`);
  }
}
