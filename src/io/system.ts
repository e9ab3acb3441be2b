// What the machine allows this process. Node-only.
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';

/** Memory this process may use: the machine's, or its cgroup's limit when lower. */
export function availableMemory(): number {
  let limit = totalmem();
  for (const f of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const v = Number(readFileSync(f, 'utf8').trim());
      if (Number.isFinite(v) && v > 0) limit = Math.min(limit, v);
    } catch {
      // not in a cgroup with a limit
    }
  }
  return limit;
}

export const gib = (bytes: number): string => (bytes / 2 ** 30).toFixed(1);
