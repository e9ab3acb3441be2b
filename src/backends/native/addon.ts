// Loading the native backend's N-API addon (built from the C++ of native/ on oneDNN): the highest build level the
// CPU runs, found once and cached. Node-only.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

// biome-ignore lint/suspicious/noExplicitAny: the addon's functions are checked by the addon itself (native/binding)
export type Addon = Record<string, (...args: any[]) => any>;

let cached: { addon: Addon | null; error: string } | null = null;

/**
 * Loads the addon once; returns null (with the reason) when it was not built. On x86-64 the addon is built three
 * times: for the baseline (runs anywhere), for x86-64-v3 (AVX2, FMA) and for x86-64-v4 (AVX-512), and the highest
 * level the CPU runs is used (our own loops run about twice as fast at v3 as at the baseline, and v4 doubles their
 * vector width again; oneDNN picks its kernels at run time in all three). DDPM_NATIVE_BUILD=baseline, v3 or v4 asks
 * for one (a level the CPU lacks falls back to the next lower one).
 */
export function loadAddon(): { addon: Addon | null; error: string } {
  if (cached) return cached;
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/src/backends/native -> repository root
  const root = join(here, '..', '..', '..', '..');
  const require = createRequire(import.meta.url);
  const at = (name: string) => [join(root, 'build', 'Release', name), join(root, 'build', 'Debug', name)];
  const want = process.env.DDPM_NATIVE_BUILD || 'v4';
  if (!['baseline', 'v3', 'v4'].includes(want))
    throw new Error(`DDPM_NATIVE_BUILD must be baseline, v3 or v4, got "${want}"`);
  let error = '';
  for (const c of at('ddpm_native.node')) {
    let base: Addon;
    try {
      base = require(c) as Addon;
    } catch (e) {
      // report the first failure (the release build), not the fallback's
      error ||= (e as Error).message.split('\n')[0];
      continue;
    }
    const levels = [
      { name: 'v4', ok: want === 'v4' && !!base.cpuHasV4?.() },
      { name: 'v3', ok: want !== 'baseline' && !!base.cpuHasV3?.() },
    ];
    for (const l of levels) {
      const file = c.replace('ddpm_native.node', `ddpm_native_${l.name}.node`);
      if (!l.ok || !existsSync(file)) continue;
      try {
        cached = { addon: require(file) as Addon, error: '' };
        return cached;
      } catch {
        // fall back to the next lower build
      }
    }
    cached = { addon: base, error: '' };
    return cached;
  }
  cached = { addon: null, error };
  return cached;
}
