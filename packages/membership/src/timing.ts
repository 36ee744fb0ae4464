/**
 * Timing maths of the failure detector: presets, validation, deadlines and local-stall
 * compensation. Pure functions only (tested table-style).
 */
import { MembershipConfigError } from './errors.js';

/** Heartbeat pulse and failure timeout, in milliseconds. @public */
export interface Timing {
  /** Interval between two heartbeats sent on each network. */
  pulseMs: number;
  /** Silence after which a member (or one of its networks) is declared down. */
  timeoutMs: number;
}

/** Names of the timing presets. @public */
export type PresetName = 'default' | 'fast' | 'lan' | 'wan';

/**
 * Timing presets.
 * - `default` (= `lan`): detects a dead peer in 300-350 ms, survives CPU saturation and an
 *   application that blocks its own event loop (heartbeats run in a worker thread).
 * - `fast`: for quiet dedicated networks: detection in about 90-110 ms.
 * - `wan`: the reference product's values (pulse 700 ms, timeout 30 s).
 * @public
 */
export const PRESETS: Readonly<Record<PresetName, Readonly<Timing>>> = Object.freeze({
  default: Object.freeze({ pulseMs: 50, timeoutMs: 300 }),
  fast: Object.freeze({ pulseMs: 15, timeoutMs: 90 }),
  lan: Object.freeze({ pulseMs: 50, timeoutMs: 300 }),
  wan: Object.freeze({ pulseMs: 700, timeoutMs: 30_000 }),
});

/** Smallest pulse accepted. @public */
export const MIN_PULSE_MS = 5;
/** The timeout must be at least this many pulses. @public */
export const MIN_PULSES_PER_TIMEOUT = 3;

/**
 * Resolves the timing from a preset name and optional overrides, and validates it:
 * pulse >= 5 ms, timeout >= 3 * pulse. Throws {@link MembershipConfigError} naming the field.
 * @public
 */
export function resolveTiming(opts: { preset?: string | undefined; pulseMs?: number | undefined; timeoutMs?: number | undefined } = {}): Timing {
  const presetName = opts.preset ?? 'default';
  if (!Object.hasOwn(PRESETS, presetName)) {
    throw new MembershipConfigError('preset', `unknown preset '${presetName}' (expected one of ${Object.keys(PRESETS).join(', ')})`);
  }
  const base = PRESETS[presetName as PresetName];
  const pulseMs = opts.pulseMs ?? base.pulseMs;
  const timeoutMs = opts.timeoutMs ?? base.timeoutMs;
  if (typeof pulseMs !== 'number' || !Number.isFinite(pulseMs) || pulseMs < MIN_PULSE_MS) {
    throw new MembershipConfigError('pulseMs', `must be a number >= ${MIN_PULSE_MS} ms, got ${String(pulseMs)}`);
  }
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < MIN_PULSES_PER_TIMEOUT * pulseMs) {
    throw new MembershipConfigError('timeoutMs', `must be a number >= ${MIN_PULSES_PER_TIMEOUT} * pulseMs (${MIN_PULSES_PER_TIMEOUT * pulseMs} ms), got ${String(timeoutMs)}`);
  }
  return { pulseMs, timeoutMs };
}

/**
 * Interval of the detector's checks: fine enough that detection happens within about
 * timeout + timeout/6, never finer than 2 ms nor coarser than one pulse.
 * @public
 */
export function tickInterval(t: Timing): number {
  return Math.max(2, Math.min(t.pulseMs, Math.floor(t.timeoutMs / 6)));
}

/**
 * How much of a late tick counts as a local stall: a tick that arrives `actualMs` after the
 * previous one instead of `expectedMs` means the local thread did not run for the difference.
 * Jitter up to `graceMs` is ignored (it is covered by the timeout's margin); beyond that the
 * whole lateness counts.
 * @public
 */
export function stallFromTick(expectedMs: number, actualMs: number, graceMs: number): number {
  const late = actualMs - expectedMs;
  return late > graceMs ? late : 0;
}

/**
 * Silence of a member as it counts for failure detection: the time since it was last heard,
 * minus the time the local thread was stalled (or isolated) since then. `stallNow` and
 * `stallAtHeard` are readings of a monotonic stall counter.
 * @public
 */
export function effectiveSilence(nowMs: number, lastHeardMs: number, stallNow: number, stallAtHeard: number): number {
  return Math.max(0, nowMs - lastHeardMs - Math.max(0, stallNow - stallAtHeard));
}

/** True when a member last heard at `lastHeardMs` is past its timeout (stall compensated). @public */
export function isExpired(nowMs: number, lastHeardMs: number, timeoutMs: number, stallNow: number, stallAtHeard: number): boolean {
  return effectiveSilence(nowMs, lastHeardMs, stallNow, stallAtHeard) > timeoutMs;
}

/** When a member last heard at `lastHeardMs` will expire if nothing more is heard and no stall occurs. @public */
export function deadline(lastHeardMs: number, timeoutMs: number, stallNow: number, stallAtHeard: number): number {
  return lastHeardMs + timeoutMs + Math.max(0, stallNow - stallAtHeard);
}
