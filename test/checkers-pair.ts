/** A mirror pair running examples/custom-checker/server.ts in the lab (helpers of the checker and witness lab tests). */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createLab, jsonLines, waitFor, type Lab } from './lab/index.js';

export type Ev = Record<string, unknown>;

export class CheckerPair {
  readonly key = randomBytes(24).toString('hex');
  readonly dir = mkdtempSync(join(tmpdir(), 'ha-ck-'));
  readonly procs: Array<{ child: ChildProcess; events: Ev[]; stderr: string[] } | undefined> = [undefined, undefined];
  readonly tag = randomBytes(3).toString('hex');
  constructor(readonly lab: Lab) {}

  static async create(): Promise<CheckerPair> { return new CheckerPair(await createLab({ nodes: 2, client: true })); }

  procName(i: number): string { return `hw${i}${this.tag}`; }

  start(i: number, extra: string[] = [], opts: { binds?: Array<[string, string]> } = {}): void {
    const host = this.lab.nodes[i]!;
    const addresses = this.lab.nodes.map((n, k) => `node${k}=${n.ip}`).join(',');
    const child = host.spawnTs('examples/custom-checker/server.ts', [
      '--node', `node${i}`, '--addresses', addresses, '--vip', this.lab.vip(0), '--state-dir', join(this.dir, `node${i}`),
      '--proc', this.procName(i), ...extra,
    ], { env: { ...process.env, HA_CLUSTER_KEY: this.key }, ...(opts.binds ? { binds: opts.binds } : {}) });
    const events = jsonLines(child);
    const stderr: string[] = [];
    child.stderr?.on('data', (d: Buffer) => { stderr.push(d.toString()); if (process.env.HA_TRACE) process.stderr.write(d); });
    this.procs[i] = { child, events, stderr };
  }

  events(i: number, ev?: string): Ev[] { return (this.procs[i]?.events ?? []).filter((e) => ev === undefined || e.ev === ev); }

  state(i: number): string | undefined { return this.events(i, 'state').at(-1)?.state as string | undefined; }

  async waitState(i: number, state: string, timeoutMs = 15_000): Promise<void> {
    await waitFor(`node${i} ${state} (now ${this.state(i)}; last logs ${JSON.stringify(this.events(i, 'log').slice(-4).map((e) => e.msg))})`, () => this.state(i) === state, timeoutMs);
  }

  async waitPrimSecond(timeoutMs = 20_000): Promise<{ prim: number; second: number }> {
    await waitFor('PRIM and SECOND', () => (this.state(0) === 'PRIM' && this.state(1) === 'SECOND') || (this.state(1) === 'PRIM' && this.state(0) === 'SECOND'), timeoutMs);
    const prim = this.state(0) === 'PRIM' ? 0 : 1;
    return { prim, second: 1 - prim };
  }

  /** Blocks traffic between the two nodes inside their namespaces (carrier stays up: not an "isolated" node). */
  async partition(on: boolean): Promise<void> {
    const [a, b] = this.lab.nodes;
    const op = on ? 'add' : 'del';
    await a!.exec('ip', ['route', op, 'blackhole', `${b!.ip}/32`]);
    await b!.exec('ip', ['route', op, 'blackhole', `${a!.ip}/32`]);
  }

  /** Blocks (or unblocks) node i's traffic to an address (e.g. the witness). */
  async block(i: number, address: string, on: boolean): Promise<void> {
    await this.lab.nodes[i]!.exec('ip', ['route', on ? 'add' : 'del', 'blackhole', `${address}/32`]);
  }

  async destroy(): Promise<void> {
    await this.lab.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
