import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import type { Membership, MembershipInit } from '../src/index.js';

export const KEY = 'test cluster key, long enough';
export const MEMBER_FIXTURE = fileURLToPath(new URL('./fixtures/member.ts', import.meta.url));

export interface Seen { t: number; event: string; [k: string]: unknown }

/** Records every event of `m` with its time. */
export function record(m: Membership): Seen[] {
  const seen: Seen[] = [];
  for (const name of ['member:up', 'member:down', 'member:restarted', 'member:payload', 'network:up', 'network:down',
    'local:isolated', 'local:recovered', 'message', 'dropped', 'error'] as const) {
    m.on(name, (e: unknown) => seen.push({ t: Date.now(), event: name, ...(e as object) }));
  }
  return seen;
}

export async function waitFor(what: string, pred: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Spawns the member fixture as a separate process (killed by PID at teardown). */
export function spawnMember(t: ExecutionContext, init: MembershipInit): { child: ChildProcess; lines: Seen[]; cmd: (line: string) => void } {
  const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', MEMBER_FIXTURE, JSON.stringify(init)], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null && child.pid) { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } } });
  const lines: Seen[] = [];
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 1);
      try { lines.push(JSON.parse(line) as Seen); } catch { lines.push({ t: Date.now(), event: 'raw', line }); }
    }
  });
  return { child, lines, cmd: (line) => child.stdin!.write(line + '\n') };
}
