/**
 * ARP probe (duplicate address detection) and gratuitous ARP, with iputils' `arping`.
 *
 * Findings on iputils arping 20221126 (measured in the lab):
 * - `-w` and `-i` take whole seconds only ("-w 0.05" is refused) and `arping -D -c 1` waits a full
 *   second for an answer that does not come. A LAN answers ARP in well under 1 ms, so a second
 *   per probe would be wasted failover time. We therefore start `arping -D -c 1 -w 1` and send it
 *   SIGINT once the probe window has passed: arping handles SIGINT by printing its statistics and
 *   exiting with its usual DAD status (0 = no reply, 1 = a reply), so a reply that arrived just
 *   before the signal is never lost. The window starts when arping prints its "ARPING" header,
 *   which it does right before sending; `stdbuf -oL` makes it flush that line at once (when
 *   stdbuf is missing the window starts at spawn and includes arping's own start-up).
 * - An answered probe makes arping print "Unicast reply from A [MAC]" and exit at once.
 * - When the native addon (@ha/native, a raw AF_PACKET socket) is built, it is used instead of
 *   arping: no process start-up, a window of a few ms, two probes per window; arping remains the
 *   fallback.
 * - Gratuitous ARP: with kernel 6.x a client whose cache entry for the VIP was refreshed only
 *   50 ms earlier (well inside `locktime`, 1 s) took the new MAC from a single gratuitous ARP,
 *   request (`-U`) or reply (`-A`) alike: since Linux 4.13 ("arp: honour gratuitous ARP
 *   _replies_") a GARP overrides locktime. Older kernels and some devices ignore an update
 *   within locktime, which is why several copies are sent (by default at 0, 20, 200 and
 *   1000 ms: the last one is older than any locktime of 1 s). We send requests (`-U`, the
 *   RFC 5227 "ARP announcement", what keepalived sends too).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { arpAnnounce, arpProbe as nativeProbe, nativeAvailable } from '@ha/native';
import { CommandError } from './errors.js';
import { which } from './exec.js';

/** The result of an ARP probe. @public */
export interface ProbeResult {
  /** True if some host answered for the address. */
  inUse: boolean;
  /** The MAC that answered (lower case), when in use. */
  by?: string;
  /** How long the probe took, spawn to exit, in ms. */
  ms: number;
}

/** Default probe window: short with the native addon (no process start-up), longer with arping. @public */
export function defaultProbeWindowMs(): number { return nativeAvailable() ? 20 : 50; }

const REPLY = /reply from\s+(\d+\.\d+\.\d+\.\d+)\s+\[([0-9A-Fa-f:]{11,17})\]/;

/** Parses arping's output for the first reply's MAC (lower case). Pure. @internal */
export function parseArpingReply(out: string): string | undefined {
  return REPLY.exec(out)?.[2]?.toLowerCase();
}

/** Parses "Sent N probes" from arping's final statistics. Pure. @internal */
export function parseArpingSent(out: string): number | undefined {
  const m = /Sent\s+(\d+)\s+probe/.exec(out);
  return m === null ? undefined : Number(m[1]);
}

function spawnArping(args: string[]): { child: ChildProcess; flushed: boolean } {
  const stdbuf = which('stdbuf');
  const arping = which('arping');
  const flushed = stdbuf.startsWith('/');
  const [file, argv] = flushed ? [stdbuf, ['-oL', arping, ...args]] : [arping, args];
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  return { child, flushed };
}

/**
 * Asks the link whether another host answers for `address` (ARP probe from 0.0.0.0,
 * RFC 5227), waiting `windowMs` for an answer.
 * @throws {@link CommandError} if arping cannot run or ends abnormally.
 * @public
 */
export function probe(iface: string, address: string, windowMs = 50): Promise<ProbeResult> {
  if (nativeAvailable()) {
    return nativeProbe(iface, address, { windowMs: Math.max(1, Math.round(windowMs)), probes: 2 }).then(
      (r) => (r.inUse ? { inUse: true, by: r.mac ?? 'unknown', ms: r.ms } : { inUse: false, ms: r.ms }),
      (e: Error) => { throw new CommandError(`ARP probe for ${address} on ${iface} failed: ${e.message}`, { cause: e, details: { iface, address } }); });
  }
  return probeOnce(iface, address, windowMs).then(async (r) => {
    // arping was signalled before it sent its probe (a very slow start): ask again, once,
    // timing the window from spawn.
    if (r === 'unsent') {
      const again = await probeOnce(iface, address, windowMs + 1000);
      if (again === 'unsent') throw new CommandError(`arping did not send its probe for ${address} on ${iface}`);
      return again;
    }
    return r;
  });
}

