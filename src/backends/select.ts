// Backend selection (Node-only): native when the addon is built, else reference. DDPM_BACKEND or an explicit
// name overrides the choice.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Backend } from '../engine/backend.js';
import { setBackend } from '../engine/tensor.js';
import { ReferenceBackend } from './reference/index.js';
import { NativeBackend, loadAddon } from './native/index.js';

export type BackendName = 'native' | 'reference';

let warned = false;

/**
 * Threads for the native backend: --threads, else DDPM_THREADS, else OMP_NUM_THREADS, else the CPUs this process
 * may run on (its affinity mask, via availableParallelism) capped by a cgroup CPU quota (cpu.max), at least 1.
 */
export function defaultThreads(): number {
  const env = process.env.DDPM_THREADS || process.env.OMP_NUM_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${process.env.DDPM_THREADS ? 'DDPM_THREADS' : 'OMP_NUM_THREADS'}: expected a positive integer, got "${env}"`);
    return n;
  }
  let n = availableParallelism();
  try {
    const [quota, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (quota !== 'max') n = Math.min(n, Math.max(1, Math.floor(Number(quota) / Number(period))));
  } catch {
    // no cgroup v2 CPU limit
  }
  return Math.max(1, n);
}

export function createBackend(name: BackendName, threads?: number): Backend {
  if (name === 'reference') return new ReferenceBackend();
  const { addon, error } = loadAddon();
  if (!addon) throw new Error(`backend native: the addon is not available (${error}); install libdnnl-dev and run \`npm rebuild\``);
  return new NativeBackend(addon, threads ?? defaultThreads());
}

/** Chooses and installs the engine's backend; returns it. */
export function useBackend(name?: string, threads?: number): Backend {
  const want = name ?? process.env.DDPM_BACKEND;
  if (want !== undefined && want !== 'native' && want !== 'reference')
    throw new Error(`backend: unknown backend "${want}" (expected "native" or "reference")`);
  let b: Backend;
  if (want) b = createBackend(want, threads);
  else if (loadAddon().addon) b = createBackend('native', threads);
  else if (process.env.DDPM_REQUIRE_NATIVE === '1') {
    throw new Error(`backend: DDPM_REQUIRE_NATIVE=1 but the native addon is not available (${loadAddon().error || 'not built'}); install libdnnl-dev and run \`npm rebuild\``);
  } else {
    if (!warned) console.error('ddpm: native backend not built, using the slow reference backend (apt-get install -y libdnnl-dev, then npm rebuild)');
    warned = true;
    b = new ReferenceBackend();
  }
  setBackend(b);
  return b;
}
