/**
 * The process checker (`<errd><proc>`): a named process must run at least `atleast` (and at most
 * `atmost`) times. Death is seen within `pollMs` (default 100 ms) of it: the PIDs found by a slow
 * /proc scan (`scanMs`, default 1 s) are watched by reading their /proc stat file every `pollMs`
 * (cheap: see bench/checkers.ts); a child process given by the embedding code is watched through
 * its exit event (immediate). A single PID can be watched too.
 */
import type { ChildProcess } from 'node:child_process';
import { BaseChecker, CheckerConfigError, positive, type CheckerComponents, type CheckerFactory } from './checker.js';
import { matches, procTable, type ProcInfo } from './proc-table.js';

/** `processChecker` options. @public */
export interface ProcessCheckerInit {
  /** Resource name (default `process.<name>`). */
  name?: string;
  /** Process name to count: its `comm` or the base name of its argv[0]. */
  process?: string;
  /** Also (or only) match the full command line (arguments separated by spaces). */
  args?: RegExp;
  /** A single PID to watch (down when it exits). */
  pid?: number;
  /** A child process to watch through its exit event. */
  child?: ChildProcess;
  /** Minimum number of instances (default 1). */
  atleast?: number;
  /** Maximum number of instances (default: no limit). */
  atmost?: number;
  /** How often watched PIDs are checked (default 100 ms). */
  pollMs?: number;
  /** How often /proc is scanned for new instances (default 5000 ms; death is seen by the 100 ms poll, not the scan). */
  scanMs?: number;
}

class ProcessChecker extends BaseChecker {
  #watched: ProcInfo[] = [];
  #unpoll: (() => void) | undefined;
  #unscan: (() => void) | undefined;
  #onExit: ((code: number | null, sig: NodeJS.Signals | null) => void) | undefined;
  readonly atleast: number;
  readonly atmost: number | undefined;
  readonly pollMs: number;
  readonly scanMs: number;

  constructor(readonly init: ProcessCheckerInit, c: CheckerComponents) {
    super(init.name ?? `process.${init.process ?? (init.pid !== undefined ? init.pid : init.child?.pid ?? init.args?.source ?? '?')}`, 'process', c);
    const targets = [init.process !== undefined || init.args !== undefined, init.pid !== undefined, init.child !== undefined].filter(Boolean).length;
    if (targets !== 1) throw new CheckerConfigError(this.name, 'process', 'give exactly one of: process (and/or args), pid, child');
    if (init.process !== undefined && (typeof init.process !== 'string' || !init.process || init.process.includes('/'))) {
      throw new CheckerConfigError(this.name, 'process', `must be a process name without '/', got ${JSON.stringify(init.process)}`);
    }
    if (init.pid !== undefined && (!Number.isInteger(init.pid) || init.pid < 1)) throw new CheckerConfigError(this.name, 'pid', `must be a positive integer, got ${String(init.pid)}`);
    positive(this.name, 'atleast', init.atleast, 0);
    positive(this.name, 'pollMs', init.pollMs, 10);
    positive(this.name, 'scanMs', init.scanMs, 50);
    this.atleast = init.atleast ?? 1;
    this.atmost = init.atmost;
    if (this.atmost !== undefined && (!Number.isInteger(this.atmost) || this.atmost < this.atleast)) {
      throw new CheckerConfigError(this.name, 'atmost', `must be an integer >= atleast (${this.atleast}), got ${String(this.atmost)}`);
    }
    this.pollMs = init.pollMs ?? 100;
    this.scanMs = init.scanMs ?? 5000;
  }

  /** PIDs currently counted. */
  get pids(): number[] { return this.#watched.map((p) => p.pid); }

  async start(): Promise<void> {
    await this.guard.start(async () => {
      this.reset();
      const { child } = this.init;
      if (child) {
        if (child.exitCode !== null || child.signalCode !== null) { this.set('down', `child process ${child.pid ?? ''} has exited`); return; }
        this.#onExit = (code, sig) => { this.checks++; this.set('down', `child process ${child.pid} exited (${sig ?? code})`); };
        child.once('exit', this.#onExit);
        this.set('up', `child process ${child.pid} runs`);
        return;
      }
      this.rescan(true);
      this.#unpoll = procTable.every(this.pollMs, () => this.#pollOnce());
      this.#unscan = procTable.every(this.scanMs, () => this.rescan());
    });
  }

  async stop(): Promise<void> {
    await this.guard.stop(async () => {
      this.#unpoll?.();
      this.#unscan?.();
      this.#unpoll = this.#unscan = undefined;
      if (this.#onExit) this.init.child?.off('exit', this.#onExit);
      this.#onExit = undefined;
      this.#watched = [];
    });
  }

  /**
   * Scans /proc for the instances. `fresh` (at start, e.g. right after the application was
   * restarted) forces a new scan; the periodic scans share the table's last scan when recent,
   * so several process checkers cost one scan per interval.
   */
  rescan(fresh = false): void {
    const { process: name, args, pid } = this.init;
    let found: ProcInfo[];
    try {
      const all = procTable.list(fresh ? 0 : this.scanMs * 0.9);
      found = pid !== undefined ? all.filter((p) => p.pid === pid) : all.filter((p) => p.pid !== process.pid && matches(p, name, args, () => procTable.cmdline(p)));
      found = found.filter((p) => p.state !== 'Z' && p.state !== 'X');
    } catch (err) {
      this.fault('error', `scanning /proc failed: ${(err as Error).message}`);
      this.set('unknown', `scanning /proc failed: ${(err as Error).message}`);
      return;
    }
    this.#watched = found;
    this.#evaluate('scan');
  }

  #pollOnce(): void {
    if (this.#watched.length === 0) return;
    const before = this.#watched.length;
    this.#watched = this.#watched.filter((p) => procTable.alive(p));
    if (this.#watched.length !== before) this.#evaluate('exit');
  }

  #evaluate(why: 'scan' | 'exit'): void {
    this.checks++;
    const n = this.#watched.length;
    const what = this.init.process ?? (this.init.pid !== undefined ? `pid ${this.init.pid}` : `/${this.init.args?.source}/`);
    if (n < this.atleast) {
      this.set('down', `${what}: ${n} running, at least ${this.atleast} needed${why === 'exit' ? ' (a process exited)' : ''}`);
    } else if (this.atmost !== undefined && n > this.atmost) {
      this.set('down', `${what}: ${n} running, at most ${this.atmost} allowed`);
    } else {
      this.set('up', `${what}: ${n} running (pids ${this.pids.slice(0, 8).join(', ')}${n > 8 ? ', ...' : ''})`);
    }
  }
}

/**
 * A process checker: a named process must run `atleast` (default 1) to `atmost` times; or one
 * PID, or one child process, must be alive.
 * @public
 */
export function processChecker(init: ProcessCheckerInit): CheckerFactory {
  return (c) => new ProcessChecker(init, c);
}

/** The process checker's extra method. @public */
export interface ProcessCheckerHandle {
  rescan(): void;
  readonly pids: number[];
}
