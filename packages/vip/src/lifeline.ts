/**
 * The lifeline: a watchdog process that undoes what this process set up (VIPs, application
 * process groups) if this process dies, SIGKILL included. keepalived killed with SIGKILL
 * leaves the VIP on the dead master, which keeps answering ARP for it beside the new master;
 * with a lifeline the dead node stops answering within milliseconds.
 *
 * How it works: the watchdog (`lifeline-process.ts`) is spawned detached (its own process
 * group, so a signal to ours does not take it down first) with a pipe on its stdin and
 * nothing else of ours. We write the full state on every change. The kernel closes the pipe
 * when we die, however we die; the watchdog then sees end-of-file without a clean "bye" and
 * acts. It does not keep our event loop alive and does not hold our stdout/stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { StatusGuard, type ModuleLog, type Startable, nullLog, HaError } from '@ha/interface';
import { mergeStates, stateProblems, type LifelineState } from './lifeline-protocol.js';
import { InvalidOptionError } from './errors.js';

/** Options of {@link lifeline}. @public */
export interface LifelineInit {
  /** File the watchdog appends JSON lines to (what it did when the parent died). Default: none. */
  logFile?: string;
  /** How long `start()` waits for the watchdog to report ready; default 15000 ms. */
  readyTimeoutMs?: number;
}

/** Components of {@link lifeline}. @public */
export interface LifelineComponents { log?: ModuleLog }

/** The watchdog handle. @public */
export interface Lifeline extends Startable {
  /**
   * Sets what `owner` needs undone if this process dies (replacing that owner's previous
   * state; an empty state or `undefined` removes the owner). Owners are independent keys,
   * e.g. 'app' for the application's process groups and 'vip:198.18.0.100' for a VIP.
   * The merged state of all owners is sent to the watchdog at once (and again if it is
   * restarted). May be called before `start()`: the state is sent when it starts.
   * @throws {@link InvalidOptionError} if the state is malformed.
   */
  update(owner: string, state: LifelineState | undefined): void;
  /** The merged state of all owners, as last sent. */
  state(): Required<LifelineState>;
  /** The watchdog's PID while started. */
  readonly pid: number | undefined;
}

/**
 * Creates a lifeline component.
 * @example
 * ```ts
 * const ll = lifeline({ logFile: '/var/log/ha/lifeline.log' })({ log })
 * await ll.start()
 * ll.update('app', { pgids: [appPgid] })   // SIGKILLed if we die
 * await ll.stop()                           // clean: the watchdog exits without undoing anything
 * ```
 * @public
 */
export function lifeline(init: LifelineInit = {}): (components: LifelineComponents) => Lifeline {
  if (init.readyTimeoutMs !== undefined && !(init.readyTimeoutMs > 0)) {
    throw new InvalidOptionError(`lifeline: readyTimeoutMs must be a positive number of ms, got ${String(init.readyTimeoutMs)}`);
  }
  return (components) => new LifelineImpl(init, components);
}

/** The path of the watchdog script: the built .js next to this file, or the .ts in development. @internal */
export function watchdogScript(): string {
  const js = fileURLToPath(new URL('./lifeline-process.js', import.meta.url));
  if (existsSync(js)) return js;
  const ts = fileURLToPath(new URL('./lifeline-process.ts', import.meta.url));
  if (existsSync(ts)) return ts;
  throw new HaError('ERR_VIP_LIFELINE', `lifeline: watchdog script not found (looked for ${js} and ${ts})`);
}

class LifelineImpl implements Lifeline {
  readonly #guard = new StatusGuard('lifeline');
  readonly #log: ModuleLog;
  readonly #owners = new Map<string, LifelineState>();
  #child: ChildProcess | undefined;
  #stopping = false;

  constructor(private readonly init: LifelineInit, components: LifelineComponents) {
    this.#log = (components.log ?? nullLog()).child('lifeline');
  }

