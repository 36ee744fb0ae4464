import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LabHost } from '../../../test/lab/index.js';
import type { VipInit } from '../src/index.js';

export const AGENT = fileURLToPath(new URL('./fixtures/vip-agent.ts', import.meta.url));

export interface AgentError { code?: string; message: string; name?: string }

/** Drives a vip-agent running inside a lab node's namespace. */
export class Agent {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly child: ChildProcess;
  #next = 1;
  #waiters: Array<() => void> = [];
  #stderr = '';

  constructor(host: LabHost, cfg: { vip: VipInit; lifeline?: { logFile?: string }; name?: string }) {
    this.child = host.spawnTs(AGENT, [JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let buf = '';
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 1);
        try { this.lines.push(JSON.parse(line) as Record<string, unknown>); } catch { this.lines.push({ raw: line }); }
        for (const w of this.#waiters.splice(0)) w();
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => { this.#stderr += d; });
    this.child.once('exit', () => { for (const w of this.#waiters.splice(0)) w(); });
  }

  get pid(): number { return this.child.pid!; }

  /** Resolves with the first line matching `pred` (already seen or future); rejects after `timeoutMs`. */
  async waitLine(what: string, pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit !== undefined) return hit;
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`agent exited waiting for ${what}; stderr: ${this.#stderr}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; stderr: ${this.#stderr}`);
      await new Promise<void>((r) => { const t = setTimeout(r, left); this.#waiters.push(() => { clearTimeout(t); r(); }); });
    }
  }

  ready(): Promise<Record<string, unknown>> { return this.waitLine('agent ready', (l) => l.type === 'ready' || l.type === 'fatal'); }

  /** Sends an op and resolves with {ok, result, error}. */
  async call(op: string, arg: Record<string, unknown> = {}, timeoutMs = 20_000): Promise<{ ok: boolean; result?: unknown; error?: AgentError }> {
    const id = this.#next++;
    this.child.stdin!.write(JSON.stringify({ id, op, arg }) + '\n');
    const r = await this.waitLine(`reply to ${op}`, (l) => l.type === 'reply' && l.id === id, timeoutMs);
    return r as { ok: boolean; result?: unknown; error?: AgentError };
  }

  /** Like call() but throws if the op failed. */
  async do(op: string, arg: Record<string, unknown> = {}, timeoutMs?: number): Promise<unknown> {
    const r = await this.call(op, arg, timeoutMs);
    if (!r.ok) throw new Error(`${op} failed: ${r.error?.code ?? ''} ${r.error?.message ?? ''}`);
    return r.result;
  }

  events(name: string): Array<Record<string, unknown>> { return this.lines.filter((l) => l.type === 'event' && l.name === name); }
  logs(event: string): Array<Record<string, unknown>> { return this.lines.filter((l) => l.type === 'log' && l.event === event); }
}

/** The MAC the client's neighbour table holds for `address` (undefined if none). */
export async function clientNeigh(client: LabHost, address: string): Promise<string | undefined> {
  const r = await client.exec('ip', ['-j', 'neigh', 'show', address], { allowFail: true });
  const j = JSON.parse(r.stdout || '[]') as Array<{ lladdr?: string }>;
  return j[0]?.lladdr?.toLowerCase();
}

/** Connects from `host` to address:port over TCP (bash /dev/tcp) and returns what the server said, or undefined. */
export async function tcpHello(host: LabHost, address: string, port = 7000): Promise<string | undefined> {
  const r = await host.exec('timeout', ['2', 'bash', '-c', `exec 3<>/dev/tcp/${address}/${port} && head -n1 <&3`], { allowFail: true });
  return r.code === 0 ? r.stdout.trim() : undefined;
}

/** True if `address` is on the host's eth0. */
export async function hasAddr(host: LabHost, address: string): Promise<boolean> {
  return (await host.addresses()).includes(address);
}
