import { HaError } from './errors.js';

/** Lifecycle of a component. @public */
export type Status = 'stopped' | 'starting' | 'started' | 'stopping';

/**
 * A component with a lifecycle (js-libp2p style). `beforeStart`/`afterStart` and
 * `beforeStop`/`afterStop` are optional phases run across all components in order.
 * @public
 */
export interface Startable {
  beforeStart?(): void | Promise<void>;
  start(): void | Promise<void>;
  afterStart?(): void | Promise<void>;
  beforeStop?(): void | Promise<void>;
  stop(): void | Promise<void>;
  afterStop?(): void | Promise<void>;
}

/** True if `x` has `start` and `stop` methods. @public */
export function isStartable(x: unknown): x is Startable {
  return typeof x === 'object' && x !== null &&
    typeof (x as Startable).start === 'function' && typeof (x as Startable).stop === 'function';
}

/**
 * Starts `items` in order, with their optional phases. If one fails, the ones already
 * started are stopped (in reverse order) and the first error is rethrown.
 * @public
 */
export async function startAll(items: readonly Startable[]): Promise<void> {
  for (const item of items) await item.beforeStart?.();
  const started: Startable[] = [];
  try {
    for (const item of items) {
      await item.start();
      started.push(item);
    }
  } catch (err) {
    await stopAll(started).catch(() => {});
    throw err;
  }
  for (const item of items) await item.afterStart?.();
}

/**
 * Stops `items` in reverse order with their optional phases. Every item is stopped even
 * if an earlier one throws; the first error is rethrown at the end.
 * @public
 */
export async function stopAll(items: readonly Startable[]): Promise<void> {
  const rev = [...items].reverse();
  let first: unknown;
  const run = async (fn: (s: Startable) => void | Promise<void>) => {
    for (const item of rev) {
      try { await fn(item); } catch (err) { first ??= err; }
    }
  };
  await run((s) => s.beforeStop?.());
  await run((s) => s.stop());
  await run((s) => s.afterStop?.());
  if (first !== undefined) throw first;
}

/**
 * Status guard for a {@link Startable}: refuses a start while not stopped and
 * tracks the status through start and stop, restoring 'stopped' if start fails.
 * @public
 */
export class StatusGuard {
  #status: Status = 'stopped';
  constructor(private readonly what: string) {}

  get status(): Status { return this.#status; }

  /** Runs `fn` as the start of the component; throws ERR_ALREADY_STARTED unless stopped. */
  async start(fn: () => Promise<void>): Promise<void> {
    if (this.#status !== 'stopped') {
      throw new HaError('ERR_ALREADY_STARTED', `${this.what} is ${this.#status}; stop it before starting it again`);
    }
    this.#status = 'starting';
    try {
      await fn();
      this.#status = 'started';
    } catch (err) {
      this.#status = 'stopped';
      throw err;
    }
  }

  /** Runs `fn` as the stop of the component; a stop while stopped is a no-op. */
  async stop(fn: () => Promise<void>): Promise<void> {
    if (this.#status === 'stopped' || this.#status === 'stopping') return;
    this.#status = 'stopping';
    try { await fn(); } finally { this.#status = 'stopped'; }
  }

  /** Throws ERR_NOT_STARTED unless started. */
  assertStarted(op: string): void {
    if (this.#status !== 'started') {
      throw new HaError('ERR_NOT_STARTED', `${this.what}: cannot ${op} while ${this.#status}`);
    }
  }
}
