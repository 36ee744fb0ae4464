/**
 * The local control socket: `ha state|start|stop|prim|second|swap|restart|logs` talk to a running
 * node through a Unix socket (mode 0600: root, or the owner, only), one JSON request and one JSON
 * answer per line.
 */
import { createServer, createConnection, type Server } from 'node:net';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HaError, isHaError } from '@ha/interface';
import type { Cluster } from './cluster.js';

export const CONTROL_COMMANDS = ['state', 'start', 'stop', 'prim', 'second', 'swap', 'restart', 'logs'] as const;
/** @public */
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

/** A request on the control socket. @public */
export interface ControlRequest { cmd: ControlCommand; lines?: number; /** The module, in a daemon running several (default: the mirror, or the only farm). */ module?: string }
/** An answer on the control socket. @public */
export type ControlResponse = { ok: true; result?: unknown } | { ok: false; error: { code: string; message: string } };

/** The control socket could not be reached, or answered an error. @public */
export class ControlError extends HaError {}

/** Serves the control socket for `cluster` at `path`. Returns a closer. @public */
export async function serveControl(cluster: Cluster, path: string): Promise<{ close(): Promise<void>; path: string }> {
  try {
    return await serve(cluster, path);
  } catch (err) {
    throw new ControlError('ERR_CONTROL_SOCKET', `cannot serve the control socket ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err, details: { path } });
  }
}

async function serve(cluster: Cluster, path: string): Promise<{ close(): Promise<void>; path: string }> {
  await mkdir(dirname(path), { recursive: true });
  await rm(path, { force: true });
  const server: Server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > 65536) { sock.destroy(); return; }
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 1);
        void handle(cluster, line).then((res) => { if (!sock.destroyed) sock.write(JSON.stringify(res) + '\n'); });
      }
    });
  });
  await new Promise<void>((resolveP, reject) => { server.once('error', reject); server.listen(path, () => resolveP()); });
  await chmod(path, 0o600);
  cluster.log.info('control', `control socket listening at ${path}`);
  return {
    path,
    close: () => new Promise<void>((r) => server.close(() => { void rm(path, { force: true }).then(() => r()); })),
  };
}

async function handle(cluster: Cluster, line: string): Promise<ControlResponse> {
  let req: ControlRequest;
  try {
    req = JSON.parse(line) as ControlRequest;
    if (typeof req !== 'object' || req === null || !CONTROL_COMMANDS.includes(req.cmd)) {
      return { ok: false, error: { code: 'ERR_CONTROL_BAD_REQUEST', message: `unknown command ${JSON.stringify((req as { cmd?: unknown })?.cmd)}; expected one of ${CONTROL_COMMANDS.join(', ')}` } };
    }
  } catch {
    return { ok: false, error: { code: 'ERR_CONTROL_BAD_REQUEST', message: 'request is not JSON' } };
  }
  try {
    if (req.cmd === 'state') return { ok: true, result: await cluster.getStatus() };
    if (req.cmd === 'logs') return { ok: true, result: cluster.logs(typeof req.lines === 'number' ? req.lines : 100) };
    await cluster.command(req.cmd, typeof req.module === 'string' ? req.module : undefined);
    return { ok: true, result: await cluster.getStatus() };
  } catch (err) {
    return { ok: false, error: { code: isHaError(err) ? err.code : 'ERR_INTERNAL', message: (err as Error).message } };
  }
}

/** Sends one request to a control socket and returns the result (throws {@link ControlError}). @public */
export function controlRequest(path: string, req: ControlRequest, timeoutMs = 120_000): Promise<unknown> {
  return new Promise((resolveP, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new ControlError('ERR_CONTROL_TIMEOUT', `no answer from ${path} within ${timeoutMs} ms`)); }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const hint = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? ' (is the daemon running? start it with `ha run ...`)' : '';
      reject(new ControlError('ERR_CONTROL_UNREACHABLE', `cannot reach the control socket ${path}: ${err.code ?? err.message}${hint}`));
    });
    sock.on('data', (d: string) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i < 0) return;
      clearTimeout(timer);
      sock.end();
      try {
        const res = JSON.parse(buf.slice(0, i)) as ControlResponse;
        if (res.ok) resolveP(res.result); else reject(new ControlError(res.error.code, res.error.message));
      } catch (err) {
        reject(new ControlError('ERR_CONTROL_BAD_RESPONSE', `bad answer from ${path}: ${(err as Error).message}`));
      }
    });
  });
}