  get pid(): number | undefined { return this.#child?.pid; }

  async start(): Promise<void> {
    await this.#guard.start(async () => {
      this.#stopping = false;
      await this.#spawn();
    });
  }

  async stop(): Promise<void> {
    await this.#guard.stop(async () => {
      this.#stopping = true;
      const child = this.#child;
      this.#child = undefined;
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin?.end(JSON.stringify({ bye: true }) + '\n');
      const timer = setTimeout(() => { child.kill('SIGKILL'); }, 3000);
      await exited;
      clearTimeout(timer);
      this.#log.debug('lifeline:stopped', `watchdog ${child.pid} exited after a clean stop`);
    });
  }

  update(owner: string, state: LifelineState | undefined): void {
    if (typeof owner !== 'string' || owner === '') throw new InvalidOptionError('lifeline.update: owner must be a non-empty string');
    if (state !== undefined) {
      const problems = stateProblems(state);
      if (problems.length > 0) throw new InvalidOptionError(`lifeline.update(${owner}): ${problems.join('; ')}`, { details: { owner } });
    }
    const empty = state === undefined || (!state.vips?.length && !state.pgids?.length && !state.pids?.length && !state.onDeath?.length && !state.fuseAbort?.length);
    if (empty) this.#owners.delete(owner); else this.#owners.set(owner, structuredClone(state));
    this.#send();
  }

  state(): Required<LifelineState> { return mergeStates(this.#owners.values()); }

  #send(): void {
    const child = this.#child;
    if (child?.stdin === null || child?.stdin === undefined || child.stdin.destroyed) return;
    child.stdin.write(JSON.stringify(this.state()) + '\n');
  }

  async #spawn(): Promise<void> {
    const script = watchdogScript();
    // Keep the loaders (tsx in development) but not debugger flags, which would clash on the port.
    const execArgv = process.execArgv.filter((a) => !/^--inspect|^--debug/.test(a));
    const args = [...execArgv, script, ...(this.init.logFile ? [this.init.logFile] : [])];
    const child = spawn(process.execPath, args, { detached: true, stdio: ['pipe', 'pipe', 'ignore'] });
    this.#child = child;
    child.stdin!.on('error', (err) => {
      this.#log.warn('lifeline:pipe-error', `writing to watchdog ${child.pid} failed: ${err.message}`);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timeoutMs = this.init.readyTimeoutMs ?? 15_000;
        const timer = setTimeout(() => reject(new HaError('ERR_VIP_LIFELINE', `lifeline: watchdog did not report ready within ${timeoutMs} ms`)), timeoutMs);
        let out = '';
        child.stdout!.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('ready\n')) { clearTimeout(timer); resolve(); }
        });
        child.once('error', (err) => { clearTimeout(timer); reject(new HaError('ERR_VIP_LIFELINE', `lifeline: could not start the watchdog: ${err.message}`, { cause: err })); });
        child.once('exit', (code, signal) => { clearTimeout(timer); reject(new HaError('ERR_VIP_LIFELINE', `lifeline: watchdog exited at start (${signal ?? `exit ${code}`})`)); });
      });
    } catch (err) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      this.#child = undefined;
      throw err;
    }
    child.stdout!.destroy();
    // Neither the process nor its pipe keeps our event loop alive.
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    child.removeAllListeners('exit');
    child.once('exit', (code, signal) => {
      if (this.#stopping || this.#child !== child) return;
      this.#child = undefined;
      this.#log.error('lifeline:died', `watchdog ${child.pid} exited unexpectedly (${signal ?? `exit ${code}`}); restarting it`, { pid: child.pid });
      this.#spawn().catch((err: unknown) => {
        this.#log.error('lifeline:died', `could not restart the watchdog: ${(err as Error).message}; VIPs and processes are not protected if this process dies`);
      });
    });
    this.#send();
    this.#log.info('lifeline:started', `watchdog ${child.pid} started`, { pid: child.pid, logFile: this.init.logFile });
  }
}