function probeOnce(iface: string, address: string, windowMs: number): Promise<ProbeResult | 'unsent'> {
  const t0 = performance.now();
  const args = ['-D', '-c', '1', '-w', String(Math.max(1, Math.ceil(windowMs / 1000) + 1)), '-I', iface, address];
  return new Promise((resolve, reject) => {
    const { child, flushed } = spawnArping(args);
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    const startWindow = () => {
      if (timer !== undefined) return;
      timer = setTimeout(() => { child.kill('SIGINT'); }, windowMs);
    };
    // Hard stop in case arping ignores SIGINT.
    const hard = setTimeout(() => { child.kill('SIGKILL'); }, windowMs + 3000);
    if (!flushed) child.once('spawn', startWindow);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('ARPING')) startWindow();
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
    child.once('error', (e) => {
      clearTimeout(timer); clearTimeout(hard);
      reject(new CommandError(`could not run arping: ${e.message}; install iputils-arping`, { cause: e }));
    });
    // A fallback in case the header is never seen (e.g. stdbuf ineffective): window from spawn + 1 s.
    child.once('spawn', () => { setTimeout(startWindow, 1000).unref(); });
    child.once('close', (code, signal) => {
      clearTimeout(timer); clearTimeout(hard);
      const ms = performance.now() - t0;
      const by = parseArpingReply(out);
      if (by !== undefined) { resolve({ inUse: true, by, ms }); return; }
      if (code === 0) {
        resolve(parseArpingSent(out) === 0 ? 'unsent' : { inUse: false, ms });
        return;
      }
      if (signal === 'SIGINT') { resolve('unsent'); return; }
      reject(new CommandError(`arping -D ${address} on ${iface} failed (exit ${code ?? signal}): ${err.trim() || out.trim()}`,
        { details: { iface, address, code, signal } }));
    });
  });
}

/**
 * Sends one gratuitous ARP (an ARP announcement: request with sender = target = `address`)
 * from `iface`. Resolves once arping has sent it (it is then ended, not left waiting its 1 s).
 * @public
 */
export function gratuitousArp(iface: string, address: string, mode: 'request' | 'reply' = 'request'): Promise<void> {
  if (nativeAvailable() && mode === 'request') {
    try { arpAnnounce(iface, address, 1); return Promise.resolve(); } catch (e) {
      return Promise.reject(new CommandError(`gratuitous ARP for ${address} on ${iface} failed: ${(e as Error).message}`, { cause: e, details: { iface, address } }));
    }
  }
  const args = [mode === 'request' ? '-U' : '-A', '-c', '1', '-I', iface, address];
  return new Promise((resolve, reject) => {
    const { child, flushed } = spawnArping(args);
    let out = '';
    let err = '';
    let sentTimer: NodeJS.Timeout | undefined;
    const hard = setTimeout(() => { child.kill('SIGKILL'); }, 3000);
    // The announcement is sent right after the header; end arping shortly after instead of
    // letting it wait its interval. SIGINT makes it finish cleanly.
    const sent = () => { sentTimer ??= setTimeout(() => child.kill('SIGINT'), 20); };
    if (!flushed) child.once('spawn', () => { sentTimer ??= setTimeout(() => child.kill('SIGINT'), 200); });
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; if (out.includes('ARPING')) sent(); });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
    child.once('error', (e) => { clearTimeout(hard); clearTimeout(sentTimer); reject(new CommandError(`could not run arping: ${e.message}`, { cause: e })); });
    child.once('close', (code, signal) => {
      clearTimeout(hard); clearTimeout(sentTimer);
      if (code === 0 && parseArpingSent(out) !== 0) { resolve(); return; }
      reject(new CommandError(`gratuitous ARP for ${address} on ${iface} failed (exit ${code ?? signal}): ${err.trim() || out.trim()}`,
        { details: { iface, address, code, signal } }));
    });
  });
}
