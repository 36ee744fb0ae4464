/**
 * Checkers written by the embedding developer: an async function (`customChecker`), a class with
 * start/stop that reports its own state (`eventChecker` base), an executable (`execChecker`, as
 * `<custom exec>` in userconfig.xml), or another module's state (`moduleChecker`).
 */
import { BaseChecker, CheckerConfigError, PollingChecker, type CheckerComponents, type CheckerFactory, type CheckResult, type PollingInit, type ResourceState } from './checker.js';
import { execProbe } from './probes.js';

/** `customChecker` options. @public */
export interface CustomCheckerInit extends PollingInit {
  name: string;
  /**
   * The check: resolve true (up) / false (down) or `{ state, reason }`. Throwing, or not settling
   * within `timeoutMs` (default 5 s), is a fault of the checker: the resource becomes `unknown`
   * and the fault is reported. Honour `signal` to stop work on a timeout.
   */
  check(signal: AbortSignal): Promise<CheckResult> | CheckResult;
}

class FnChecker extends PollingChecker {
  constructor(readonly init: CustomCheckerInit, c: CheckerComponents) {
    super(init.name, 'custom', init, c, { intervalMs: 5_000, timeoutMs: 5_000 });
    if (typeof init.check !== 'function') throw new CheckerConfigError(this.name, 'check', 'must be an async function (signal) => boolean | { state, reason }');
  }
  protected describe(): string { return `custom check ${this.name}`; }
  protected async check(signal: AbortSignal): Promise<CheckResult> { return this.init.check(signal); }
}

/**
 * A checker that runs an async function at an interval, with a timeout.
 * @example
 * ```ts
 * customChecker({ name: 'db', intervalMs: 2000, timeoutMs: 1000, check: async (signal) => (await fetch('http://127.0.0.1:8080/health', { signal })).ok })
 * ```
 * @public
 */
export function customChecker(init: CustomCheckerInit): CheckerFactory {
  if (!init || typeof init.name !== 'string' || !init.name) throw new CheckerConfigError(String(init?.name), 'name', 'a custom checker needs a name');
  return (c) => new FnChecker(init, c);
}

/** `execChecker` options. @public */
export interface ExecCheckerInit extends PollingInit {
  name: string;
  /** Executable: exit code 0 = up, any other = down; killed when `timeoutMs` expires. */
  file: string;
  args?: string[];
  env?: Record<string, string>;
}

class ExecChecker extends PollingChecker {
  constructor(readonly init: ExecCheckerInit, c: CheckerComponents) {
    super(init.name, 'exec', init, c, { intervalMs: 10_000, timeoutMs: 5_000 });
    if (typeof init.file !== 'string' || !init.file) throw new CheckerConfigError(this.name, 'file', 'must be the path of an executable');
  }
  protected describe(): string { return `${this.init.file}`; }
  protected async check(signal: AbortSignal): Promise<CheckResult> {
    const r = await execProbe(this.init.file, this.init.args ?? [], signal, this.init.env);
    if (signal.aborted) return { state: 'unknown' };
    return r.code === 0 ? { state: 'up', reason: `${this.init.file} exited 0` } : { state: 'down', reason: `${this.init.file} exited ${r.code ?? r.signal}${r.output ? ': ' + r.output.slice(0, 200) : ''}` };
  }
}

/** A checker that runs an executable at an interval (exit 0 = up). @public */
export function execChecker(init: ExecCheckerInit): CheckerFactory {
  return (c) => new ExecChecker(init, c);
}

/**
 * Base class for a checker that pushes its own state (e.g. subscribes to something) instead of
 * being polled: extend it, call `this.report(state, reason)`, implement `onStart`/`onStop`.
 * @public
 */
export abstract class EventChecker extends BaseChecker {
  constructor(name: string, components: CheckerComponents = {}) { super(name, 'custom', components); }
  protected abstract onStart(): Promise<void> | void;
  protected abstract onStop(): Promise<void> | void;
  /** Reports the resource's state. */
  protected report(state: ResourceState, reason: string): void { this.checks++; this.set(state, reason); }
  async start(): Promise<void> { await this.guard.start(async () => { this.reset(); await this.onStart(); }); }
  async stop(): Promise<void> { await this.guard.stop(async () => { await this.onStop(); }); }
}

/** `moduleChecker` options. @public */
export interface ModuleCheckerInit extends PollingInit {
  /** The other module's name. */
  module: string;
  /** Its state now (e.g. `() => otherCluster.mirror.state`); up when in `upStates`. */
  state(): string | Promise<string>;
  /** States that count as up (default ALONE, PRIM, SECOND, UP). */
  upStates?: string[];
}

class ModuleChecker extends PollingChecker {
  constructor(readonly init: ModuleCheckerInit, c: CheckerComponents) {
    super(init.name ?? `module.${init.module}`, 'module', init, c, { intervalMs: 1_000, timeoutMs: 1_000 });
  }
  protected describe(): string { return `module ${this.init.module}`; }
  protected async check(): Promise<CheckResult> {
    const s = await this.init.state();
    const up = (this.init.upStates ?? ['ALONE', 'PRIM', 'SECOND', 'UP']).includes(s);
    return { state: up ? 'up' : 'down', reason: `module ${this.init.module} is ${s}` };
  }
}

/** A checker that another module is up. @public */
export function moduleChecker(init: ModuleCheckerInit): CheckerFactory {
  return (c) => new ModuleChecker(init, c);
}
