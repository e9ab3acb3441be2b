// Backend selection (Node-only): native when the addon is built, else reference. DDPM_BACKEND or an explicit
// name overrides the choice; `webgpu` (useBackendAsync) runs the WebGPU backend through the `webgpu` package (Dawn).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Backend } from '../engine/backend.js';
import { setBackend } from '../engine/tensor.js';
import { ReferenceBackend } from './reference/index.js';
import { CONV_ALGORITHMS, type ConvAlgorithm, NativeBackend, loadAddon } from './native/index.js';
import { type WebGPUBackend, createWebGPUBackend } from './webgpu/index.js';
import { WasmBackend } from './wasm/index.js';

export type BackendName = 'native' | 'reference' | 'wasm' | 'webgpu';
const NAMES = ['native', 'reference', 'wasm', 'webgpu'];

let warned = false;

/**
 * Threads for the native backend: --threads, else DDPM_THREADS, else OMP_NUM_THREADS, else the CPUs this process
 * may run on (its affinity mask, via availableParallelism) capped by a cgroup CPU quota (cpu.max), at least 1.
 */
export function defaultThreads(): number {
  const env = process.env.DDPM_THREADS || process.env.OMP_NUM_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    // the same check as --threads: digits only (not 1e3 or 0x2), 1 to 4096
    if (!/^\s*\d+\s*$/.test(env) || n < 1 || n > 4096)
      throw new Error(
        `${process.env.DDPM_THREADS ? 'DDPM_THREADS' : 'OMP_NUM_THREADS'}: expected a whole number from 1 to 4096, ` +
          `got "${env}"`,
      );
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

/** The native backend's convolution algorithm: DDPM_CONV_ALGORITHM (winograd or direct), else winograd. */
export function defaultConvAlgorithm(): ConvAlgorithm {
  const env = process.env.DDPM_CONV_ALGORITHM;
  if (env === undefined || env === '') return 'winograd';
  if (!CONV_ALGORITHMS.includes(env as ConvAlgorithm))
    throw new Error(`DDPM_CONV_ALGORITHM: expected ${CONV_ALGORITHMS.join(' or ')}, got "${env}"`);
  return env as ConvAlgorithm;
}

/**
 * adaptive: let the native backend run fewer threads while other processes keep the CPUs busy (native/governor.ts);
 * only where the count was not fixed (threads given, DDPM_THREADS or OMP_NUM_THREADS set).
 */
export function createBackend(
  name: 'native' | 'reference' | 'wasm',
  threads?: number,
  convAlgorithm?: ConvAlgorithm,
  adaptive = false,
): Backend {
  if (name === 'reference') return new ReferenceBackend();
  if (name === 'wasm') return new WasmBackend();
  const { addon, error } = loadAddon();
  if (!addon)
    throw new Error(
      `backend native: the addon is not available (${error}); install libdnnl-dev and run \`npm rebuild\``,
    );
  const fixed = threads !== undefined || !!process.env.DDPM_THREADS || !!process.env.OMP_NUM_THREADS;
  return new NativeBackend(
    addon,
    threads ?? defaultThreads(),
    convAlgorithm ?? defaultConvAlgorithm(),
    adaptive && !fixed,
  );
}

/** Chooses and installs the engine's backend; returns it. adaptive: see createBackend. */
export function useBackend(name?: string, threads?: number, adaptive = false): Backend {
  const want = name ?? process.env.DDPM_BACKEND;
  if (want !== undefined && !NAMES.includes(want))
    throw new Error(`backend: unknown backend "${want}" (expected native, reference, wasm or webgpu)`);
  if (want === 'webgpu')
    throw new Error('backend webgpu: the device is created asynchronously; use useBackendAsync("webgpu")');
  let b: Backend;
  if (want) b = createBackend(want as 'native' | 'reference' | 'wasm', threads, undefined, adaptive);
  else if (loadAddon().addon) b = createBackend('native', threads, undefined, adaptive);
  else if (process.env.DDPM_REQUIRE_NATIVE === '1') {
    throw new Error(
      `backend: DDPM_REQUIRE_NATIVE=1 but the native addon is not available (${loadAddon().error || 'not built'}); ` +
        'install libdnnl-dev and run `npm rebuild`',
    );
  } else {
    if (!warned)
      console.error(
        'ddpm: native backend not built, using the slow reference backend ' +
          '(apt-get install -y libdnnl-dev, then npm rebuild)',
      );
    warned = true;
    b = new ReferenceBackend();
  }
  setBackend(b);
  return b;
}

/** Chromium's SwiftShader Vulkan driver (Debian's chromium package), used when no system Vulkan driver is installed. */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/**
 * A WebGPU backend in Node through the `webgpu` package (Dawn, Vulkan). Needs the Vulkan loader (libvulkan1) and a
 * driver: a GPU's, or chromium's SwiftShader (used when VK_ICD_FILENAMES is unset and the system's drivers give no
 * adapter).
 */
export async function createNodeWebGPU(): Promise<WebGPUBackend> {
  let mod: { create: (flags: string[]) => GPU };
  try {
    mod = (await import('webgpu')) as unknown as typeof mod;
  } catch (e) {
    throw new Error(
      `backend webgpu: the \`webgpu\` package is not installed (npm install webgpu): ${(e as Error).message}`,
    );
  }
  const icdDir = '/usr/share/vulkan/icd.d';
  const systemIcds = existsSync(icdDir) ? readdirSync(icdDir).filter((f) => f.endsWith('.json')) : [];
  const swiftshader = !process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD);
  if (swiftshader && !systemIcds.length) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  const hint =
    "in Node it needs the Vulkan loader and a driver: a GPU's, or chromium's SwiftShader " +
    '(apt-get install -y libvulkan1 chromium)';
  try {
    return await createWebGPUBackend(mod.create([]));
  } catch (e) {
    if (!swiftshader || process.env.VK_ICD_FILENAMES === SWIFTSHADER_ICD)
      throw new Error(`backend webgpu: ${(e as Error).message}; ${hint}`);
  }
  // the system's drivers gave no adapter Dawn accepts (Mesa's lavapipe lacks features it needs): try SwiftShader
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  try {
    return await createWebGPUBackend(mod.create([]));
  } catch (e) {
    throw new Error(`backend webgpu: ${(e as Error).message}; ${hint}`);
  }
}

/** useBackend, and also `webgpu` (its device is created asynchronously). */
export async function useBackendAsync(name?: string, threads?: number, adaptive = false): Promise<Backend> {
  if ((name ?? process.env.DDPM_BACKEND) !== 'webgpu') return useBackend(name, threads, adaptive);
  const b = await createNodeWebGPU();
  setBackend(b);
  return b;
}
