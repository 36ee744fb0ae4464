/**
 * Starting and stopping the application: async callbacks when the SDK is embedded, executables
 * (start_prim / stop_prim) when a module runs from a userconfig.xml.
 *
 * Stop is in two phases, as in the reference product: a graceful stop (callback with
 * `force: false`, or `stop_prim`) bounded by `niceStopTimeoutMs`, then a forced stop (callback with
 * `force: true`, or `stop_prim force`) bounded by `forceStopTimeoutMs`; then whatever is left of the
 * processes started by the start script (its process group) is killed with SIGKILL.
 * Script output (stdout and stderr, of the script and of what it starts) goes to the application
 * log file, framed by a timestamped line per run.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, statSync, writeSync, accessSync, constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { HaError, type ModuleLog } from '@ha/interface';
import type { Lifeline } from '@ha/vip';

/** Context given to application callbacks. @public */
export interface AppContext {
  module: string;
  node: string;
  /** Aborted when the call's timeout expires. */
  signal: AbortSignal;
  log: ModuleLog;
}

/** Application callbacks, for an embedding service. @public */
export interface AppCallbacks {
  /** Start the application (this node just became primary). */
  start(ctx: AppContext): Promise<void> | void;
  /** Stop it: first with `force: false`, then always once more with `force: true`. */
  stop(ctx: AppContext & { force: boolean }): Promise<void> | void;
}

/** Application scripts, for a module run from a userconfig.xml. @public */
export interface AppScripts {
  /** Directory holding the scripts. */
  dir: string;
  /** Script names (defaults: start_prim, stop_prim). Missing scripts are skipped with a log line. */
  start?: string;
  stop?: string;
  /** Extra environment. */
  env?: Record<string, string>;
}

export interface AppRunnerInit {
  module: string;
  node: string;
  callbacks?: AppCallbacks | undefined;
  scripts?: AppScripts | undefined;
  niceStopTimeoutMs: number;
  forceStopTimeoutMs: number;
  startTimeoutMs: number;
  appLogFile?: string | undefined;
  env?: Record<string, string> | undefined;
}

/** The application's start failed. @public */
export class AppStartError extends HaError {
  constructor(message: string, cause?: unknown) { super('ERR_APP_START', message, { cause }); }
}

/** A script is missing or not executable. @public */
export class AppScriptError extends HaError {
  constructor(message: string) { super('ERR_APP_SCRIPT', message); }
}

interface RunResult { code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; ms: number }

export class AppRunner {
  #running = false;
  #pgids = new Set<number>();

  constructor(private readonly init: AppRunnerInit, private readonly log: ModuleLog, private readonly lifeline?: Lifeline) {
    if (init.scripts) {
      for (const name of [init.scripts.start ?? 'start_prim', init.scripts.stop ?? 'stop_prim']) {
        const file = join(init.scripts.dir, name);
        if (!existsSync(file)) continue; // allowed: logged when it would run
        try { accessSync(file, constants.X_OK); } catch {
          throw new AppScriptError(`script ${file} is not executable (chmod +x ${file})`);
        }
        if (!statSync(file).isFile()) throw new AppScriptError(`script ${file} is not a regular file`);
      }
    }
  }

