// The thread governor (Node-only): the native backend's OpenMP team follows the CPUs that other processes leave free.
//
// OpenMP's static schedules make every parallel region wait for its slowest thread, and a thread that shares its core
// with a busy process runs at half speed or less; the waiting threads spin on top of that. Beside one busy process on
// two cores, a two-thread run took 2.5x its idle time, and beside three 6.6x, where one thread took 1.35x and 2.6x.
// So, when the thread count was not fixed by the user, the backend re-reads the kernel's CPU accounting 0.1 s after
// it starts and then every half second (/proc/stat for the CPUs this process may run on, /proc/self/stat for its own
// share) and runs floor(free + 0.25) threads, between 1 and the maximum: free = allowed CPUs - CPU time others used.
// The same count of threads gives the same floats; a run whose count changed may differ in the last bits (oneDNN's
// matmul picks its blocking by the team size). `--threads N` fixes the count.
import { readFileSync } from 'node:fs';

/** Jiffies of the allowed CPUs: busy (not idle, not iowait) and all; and this process's user + system jiffies. */
export interface CpuTimes {
  busy: number;
  total: number;
  self: number;
}

/** CPUs in a Cpus_allowed_list such as "0-3,6" (from /proc/self/status). */
export function parseCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`Cpus_allowed_list: expected ranges like 0-3,6, got "${list.trim()}"`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    for (let c = lo; c <= hi; c++) cpus.push(c);
  }
  return cpus;
}

/** Sums the /proc/stat lines of the given CPUs and reads this process's jiffies from its /proc/self/stat text. */
export function parseCpuTimes(procStat: string, selfStat: string, cpus: number[]): CpuTimes {
  const want = new Set(cpus);
  let busy = 0;
  let total = 0;
  let seen = 0;
  for (const line of procStat.split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m || !want.has(Number(m[1]))) continue;
    // user nice system idle iowait irq softirq steal (guest time is already inside user)
    const v = m[2].trim().split(/\s+/).slice(0, 8).map(Number);
    const all = v.reduce((a, b) => a + b, 0);
    total += all;
    busy += all - v[3] - (v[4] ?? 0);
    seen++;
  }
  if (seen !== want.size) throw new Error(`/proc/stat: ${want.size} allowed CPUs, ${seen} found`);
  // the command name may hold spaces and parentheses: the fields start after the last ')'; utime, stime are 14, 15
  const f = selfStat.slice(selfStat.lastIndexOf(')') + 2).split(' ');
  const self = Number(f[11]) + Number(f[12]);
  if (!Number.isFinite(self)) throw new Error('/proc/self/stat: no utime and stime');
  return { busy, total, self };
}

/** Threads to run: the allowed CPUs less what others used between two readings, between 1 and max. */
export function threadsFor(before: CpuTimes, after: CpuTimes, cpus: number, max: number): number {
  const dt = after.total - before.total;
  if (dt <= 0) return max;
  const others = Math.max(0, after.busy - before.busy - (after.self - before.self));
  const free = cpus - (cpus * others) / dt;
  return Math.min(max, Math.max(1, Math.floor(free + 0.25)));
}

/** Reads this machine's CPU times, or null where /proc is not there (not Linux) or does not describe this process. */
export function procReader(): { cpus: number; read: () => CpuTimes } | null {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const m = /^Cpus_allowed_list:\s*(.+)$/m.exec(status);
    if (!m) return null;
    const cpus = parseCpuList(m[1]);
    const read = () => parseCpuTimes(readFileSync('/proc/stat', 'utf8'), readFileSync('/proc/self/stat', 'utf8'), cpus);
    read();
    return { cpus: cpus.length, read };
  } catch {
    return null;
  }
}

export class ThreadGovernor {
  private last: CpuTimes;
  private lastAt: number;
  /** the first reading comes sooner, so that a run started beside busy processes adapts before its first steps */
  private interval: number;
  current: number;

  /** max: the most threads; setThreads: applies a count; intervalMs: how often the times are re-read. */
  constructor(
    readonly max: number,
    private readonly setThreads: (n: number) => void,
    private readonly reader: { cpus: number; read: () => CpuTimes },
    private readonly now: () => number = () => performance.now(),
    readonly intervalMs = 500,
  ) {
    this.interval = intervalMs / 5;
    this.current = max;
    this.last = reader.read();
    this.lastAt = now();
  }

  /** Called before each heavy kernel: cheap unless an interval has passed; then re-counts and applies the threads. */
  tick(): void {
    const t = this.now();
    if (t - this.lastAt < this.interval) return;
    this.interval = this.intervalMs;
    let times: CpuTimes;
    try {
      times = this.reader.read();
    } catch {
      return; // /proc vanished (a chroot, a sandbox): keep the current count
    }
    const n = threadsFor(this.last, times, this.reader.cpus, this.max);
    this.last = times;
    this.lastAt = t;
    if (n !== this.current) {
      this.current = n;
      this.setThreads(n);
    }
  }
}
