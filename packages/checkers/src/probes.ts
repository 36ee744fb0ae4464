/**
 * Elementary probes shared by the checkers and the split-brain witness: a TCP connect, an ICMP
 * echo (the system's `ping`), an HTTP GET, running an executable. Each takes an AbortSignal and
 * resolves with true/false (reachable or not); they never throw for a negative answer.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';

/** Connects to host:port; true if the connection is accepted. */
export function tcpProbe(host: string, port: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) { resolve(false); return; }
    const s = connect({ host, port });
    const done = (ok: boolean) => { signal.removeEventListener('abort', onAbort); s.destroy(); resolve(ok); };
    const onAbort = () => done(false);
    signal.addEventListener('abort', onAbort, { once: true });
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Result of running a program. */
export interface ExecResult { code: number | null; signal: NodeJS.Signals | null; output: string }

/** Runs a program (no shell); killed with SIGKILL when the signal aborts. */
export function execProbe(file: string, args: readonly string[], signal: AbortSignal, env?: Record<string, string>): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let output = '';
    const add = (d: Buffer) => { if (output.length < 4096) output += d.toString(); };
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    const onAbort = () => { try { child.kill('SIGKILL'); } catch { /* gone */ } };
    signal.addEventListener('abort', onAbort, { once: true });
    child.once('error', (err) => { signal.removeEventListener('abort', onAbort); reject(err); });
    child.once('close', (code, sig) => { signal.removeEventListener('abort', onAbort); resolve({ code, signal: sig, output: output.trim() }); });
  });
}

/** One ICMP echo with the system's `ping`; true if answered within `timeoutMs`. */
export async function pingProbe(address: string, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  const w = Math.max(1, Math.ceil(timeoutMs / 1000));
  const r = await execProbe('ping', ['-n', '-q', '-c', '1', '-W', String(w), address], signal);
  return r.code === 0;
}

/** HTTP(S) GET; true if the status is 2xx/3xx (or the expected one). */
export async function httpProbe(url: string, signal: AbortSignal, expectStatus?: number): Promise<boolean> {
  try {
    const res = await fetch(url, { signal, redirect: 'manual' });
    await res.body?.cancel().catch(() => {});
    return expectStatus !== undefined ? res.status === expectStatus : res.status >= 200 && res.status < 400;
  } catch {
    return false;
  }
}