  get running(): boolean { return this.#running; }

  /** Starts the application. Throws AppStartError if the callback throws or the script fails. */
  async start(): Promise<void> {
    const { init } = this;
    const t0 = Date.now();
    if (init.callbacks) {
      await this.#callback('start', (ctx) => init.callbacks!.start(ctx), init.startTimeoutMs).catch((err) => {
        throw new AppStartError(`application start callback failed: ${(err as Error).message}`, err);
      });
    } else if (init.scripts) {
      const r = await this.#script(init.scripts.start ?? 'start_prim', [], init.startTimeoutMs, true);
      if (r && (r.code !== 0 || r.timedOut)) {
        this.#running = true; // processes may have been started: stop must clean them
        throw new AppStartError(`start script ${init.scripts.start ?? 'start_prim'} ${r.timedOut ? `did not finish within ${init.startTimeoutMs} ms` : `exited with ${r.code ?? r.signal}`} (see the application log)`);
      }
    }
    this.#running = true;
    this.log.info('app:started', `application started in ${Date.now() - t0} ms`, { ms: Date.now() - t0 });
  }

  /** Stops the application: graceful, then forced, then kill what is left. Never throws. */
  async stop(reason: string): Promise<{ forced: boolean; ms: number }> {
    const { init } = this;
    const t0 = Date.now();
    let forced = false;
    this.log.info('app:stopping', `stopping the application: ${reason}`);
    if (init.callbacks) {
      try {
        await this.#callback('stop', (ctx) => init.callbacks!.stop({ ...ctx, force: false }), init.niceStopTimeoutMs);
      } catch (err) {
        forced = true;
        this.log.warn('app:stop-graceful-failed', `graceful stop failed or timed out (${(err as Error).message}); forcing`);
      }
      try {
        await this.#callback('stop', (ctx) => init.callbacks!.stop({ ...ctx, force: true }), init.forceStopTimeoutMs);
      } catch (err) {
        this.log.error('app:stop-force-failed', `forced stop failed or timed out: ${(err as Error).message}`);
      }
    } else if (init.scripts) {
      const stop = init.scripts.stop ?? 'stop_prim';
      const r1 = await this.#script(stop, [], init.niceStopTimeoutMs, false);
      if (r1 && (r1.timedOut || r1.code !== 0)) forced = true;
      await this.#script(stop, ['force'], init.forceStopTimeoutMs, false);
    }
    this.#killLeftovers();
    this.#running = false;
    const ms = Date.now() - t0;
    this.log.info('app:stopped', `application stopped in ${ms} ms${forced ? ' (graceful stop failed: forced)' : ''}`, { ms, forced });
    return { forced, ms };
  }

  async #callback(what: string, fn: (ctx: AppContext) => Promise<void> | void, timeoutMs: number): Promise<void> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => { ac.abort(); reject(new Error(`${what} callback did not finish within ${timeoutMs} ms`)); }, timeoutMs);
    });
    try {
      await Promise.race([Promise.resolve().then(() => fn({ module: this.init.module, node: this.init.node, signal: ac.signal, log: this.log })), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs a script in its own process group, output to the application log. */
  async #script(name: string, args: string[], timeoutMs: number, isStart: boolean): Promise<RunResult | undefined> {
    const file = join(this.init.scripts!.dir, name);
    if (!existsSync(file)) {
      this.log.info('app:script-missing', `no ${name} script in ${this.init.scripts!.dir}: nothing to run`);
      return undefined;
    }
    const t0 = Date.now();
    const label = [name, ...args].join(' ');
    const out = this.#openAppLog();
    this.#appLogLine(out, `=== ${new Date().toISOString()} ${label} ===`);
    const env = {
      ...process.env, ...this.init.env, ...this.init.scripts!.env,
      HA_MODULE: this.init.module, HA_NODE: this.init.node, HA_ACTION: name,
    };
    return new Promise<RunResult>((resolveP) => {
      const child = spawn(file, args, { detached: true, stdio: ['ignore', out ?? 'ignore', out ?? 'ignore'], env, cwd: this.init.scripts!.dir });
      if (out !== undefined) closeSync(out);
      let timedOut = false;
      const pid = child.pid;
      if (pid && isStart) {
        // The start script's process group holds the application it started in the background.
        this.#pgids.add(pid);
        this.lifeline?.update('app', { pgids: [...this.#pgids] });
      }
      const timer = setTimeout(() => {
        timedOut = true;
        this.log.warn('app:script-timeout', `${label} did not finish within ${timeoutMs} ms: killing it`);
        if (pid) { try { process.kill(isStart ? pid : -pid, 'SIGKILL'); } catch { /* gone */ } }
      }, timeoutMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        this.log.error('app:script-error', `${name} could not be run: ${err.message}`);
        resolveP({ code: 127, signal: null, timedOut, ms: Date.now() - t0 });
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        const ms = Date.now() - t0;
        const o = this.#openAppLog();
        this.#appLogLine(o, `=== ${new Date().toISOString()} ${label} exited ${code ?? signal} after ${ms} ms ===`);
        if (o !== undefined) closeSync(o);
        const lvl = code === 0 ? 'info' : 'warn';
        this.log[lvl]('app:script', `${label} exited with ${code ?? signal} after ${ms} ms`, { script: name, args, code, signal, ms });
        resolveP({ code, signal, timedOut, ms });
      });
    });
  }

  #killLeftovers(): void {
    for (const pgid of this.#pgids) {
      let alive = false;
      try { process.kill(-pgid, 0); alive = true; } catch { /* empty group */ }
      if (alive) {
        this.log.warn('app:kill', `processes left in the application's process group ${pgid} after the stop scripts: killing them (SIGKILL)`);
        try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    this.#pgids.clear();
    this.lifeline?.update('app', { pgids: [] });
  }

  #openAppLog(): number | undefined {
    const f = this.init.appLogFile;
    if (!f) return undefined;
    try {
      mkdirSync(dirname(f), { recursive: true });
      return openSync(f, 'a', 0o640);
    } catch (err) {
      this.log.warn('app:log', `application log ${f} cannot be opened: ${(err as Error).message}`);
      return undefined;
    }
  }

  #appLogLine(fd: number | undefined, line: string): void {
    if (fd === undefined) return;
    try { writeSync(fd, line + '\n'); } catch { /* best effort */ }
  }
}
