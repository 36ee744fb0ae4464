/**
 * A mirror pair in the lab: the embedded HTTP example (examples/embedded-http/server.ts) runs on
 * two node namespaces, a probe client in the client namespace calls the VIP. Used by the lab tests
 * and the failover benchmark.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createLab, jsonLines, waitFor, type Lab } from './index.js';

export type Ev = Record<string, unknown>;

export interface PairOptions {
  preset?: 'default' | 'fast';
  defaultPrimary?: string;
  /** Extra args for every node's server. */
  args?: string[];
  /** Heartbeat port (default 8888). */
  hbPort?: number;
}

export interface NodeProc { child: ChildProcess; events: Ev[]; exited: Promise<void> }

export class MirrorPair {
  readonly key = randomBytes(24).toString('hex');
  readonly dir = mkdtempSync(join(tmpdir(), 'ha-pair-'));
  readonly procs: Array<NodeProc | undefined> = [undefined, undefined];
  probe: { child: ChildProcess; events: Ev[] } | undefined;
  readonly vip: string;

  constructor(readonly lab: Lab, readonly opts: PairOptions = {}) {
    this.vip = lab.vip(0);
  }

  static async create(opts: PairOptions = {}, labNodes = 2): Promise<MirrorPair> {
    const lab = await createLab({ nodes: labNodes, client: true });
    return new MirrorPair(lab, opts);
  }

  get addresses(): string { return this.lab.nodes.slice(0, 2).map((n, i) => `node${i}=${n.ip}`).join(','); }

  start(i: number, extra: string[] = [], opts: { binds?: Array<[string, string]> } = {}): NodeProc {
    const host = this.lab.nodes[i]!;
    const args = [
      '--node', `node${i}`, '--addresses', this.addresses, '--vip', this.vip,
      '--state-dir', join(this.dir, `node${i}`), '--preset', this.opts.preset ?? 'default',
      '--hb-port', String(this.opts.hbPort ?? 8888),
      ...(this.opts.defaultPrimary ? ['--default-primary', this.opts.defaultPrimary] : []),
      ...(this.opts.args ?? []), ...extra,
    ];
    const child = host.spawnTs('examples/embedded-http/server.ts', args, { env: { ...process.env, HA_CLUSTER_KEY: this.key }, ...(opts.binds ? { binds: opts.binds } : {}) });
    const events = jsonLines(child);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => { if (process.env.HA_TRACE) process.stderr.write(d); stderr += d.toString(); if (stderr.length > 20000) stderr = stderr.slice(-20000); });
    const exited = new Promise<void>((r) => child.once('exit', (code, sig) => {
      if (code && code !== 0) events.push({ ev: 'exit', code, sig, stderr });
      r();
    }));
    const p = { child, events, exited };
    this.procs[i] = p;
    return p;
  }

  /** Last announced state of node i (from its events). */
  state(i: number): string | undefined {
    const ev = this.procs[i]?.events ?? [];
    for (let k = ev.length - 1; k >= 0; k--) if (ev[k]!.ev === 'state') return ev[k]!.state as string;
    return undefined;
  }

  /** Node i is SECOND and Ready. */
  secondReady(i: number): boolean {
    const ev = this.procs[i]?.events ?? [];
    for (let k = ev.length - 1; k >= 0; k--) if (ev[k]!.ev === 'state') return ev[k]!.state === 'SECOND' && ev[k]!.ready === true;
    return false;
  }

  async waitPrimSecond(timeoutMs = 20_000): Promise<{ prim: number; second: number }> {
    await waitFor('PRIM and a ready SECOND', () =>
      (this.state(0) === 'PRIM' && this.secondReady(1)) || (this.state(1) === 'PRIM' && this.secondReady(0)), timeoutMs);
    const prim = this.state(0) === 'PRIM' ? 0 : 1;
    return { prim, second: 1 - prim };
  }

  async waitState(i: number, state: string, timeoutMs = 10_000): Promise<void> {
    await waitFor(`node${i} ${state} (now ${this.state(i)}; events: ${JSON.stringify(this.procs[i]?.events.filter((e) => e.ev === 'state' || e.ev === 'exit').slice(-5))})`, () => this.state(i) === state, timeoutMs);
  }

  startProbe(extra: string[] = []): { child: ChildProcess; events: Ev[] } {
    const child = this.lab.client.spawnTs('test/lab/probe.ts', ['--target', this.vip, '--every', '10', '--timeout', '1000', ...extra]);
    const events = jsonLines(child);
    this.probe = { child, events };
    return this.probe;
  }

  /**
   * True if the probe's latest outcome (by the time the request was SENT: a request lost to a dead
   * node times out later than answers to newer ones) is an answer from node `i`.
   */
  servedNowBy(i: number): boolean {
    let best: Ev | undefined;
    for (const e of this.probe?.events ?? []) {
      if ((e.ev === 'answer' || e.ev === 'error') && (!best || (e.sent as number) > (best.sent as number))) best = e;
    }
    return best?.ev === 'answer' && best.node === `node${i}`;
  }

  /** First probe answer from node `i` after monotonic time `afterUs`. */
  answerFrom(i: number, afterUs: number): Ev | undefined {
    return this.probe?.events.find((a) => a.ev === 'answer' && a.node === `node${i}` && (a.mono as number) > afterUs);
  }

  async waitServedBy(i: number, afterUs: number, timeoutMs = 10_000): Promise<Ev> {
    await waitFor(`the client to be served by node${i}`, () => this.answerFrom(i, afterUs) !== undefined, timeoutMs);
    return this.answerFrom(i, afterUs)!;
  }

  /** SIGKILL node i's process and wait for it to be gone. */
  async kill(i: number): Promise<number> {
    const p = this.procs[i]!;
    const t = now();
    process.kill(p.child.pid!, 'SIGKILL');
    await p.exited;
    return t;
  }

  /** Graceful stop (SIGTERM: a primary hands over). */
  async stop(i: number): Promise<void> {
    const p = this.procs[i]!;
    p.child.kill('SIGTERM');
    await p.exited;
  }

  async destroy(): Promise<void> {
    await this.lab.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** CLOCK_MONOTONIC in microseconds (the same clock as the servers' and the probe's `mono`). */
export function now(): number { return Number(process.hrtime.bigint() / 1000n); }
