/** Lab helpers shared by the farm tests and the farm benchmark. */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { jsonLines, waitFor, type LabHost } from '../../../../test/lab/index.js';

export const CLIENT_TS = fileURLToPath(new URL('./client.ts', import.meta.url));
export const AGENT_TS = fileURLToPath(new URL('./agent.ts', import.meta.url));

/** Runs client.ts in the client namespace; resolves with one result per connection. */
export async function runClient(client: LabHost, job: { vip: string; port: number; conns: Array<{ addr?: string; port?: number }>; timeoutMs?: number; parallel?: number }): Promise<string[]> {
  const child = client.spawnTs(CLIENT_TS, [JSON.stringify(job)]);
  const lines = jsonLines(child);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const res = lines.find((l) => Array.isArray(l.results));
  if (!res) throw new Error(`client exited ${code} without results: ${stderr.slice(-2000)}`);
  return res.results as string[];
}

/** Adds `n` extra client addresses 198.18.0.(10+i)/24 on the client's eth0. */
export async function addClientAddresses(client: LabHost, n: number): Promise<string[]> {
  const addrs = Array.from({ length: n }, (_, i) => `198.18.0.${10 + i}`);
  for (const a of addrs) await client.exec('ip', ['addr', 'add', `${a}/24`, 'dev', 'eth0']);
  return addrs;
}

/** A running agent.ts (farm filter + TCP service) on one node. */
export class Agent {
  readonly lines: Array<Record<string, unknown>>;
  constructor(readonly child: ChildProcess) { this.lines = jsonLines(child); }
  static async start(host: LabHost, cfg: { name: string; node: string; vip: string; rules: unknown[]; port: number }): Promise<Agent> {
    const a = new Agent(host.spawnTs(AGENT_TS, [JSON.stringify(cfg)]));
    let err = '';
    a.child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d; });
    await waitFor(`agent on ${cfg.node} ready (${err})`, () => a.lines.some((l) => l.ready), 20_000);
    return a;
  }
  async #ask(msg: unknown, key: string): Promise<Record<string, unknown>> {
    const before = this.lines.length;
    this.child.stdin!.write(JSON.stringify(msg) + '\n');
    await waitFor(`agent reply ${key}`, () => this.lines.slice(before).some((l) => key in l || 'error' in l), 10_000);
    const r = this.lines.slice(before).find((l) => key in l || 'error' in l)!;
    if ('error' in r) throw new Error(String(r.error));
    return r;
  }
  async setBuckets(b: number[]): Promise<void> { await this.#ask({ buckets: b }, 'applied'); }
  async accepted(): Promise<number> { return (await this.#ask({ count: true }, 'accepted')).accepted as number; }
  async stop(): Promise<void> { await this.#ask({ stop: true }, 'stopped'); }
}
