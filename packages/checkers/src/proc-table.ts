/**
 * A view of /proc shared by every process checker of the process: a scan lists the PIDs and reads
 * `/proc/<pid>/stat` only for PIDs it has not seen (name, start time), so a scan costs one
 * readdir plus a few reads; `alive(p)`, what the checkers call every 100 ms for the PIDs they
 * watch, is one `kill(pid, 0)` system call, with a read of the stat file once a second (zombies,
 * PID reuse: the start time identifies the process).
 * Pure parsing helpers are exported for table tests.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** A process seen in /proc. */
export interface ProcInfo {
  pid: number;
  /** `comm` (the executable's base name, at most 15 characters). */
  comm: string;
  /** Start time (clock ticks since boot): with the pid, identifies the process. */
  start: number;
  /** Process state letter (R, S, D, Z, X, ...). */
  state: string;
  /** The command line (NUL separators replaced by spaces); read lazily. */
  cmdline?: string;
}

/** Parses `/proc/<pid>/stat`. Returns undefined if malformed. */
export function parseStat(pid: number, text: string): ProcInfo | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const comm = text.slice(open + 1, close);
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); starttime is field 22 -> rest[19].
  const state = rest[0];
  const start = Number(rest[19]);
  if (!state || !Number.isFinite(start)) return undefined;
  return { pid, comm, start, state };
}

/** True if a process of this name/cmdline matches `name` (comm, or argv[0]'s base name) and `args`. */
export function matches(p: ProcInfo, name: string | undefined, args: RegExp | undefined, cmdline: () => string): boolean {
  if (name !== undefined) {
    if (p.comm !== name && !(name.length > 15 && p.comm === name.slice(0, 15))) {
      const argv0 = cmdline().split(' ')[0] ?? '';
      if (argv0.slice(argv0.lastIndexOf('/') + 1) !== name) return false;
    } else if (name.length > 15) {
      const argv0 = cmdline().split(' ')[0] ?? '';
      if (argv0.slice(argv0.lastIndexOf('/') + 1) !== name) return false;
    }
  }
  if (args !== undefined && !args.test(cmdline())) return false;
  return true;
}

function readStat(pid: number): ProcInfo | undefined {
  try { return parseStat(pid, readFileSync(`/proc/${pid}/stat`, 'latin1')); } catch { return undefined; }
}

function readCmdline(pid: number): string {
  try { return readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0+$/, '').replace(/\0/g, ' '); } catch { return ''; }
}

const YOUNG_MS = 3000;

/** The shared table. */
export class ProcTable {
  #known = new Map<number, ProcInfo>();
  #firstSeen = new Map<number, number>();
  #lastScan = 0;
  /** Scans run (for benchmarks). */
  scans = 0;

  /** Lists live processes; scans at most every `maxAgeMs` (default 50), else returns the cache. */
  list(maxAgeMs = 50): ProcInfo[] {
    const now = performance.now();
    if (now - this.#lastScan >= maxAgeMs) this.#scan();
    return [...this.#known.values()];
  }

  #scan(): void {
    this.scans++;
    this.#lastScan = performance.now();
    const seen = new Set<number>();
    for (const e of readdirSync('/proc')) {
      const c = e.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(e);
      seen.add(pid);
      const old = this.#known.get(pid);
      // A young process may still exec (fork, then exec: same pid and start time, new name):
      // re-read it for a few seconds after it was first seen.
      if (old && this.#lastScan - (this.#firstSeen.get(pid) ?? 0) > YOUNG_MS) continue;
      const info = readStat(pid);
      if (!info) continue;
      if (old && old.start === info.start && old.comm === info.comm) continue;
      this.#known.set(pid, info);
      if (!old || old.start !== info.start) this.#firstSeen.set(pid, this.#lastScan);
    }
    for (const pid of this.#known.keys()) if (!seen.has(pid)) { this.#known.delete(pid); this.#firstSeen.delete(pid); }
  }

  #pollers = new Map<number, Set<() => void>>();
  #timers = new Map<number, NodeJS.Timeout>();

  /** Calls `fn` every `ms`, on one timer shared by every caller with the same period. Returns an unsubscribe. */
  every(ms: number, fn: () => void): () => void {
    let set = this.#pollers.get(ms);
    if (!set) {
      const s = new Set<() => void>();
      set = s;
      this.#pollers.set(ms, s);
      const t = setInterval(() => { for (const f of s) f(); }, ms);
      t.unref();
      this.#timers.set(ms, t);
    }
    set.add(fn);
    return () => {
      const s = this.#pollers.get(ms);
      if (!s) return;
      s.delete(fn);
      if (s.size === 0) { clearInterval(this.#timers.get(ms)); this.#timers.delete(ms); this.#pollers.delete(ms); }
    };
  }

  /** The command line of a known process (cached). */
  cmdline(p: ProcInfo): string {
    if (p.cmdline === undefined) p.cmdline = readCmdline(p.pid);
    return p.cmdline;
  }

  /**
   * True if the process still runs. The fast path is one `kill(pid, 0)` system call (no file I/O:
   * a reaped process is gone at once); every `verifyMs` (default 1000) the stat file is read too,
   * to see a zombie its parent has not reaped yet and a PID reused by another process (start time).
   * Forgets the process when it is gone.
   */
  alive(p: ProcInfo & { verifiedAt?: number }, verifyMs = 1000): boolean {
    let ok = true;
    try { process.kill(p.pid, 0); } catch (err) { ok = (err as NodeJS.ErrnoException).code === 'EPERM'; }
    const t = performance.now();
    if (ok && t - (p.verifiedAt ?? 0) >= verifyMs) {
      const now = readStat(p.pid);
      ok = now !== undefined && now.start === p.start && now.state !== 'Z' && now.state !== 'X' && now.state !== 'x';
      p.verifiedAt = t;
    }
    if (!ok) this.#known.delete(p.pid);
    return ok;
  }
}

/** The table of this process. */
export const procTable = new ProcTable();
