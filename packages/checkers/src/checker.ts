/**
 * What every checker is: a Startable component that maps one resource to a state (up, down,
 * unknown), emits a `change` event when it moves, and reports itself when its own check hangs or
 * throws. {@link PollingChecker} is the base of the checkers that probe at an interval: each probe
 * runs with a timeout and an AbortSignal; a probe that does not finish in time is abandoned (the
 * resource becomes `unknown` and a `checker:timeout` is reported) and never delays the other
 * checkers, which each have their own timer.
 */
import { EventEmitter } from 'eventemitter3';
import { HaError, StatusGuard, nullLog, type ModuleLog, type Startable } from '@ha/interface';

/** State of a checked resource. @public */
export type ResourceState = 'up' | 'down' | 'unknown';

/** A resource changed state. @public */
export interface ResourceChange {
  /** The resource (checker) name, e.g. `process.nginx`, `tcp.web`. */
  resource: string;
  kind: string;
  state: ResourceState;
  previous: ResourceState;
  /** Why, in words. */
  reason: string;
  at: string;
}

/** The checker itself failed (threw, or its check did not finish within its timeout). @public */
export interface CheckerFault {
  resource: string;
  kind: string;
  /** 'timeout' or 'error'. */
  fault: 'timeout' | 'error';
  message: string;
  at: string;
}

/** Events of a checker. @public */
export interface CheckerEvents {
  change: [ResourceChange];
  fault: [CheckerFault];
}

/** What a checker shows in `ha state`. @public */
export interface ResourceStatus {
  resource: string;
  kind: string;
  state: ResourceState;
  reason: string;
  since: string;
  /** Checks run (polling checkers) or events seen. */
  checks: number;
  /** Faults of the checker itself (timeouts, exceptions). */
  faults: number;
}

/** A checker: one resource, its state, and events. @public */
export interface Checker extends Startable, EventEmitter<CheckerEvents> {
  readonly name: string;
  readonly kind: string;
  readonly state: ResourceState;
  status(): ResourceStatus;
}

/** Components a checker factory receives. @public */
export interface CheckerComponents {
  log?: ModuleLog;
}

/** A checker factory (js-libp2p style). @public */
export type CheckerFactory = (components: CheckerComponents) => Checker;

/** A checker's configuration is invalid. @public */
export class CheckerConfigError extends HaError {
  constructor(checker: string, field: string, message: string) {
    super('ERR_CHECKER_CONFIG', `checker ${checker}: ${field}: ${message}`, { details: { checker, field } });
  }
}

/** A check did not finish within its timeout. @public */
export class CheckTimeoutError extends HaError {
  constructor(resource: string, ms: number) { super('ERR_CHECK_TIMEOUT', `checker ${resource}: check did not finish within ${ms} ms`, { details: { resource, ms } }); }
}

/** The result of one check: a boolean, or a state with a reason. @public */
export type CheckResult = boolean | { state: ResourceState; reason?: string };

/** Common options of polling checkers. @public */
export interface PollingInit {
  /** Resource name (default: derived from the target). */
  name?: string;
  /** Interval between checks (ms). */
  intervalMs?: number;
  /** A check that takes longer is abandoned and reported (ms). */
  timeoutMs?: number;
  /** Consecutive failed checks before the resource is down (default 1). */
  failures?: number;
}

export function positive(checker: string, field: string, v: number | undefined, min = 1): void {
  if (v !== undefined && (!Number.isFinite(v) || v < min)) throw new CheckerConfigError(checker, field, `must be a number >= ${min}, got ${String(v)}`);
}

/** Base of every checker: state, events, status, lifecycle guard. @public */
export abstract class BaseChecker extends EventEmitter<CheckerEvents> implements Checker {
  #state: ResourceState = 'unknown';
  #reason = 'not checked yet';
  #since = new Date().toISOString();
  protected checks = 0;
  protected faults = 0;
  protected readonly guard: StatusGuard;
  protected readonly log: ModuleLog;

  constructor(readonly name: string, readonly kind: string, components: CheckerComponents) {
    super();
    this.guard = new StatusGuard(`checker ${name}`);
    this.log = (components.log ?? nullLog()).child(`check:${name}`);
  }

