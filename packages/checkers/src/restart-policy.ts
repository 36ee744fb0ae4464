/**
 * The restart policy (`maxloop` / `loop_interval`), as a pure function: given the times of the
 * previous failures and the time of a new one, restart locally or stop the module on this node.
 */

/** `maxloop` / `loop_interval`. @public */
export interface RestartPolicyInit {
  /** Failures within the window that stop the module on this node (default 3). */
  maxloop?: number;
  /** The window (default 24 h, as `loop_interval="24"`). */
  loopIntervalMs?: number;
}

/** What to do about a failure. @public */
export interface RestartVerdict {
  verdict: 'restart' | 'stop';
  /** Failures within the window, this one included. */
  count: number;
  /** Failure times kept (within the window, this one included). */
  history: number[];
  /** Why, in words. */
  reason: string;
}

/**
 * The `maxloop`-th failure within `loopIntervalMs` stops the module on this node (so that a mirror
 * fails over to its peer); earlier ones are restarted locally. `maxloop` 0 or 1: never restart.
 * @public
 */
export function restartVerdict(history: readonly number[], now: number, init: RestartPolicyInit = {}): RestartVerdict {
  const maxloop = init.maxloop ?? 3;
  const windowMs = init.loopIntervalMs ?? 24 * 3600_000;
  const kept = history.filter((t) => now - t < windowMs && t <= now);
  kept.push(now);
  const count = kept.length;
  const span = windowMs % 3600_000 === 0 ? `${windowMs / 3600_000} h` : `${Math.round(windowMs / 1000)} s`;
  if (count >= maxloop) {
    return { verdict: 'stop', count, history: kept, reason: `failure ${count} within ${span} reaches maxloop=${maxloop}: stopping the module on this node` };
  }
  return { verdict: 'restart', count, history: kept, reason: `failure ${count} of ${maxloop} allowed within ${span}: restarting locally` };
}
