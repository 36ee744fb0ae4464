/**
 * The line protocol between a {@link Lifeline} and its watchdog process (shared by both sides).
 * The parent writes one JSON object per line on the watchdog's stdin:
 * - a full state `{"vips":[...],"pgids":[...],"pids":[...],"onDeath":[...]}` (each line replaces the last);
 * - `{"bye":true}` on a clean stop: the watchdog exits without touching anything.
 * When stdin ends without a bye, the parent is dead: the watchdog undoes the last state.
 */

/** A VIP the watchdog removes if the parent dies. @public */
export interface LifelineVip { address: string; prefix: number; interface: string }

/** A command the watchdog runs if the parent dies (after removing the VIPs, before killing). @public */
export interface LifelineCommand {
  cmd: string;
  args?: string[];
  /** Killed (SIGKILL, its whole process group) after this long; default 5000 ms. */
  timeoutMs?: number;
  /** Working directory; default the watchdog's. */
  cwd?: string;
  env?: Record<string, string>;
}

/** What must be undone if the parent dies. @public */
export interface LifelineState {
  vips?: LifelineVip[];
  /** Process groups to SIGKILL. */
  pgids?: number[];
  /** Single processes to SIGKILL. */
  pids?: number[];
  onDeath?: LifelineCommand[];
  /**
   * FUSE connections (ids under /sys/fs/fuse/connections/) served by the parent, aborted FIRST:
   * a process killed while it has files open on a FUSE mount it serves itself cannot finish
   * exiting (closing such a file waits for a daemon that is itself) until its connection is aborted.
   */
  fuseAbort?: number[];
}

/** Checks a state received on the wire; returns a list of what is wrong (empty if fine). Pure. @internal */
export function stateProblems(s: unknown): string[] {
  const out: string[] = [];
  if (typeof s !== 'object' || s === null || Array.isArray(s)) return ['not a JSON object'];
  const o = s as Record<string, unknown>;
  const arr = (k: string) => o[k] === undefined || Array.isArray(o[k]) || (out.push(`"${k}" must be an array`), false);
  if (arr('vips')) for (const [i, v] of ((o.vips as unknown[] | undefined) ?? []).entries()) {
    const x = v as Record<string, unknown> | null;
    if (typeof x !== 'object' || x === null || typeof x.address !== 'string' || typeof x.interface !== 'string' || typeof x.prefix !== 'number') {
      out.push(`vips[${i}] must be {address, prefix, interface}`);
    }
  }
  for (const k of ['pgids', 'pids', 'fuseAbort']) {
    if (arr(k)) for (const [i, v] of ((o[k] as unknown[] | undefined) ?? []).entries()) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v <= 1) out.push(`${k}[${i}] must be an integer > 1, got ${JSON.stringify(v)}`);
    }
  }
  if (arr('onDeath')) for (const [i, v] of ((o.onDeath as unknown[] | undefined) ?? []).entries()) {
    const x = v as Record<string, unknown> | null;
    if (typeof x !== 'object' || x === null || typeof x.cmd !== 'string' || (x.args !== undefined && !Array.isArray(x.args))) {
      out.push(`onDeath[${i}] must be {cmd, args?, timeoutMs?}`);
    }
  }
  return out;
}

/** Merges the states of several owners into one (union, duplicates removed). Pure. @internal */
export function mergeStates(states: Iterable<LifelineState>): Required<LifelineState> {
  const vips = new Map<string, LifelineVip>();
  const pgids = new Set<number>();
  const pids = new Set<number>();
  const fuseAbort = new Set<number>();
  const onDeath: LifelineCommand[] = [];
  for (const s of states) {
    for (const f of s.fuseAbort ?? []) fuseAbort.add(f);
    for (const v of s.vips ?? []) vips.set(`${v.interface}/${v.address}`, { address: v.address, prefix: v.prefix, interface: v.interface });
    for (const p of s.pgids ?? []) pgids.add(p);
    for (const p of s.pids ?? []) pids.add(p);
    onDeath.push(...(s.onDeath ?? []));
  }
  return { fuseAbort: [...fuseAbort], vips: [...vips.values()], pgids: [...pgids], pids: [...pids], onDeath };
}
