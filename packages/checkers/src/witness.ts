/**
 * The split-brain witness: before a mirror node becomes ALONE without hearing its peer, it checks
 * that it can reach one of the witness targets (typically the router of the production network,
 * which only the healthy side of an isolation reaches). Targets are pluggable: ping, TCP, HTTP, or
 * a custom function. Each target is bounded by a timeout; a target that throws counts as
 * unreachable.
 */
import { HaError } from '@ha/interface';
import { httpProbe, pingProbe, tcpProbe } from './probes.js';

/** One witness target. @public */
export type WitnessTarget =
  | { ping: string }
  | { tcp: { host: string; port: number } }
  | { http: string; status?: number }
  | { name: string; check(signal: AbortSignal): Promise<boolean> | boolean };

/** `witness` options. @public */
export interface WitnessInit {
  targets: WitnessTarget[];
  /** Per-target timeout (default 1500 ms). */
  timeoutMs?: number;
  /** 'any' (default): one reachable target is enough; 'all': every target must be reachable. */
  require?: 'any' | 'all';
}

/** What a witness check found. @public */
export interface WitnessResult {
  reachable: boolean;
  /** Per target: its description and whether it answered. */
  targets: Array<{ target: string; reachable: boolean; error?: string }>;
  ms: number;
}

/** The split-brain witness. @public */
export interface Witness {
  /** Describes the targets (for the module log). */
  readonly description: string;
  check(signal?: AbortSignal): Promise<WitnessResult>;
}

/** A witness configuration error. @public */
export class WitnessConfigError extends HaError {
  constructor(message: string) { super('ERR_WITNESS_CONFIG', `witness: ${message}`); }
}

function describeTarget(t: WitnessTarget): string {
  if ('ping' in t) return `ping ${t.ping}`;
  if ('tcp' in t) return `tcp ${t.tcp.host}:${t.tcp.port}`;
  if ('http' in t) return `http ${t.http}`;
  return `custom ${t.name}`;
}

/**
 * Creates a witness.
 * @example
 * ```ts
 * witness({ targets: [{ ping: '198.18.0.254' }, { tcp: { host: '198.18.0.254', port: 53 } }] })
 * ```
 * @public
 */
export function witness(init: WitnessInit): Witness {
  if (!init || !Array.isArray(init.targets) || init.targets.length === 0) throw new WitnessConfigError('give at least one target');
  for (const [i, t] of init.targets.entries()) {
    const ok = typeof t === 'object' && t !== null && (
      ('ping' in t && typeof t.ping === 'string') ||
      ('tcp' in t && typeof t.tcp?.host === 'string' && Number.isInteger(t.tcp.port) && t.tcp.port > 0 && t.tcp.port < 65536) ||
      ('http' in t && typeof t.http === 'string' && /^https?:\/\//.test(t.http)) ||
      ('check' in t && typeof t.check === 'function'));
    if (!ok) throw new WitnessConfigError(`targets[${i}]: expected { ping: address } | { tcp: { host, port } } | { http: url } | { name, check(signal) }, got ${JSON.stringify(t)}`);
  }
  const timeoutMs = init.timeoutMs ?? 1500;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 1) throw new WitnessConfigError(`timeoutMs must be a positive number, got ${String(init.timeoutMs)}`);
  const all = init.require === 'all';
  const one = async (t: WitnessTarget, outer?: AbortSignal): Promise<{ target: string; reachable: boolean; error?: string }> => {
    const target = describeTarget(t);
    const ac = new AbortController();
    const onOuter = () => ac.abort();
    outer?.addEventListener('abort', onOuter, { once: true });
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<boolean>((resolve) => { timer = setTimeout(() => { ac.abort(); resolve(false); }, timeoutMs); });
      let p: Promise<boolean>;
      if ('ping' in t) p = pingProbe(t.ping, timeoutMs, ac.signal);
      else if ('tcp' in t) p = tcpProbe(t.tcp.host, t.tcp.port, ac.signal);
      else if ('http' in t) p = httpProbe(t.http, ac.signal, t.status);
      else p = Promise.resolve().then(() => t.check(ac.signal));
      const reachable = await Promise.race([p, timeout]);
      return { target, reachable: reachable === true };
    } catch (err) {
      return { target, reachable: false, error: (err as Error).message };
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
      ac.abort();
    }
  };
  return {
    description: init.targets.map(describeTarget).join(', '),
    async check(signal?: AbortSignal): Promise<WitnessResult> {
      const t0 = performance.now();
      const targets = await Promise.all(init.targets.map((t) => one(t, signal)));
      const reachable = all ? targets.every((x) => x.reachable) : targets.some((x) => x.reachable);
      return { reachable, targets, ms: Math.round(performance.now() - t0) };
    },
  };
}