  get state(): ResourceState { return this.#state; }
  get reason(): string { return this.#reason; }

  status(): ResourceStatus {
    return { resource: this.name, kind: this.kind, state: this.#state, reason: this.#reason, since: this.#since, checks: this.checks, faults: this.faults };
  }

  /** Forgets the state (on start: the first check after a (re)start reports afresh). */
  protected reset(): void { this.#state = 'unknown'; this.#reason = 'not checked yet'; }

  /** Sets the state; emits `change` (and logs) when it differs. */
  protected set(state: ResourceState, reason: string): void {
    const previous = this.#state;
    this.#reason = reason;
    if (state === previous) return;
    this.#state = state;
    this.#since = new Date().toISOString();
    const level = state === 'down' ? 'warn' : 'info';
    this.log.log(level, 'resource', `${this.name}: ${previous} -> ${state}: ${reason}`, { resource: this.name, kind: this.kind, state, previous });
    this.emit('change', { resource: this.name, kind: this.kind, state, previous, reason, at: this.#since });
  }

  protected fault(fault: 'timeout' | 'error', message: string): void {
    this.faults++;
    this.log.error('checker:' + fault, `checker ${this.name} ${fault === 'timeout' ? 'hung' : 'failed'}: ${message}`, { resource: this.name, kind: this.kind });
    this.emit('fault', { resource: this.name, kind: this.kind, fault, message, at: new Date().toISOString() });
  }

  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;
}

/**
 * A checker that runs `check(signal)` every `intervalMs`, at most one at a time, each bounded by
 * `timeoutMs`. A check that throws or times out makes the resource `unknown` and is reported as a
 * fault; it never overlaps the next one: a hung check is abandoned (its signal aborted) and the
 * next one starts on schedule.
 * @public
 */
export abstract class PollingChecker extends BaseChecker {
  #timer: NodeJS.Timeout | undefined;
  #inFlight = 0;
  #generation = 0;
  #consecutive = 0;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly failures: number;

  constructor(name: string, kind: string, init: PollingInit, components: CheckerComponents, defaults: { intervalMs: number; timeoutMs: number }) {
    super(name, kind, components);
    positive(name, 'intervalMs', init.intervalMs, 10);
    positive(name, 'timeoutMs', init.timeoutMs, 1);
    positive(name, 'failures', init.failures, 1);
    this.intervalMs = init.intervalMs ?? defaults.intervalMs;
    this.timeoutMs = init.timeoutMs ?? Math.min(defaults.timeoutMs, this.intervalMs);
    this.failures = init.failures ?? 1;
  }

  /** One check. Resolve with true (up) / false (down) or a state; throw for a checker fault. */
  protected abstract check(signal: AbortSignal): Promise<CheckResult>;

  /** Describes the target for reasons (e.g. `198.18.0.1:80`). */
  protected abstract describe(): string;

  async start(): Promise<void> {
    await this.guard.start(async () => {
      this.reset();
      this.#consecutive = 0;
      const gen = ++this.#generation;
      const loop = () => {
        if (gen !== this.#generation) return;
        void this.runOnce().finally(() => {
          if (gen !== this.#generation) return;
          this.#timer = setTimeout(loop, this.intervalMs);
          this.#timer.unref?.();
        });
      };
      loop();
    });
  }

  async stop(): Promise<void> {
    await this.guard.stop(async () => {
      this.#generation++;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
    });
  }

  /** Runs one check now (also used by tests). Never throws. */
  async runOnce(): Promise<void> {
    this.checks++;
    this.#inFlight++;
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const gen = this.#generation;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => { ac.abort(new CheckTimeoutError(this.name, this.timeoutMs)); reject(new CheckTimeoutError(this.name, this.timeoutMs)); }, this.timeoutMs);
      });
      let p: Promise<CheckResult>;
      try { p = Promise.resolve(this.check(ac.signal)); } catch (err) { p = Promise.reject(err); }
      p.catch(() => {}); // an abandoned check may reject later
      const r = await Promise.race([p, timeout]);
      if (gen !== this.#generation) return;
      const { state, reason } = typeof r === 'boolean' ? { state: r ? 'up' as const : 'down' as const, reason: undefined } : r;
      if (state === 'down') {
        this.#consecutive++;
        if (this.#consecutive >= this.failures) this.set('down', reason ?? `${this.describe()} failed${this.failures > 1 ? ` ${this.#consecutive} times in a row` : ''}`);
      } else {
        this.#consecutive = 0;
        this.set(state, reason ?? `${this.describe()} ${state === 'up' ? 'ok' : 'unknown'}`);
      }
    } catch (err) {
      if (gen !== this.#generation) return;
      const timedOut = err instanceof CheckTimeoutError;
      this.fault(timedOut ? 'timeout' : 'error', (err as Error).message);
      this.set('unknown', timedOut ? `check of ${this.describe()} hung (no answer within ${this.timeoutMs} ms)` : `check of ${this.describe()} threw: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
      this.#inFlight--;
    }
  }
}

/** Runs `fn` with a timeout; rejects with CheckTimeoutError. */
export function withTimeout<T>(name: string, ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => { ac.abort(); reject(new CheckTimeoutError(name, ms)); }, ms);
    fn(ac.signal).then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e); });
  });
}
