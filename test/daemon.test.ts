/**
 * The real daemon (`ha run`, packages/cli/src/bin.ts) in the network-namespace lab: two nodes run
 * examples/userconfig-module (its userconfig.xml, its start_prim / stop_prim scripts and its HTTP
 * application) with a cluster.xml holding the lab's addresses; a client calls the VIP. Control goes
 * through the CLI (`ha swap`, run inside the node's namespace) and the control socket (a Unix socket
 * in a shared directory: reachable across network namespaces).
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import type { ExecutionContext } from 'ava';
import { controlRequest, type ClusterStatus } from '@ha/cluster';
import { createLab, jsonLines, REPO_ROOT, waitFor, type Lab } from './lab/index.js';
import { labTest } from './lab/ava.js';

const test = labTest;
const BIN = join(REPO_ROOT, 'packages', 'cli', 'src', 'bin.ts');
const EXAMPLE = join(REPO_ROOT, 'examples', 'userconfig-module');

interface NodeFiles { name: string; stateDir: string; socket: string; appState: string; appLog: string }
interface Daemon { child: ChildProcess; events: Array<Record<string, unknown>>; stderr: string; exit: Promise<number | null> }

class DaemonPair {
  readonly dir = mkdtempSync(join(tmpdir(), 'ha-daemon-'));
  readonly moduleDir = join(this.dir, 'module');
  readonly keyFile = join(this.dir, 'cluster.key');
  readonly nodes: NodeFiles[];
  readonly daemons: Array<Daemon | undefined> = [undefined, undefined];
  readonly vip: string;

  constructor(readonly lab: Lab) {
    this.vip = lab.vip(0);
    // The example module, with the lab's addresses in cluster.xml and the lab's VIP in userconfig.xml.
    mkdirSync(join(this.moduleDir, 'bin'), { recursive: true });
    mkdirSync(join(this.moduleDir, 'app'));
    for (const f of readdirSync(join(EXAMPLE, 'bin'))) {
      copyFileSync(join(EXAMPLE, 'bin', f), join(this.moduleDir, 'bin', f));
      chmodSync(join(this.moduleDir, 'bin', f), statSync(join(EXAMPLE, 'bin', f)).mode);
    }
    copyFileSync(join(EXAMPLE, 'app', 'server.mjs'), join(this.moduleDir, 'app', 'server.mjs'));
    const userconfig = readFileSync(join(EXAMPLE, 'userconfig.xml'), 'utf8');
    if (!userconfig.includes('addr="198.18.0.100"')) throw new Error('examples/userconfig-module/userconfig.xml: expected the VIP 198.18.0.100');
    writeFileSync(join(this.moduleDir, 'userconfig.xml'), userconfig.replace('addr="198.18.0.100"', `addr="${this.vip}"`));
    writeFileSync(join(this.moduleDir, 'cluster.xml'), `<cluster name="daemon-test" port="8888">
  <lans>
    <lan name="default">
${lab.nodes.map((n, i) => `      <node name="node${i}" addr="${n.ip}"/>`).join('\n')}
    </lan>
  </lans>
</cluster>
`);
    writeFileSync(this.keyFile, randomBytes(24).toString('hex') + '\n', { mode: 0o600 });
    this.nodes = lab.nodes.map((_, i) => {
      const base = join(this.dir, `node${i}`);
      return { name: `node${i}`, stateDir: join(base, 'state'), socket: join(base, 'ha.sock'), appState: join(base, 'app'), appLog: join(base, 'state', 'mirror', 'app.log') };
    });
  }

  static async create(t: ExecutionContext): Promise<DaemonPair> {
    const lab = await createLab({ nodes: 2, client: true });
    const pair = new DaemonPair(lab);
    t.teardown(async () => {
      await lab.destroy();
      rmSync(pair.dir, { recursive: true, force: true });
    });
    return pair;
  }

  /** `ha run` on node i, in its namespace. */
  start(i: number): Daemon {
    const n = this.nodes[i]!;
    const child = this.lab.nodes[i]!.spawnTs(BIN, [
      'run', '--cluster', join(this.moduleDir, 'cluster.xml'), '--config', join(this.moduleDir, 'userconfig.xml'),
      '--node', n.name, '--key-file', this.keyFile, '--state-dir', n.stateDir, '--socket', n.socket, '--json',
    ], { env: { ...process.env, HA_APP_STATE: n.appState } });
    const d: Daemon = { child, events: jsonLines(child), stderr: '', exit: new Promise((r) => child.once('exit', (code) => r(code))) };
    child.stderr!.on('data', (b: Buffer) => { d.stderr += b.toString(); if (d.stderr.length > 20_000) d.stderr = d.stderr.slice(-20_000); });
    this.daemons[i] = d;
    return d;
  }

  /** The module's state on node i, through its control socket (undefined if it does not answer). */
  async state(i: number): Promise<{ state: string; ready: boolean } | undefined> {
    try {
      const st = await controlRequest(this.nodes[i]!.socket, { cmd: 'state' }, 5000) as ClusterStatus;
      const m = st.modules[0]!;
      return { state: m.state, ready: m.ready };
    } catch { return undefined; }
  }

  async waitState(i: number, state: string, timeoutMs = 30_000): Promise<void> {
    let last: unknown;
    await waitFor(`node${i} ${state}`, async () => { last = await this.state(i); return (last as { state?: string } | undefined)?.state === state; }, timeoutMs, 100)
      .catch((e: Error) => { throw new Error(`${e.message} (last: ${JSON.stringify(last)}; stderr: ${this.daemons[i]?.stderr.slice(-2000)})`); });
  }

  async waitPrimSecond(timeoutMs = 60_000): Promise<{ prim: number; second: number }> {
    let prim = -1;
    await waitFor('one PRIM and a ready SECOND', async () => {
      const [a, b] = [await this.state(0), await this.state(1)];
      if (a?.state === 'PRIM' && b?.state === 'SECOND' && b.ready) prim = 0;
      else if (b?.state === 'PRIM' && a?.state === 'SECOND' && a.ready) prim = 1;
      return prim >= 0;
    }, timeoutMs, 100);
    return { prim, second: 1 - prim };
  }

  /** The `ha` CLI, run inside node i's namespace. */
  cli(i: number, args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
    return this.lab.nodes[i]!.exec(process.execPath, ['--conditions=development', '--import', 'tsx', BIN, ...args, '--socket', this.nodes[i]!.socket], { allowFail: true, timeoutMs: 60_000 });
  }

  /** One GET http://VIP:8080/ from the client: the answering node's JSON, or undefined. */
  async get(): Promise<{ node: string; app: string } | undefined> {
    const script = `const r=require('http').get({host:${JSON.stringify(this.vip)},port:8080,path:'/',agent:false,timeout:1500},(res)=>{let b='';res.on('data',(d)=>b+=d);res.on('end',()=>{process.stdout.write(b);process.exit(0)})});r.on('timeout',()=>{r.destroy();process.exit(3)});r.on('error',()=>process.exit(2));`;
    const r = await this.lab.client.exec(process.execPath, ['-e', script], { allowFail: true, timeoutMs: 10_000 });
    if (r.code !== 0) return undefined;
    try { return JSON.parse(r.stdout) as { node: string; app: string }; } catch { return undefined; }
  }

  async waitServedBy(i: number, timeoutMs = 30_000): Promise<void> {
    let last: unknown;
    await waitFor(`the client to be served by node${i} through the VIP`, async () => { last = await this.get(); return (last as { node?: string } | undefined)?.node === `node${i}`; }, timeoutMs, 100)
      .catch((e: Error) => { throw new Error(`${e.message} (last answer: ${JSON.stringify(last)})`); });
  }

  appLog(i: number): string {
    const f = this.nodes[i]!.appLog;
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  }

  /** PID of the application started by node i's start_prim (written by the script). */
  appPid(i: number): number {
    return Number(readFileSync(join(this.nodes[i]!.appState, 'app.pid'), 'utf8').trim());
  }
}

/** Alive and not a zombie (a killed orphan stays a zombie until init reaps it). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const s = stat.charAt(stat.lastIndexOf(')') + 2);
    return s !== 'Z' && s !== 'X';
  } catch { return false; }
}

/** ISO timestamps of the application-log header lines `=== <ts> <label> ===` (and `... exited ...`). */
function headerTimes(log: string, label: string, exited = false): string[] {
  const re = exited ? /^=== (\S+) (.+?) exited .* ===$/gm : /^=== (\S+) (.+?) ===$/gm;
  const out: string[] = [];
  for (const m of log.matchAll(re)) if (m[2] === label && (exited || !m[2]!.includes(' exited '))) out.push(m[1]!);
  return out;
}

test.serial('[lab] ha run on two nodes: one PRIM, the client is served through the VIP by the scripts\' application; ha swap moves it', async (t) => {
  const pair = await DaemonPair.create(t);
  pair.start(0); pair.start(1);
  const { prim, second } = await pair.waitPrimSecond();
  t.log(`node${prim} PRIM, node${second} SECOND`);

  await pair.waitServedBy(prim);
  t.deepEqual(await pair.get(), { node: `node${prim}`, app: 'scripts' });
  t.true((await pair.lab.nodes[prim]!.addresses()).includes(pair.vip), 'the VIP is on the primary');
  t.false((await pair.lab.nodes[second]!.addresses()).includes(pair.vip), 'and not on the secondary');
  t.regex(pair.appLog(prim), /Running start_prim/);
  t.regex(pair.appLog(prim), /application started, pid \d+/);
  t.notRegex(pair.appLog(second), /Running start_prim/, 'the secondary did not start the application');

  // `ha state --json` inside the node namespace.
  const st = await pair.cli(prim, ['state', '--json']);
  t.is(st.code, 0, st.stderr);
  t.is((JSON.parse(st.stdout) as ClusterStatus).modules[0]!.state, 'PRIM');

  // `ha swap` on the primary: the service moves to the other node.
  const sw = await pair.cli(prim, ['swap']);
  t.is(sw.code, 0, sw.stderr);
  t.regex(sw.stdout, /^swap: done/);
  await pair.waitState(second, 'PRIM');
  await waitFor('the old primary to be a ready SECOND', async () => { const s = await pair.state(prim); return s?.state === 'SECOND' && s.ready; }, 30_000, 100);
  await pair.waitServedBy(second);
  t.deepEqual(await pair.get(), { node: `node${second}`, app: 'scripts' });

  // The old primary stopped its application (graceful then forced) before the new one started it.
  const oldLog = pair.appLog(prim);
  const newLog = pair.appLog(second);
  t.regex(oldLog, /Running stop_prim \n/);
  t.regex(oldLog, /Running stop_prim force/);
  const stopped = headerTimes(oldLog, 'stop_prim force', true).at(-1);
  const started = headerTimes(newLog, 'start_prim').at(-1);
  t.truthy(stopped, oldLog);
  t.truthy(started, newLog);
  t.true(stopped! <= started!, `old primary's stop_prim force finished at ${stopped}, new primary's start_prim began at ${started}`);
});

test.serial('[lab] SIGKILL of the primary daemon: its application and VIP go at once (lifeline), the peer serves; restarted, it comes back SECOND', async (t) => {
  const pair = await DaemonPair.create(t);
  pair.start(0); pair.start(1);
  const { prim, second } = await pair.waitPrimSecond();
  await pair.waitServedBy(prim);
  const appPid = pair.appPid(prim);
  t.true(alive(appPid), `application ${appPid} runs on the primary`);

  const d = pair.daemons[prim]!;
  const t0 = Date.now();
  process.kill(d.child.pid!, 'SIGKILL');
  await d.exit;
  await waitFor(`the application ${appPid} of the killed daemon to be gone`, () => !alive(appPid), 10_000);
  const appGoneMs = Date.now() - t0;
  await waitFor('the VIP to be gone from the killed node', async () => !(await pair.lab.nodes[prim]!.addresses()).includes(pair.vip), 10_000);
  const vipGoneMs = Date.now() - t0;
  t.log(`after SIGKILL of the daemon: application gone in ${appGoneMs} ms, VIP gone in ${vipGoneMs} ms`);
  // The lifeline acts as soon as its parent dies; 2 s is the product's promise, the bound is generous.
  t.true(appGoneMs < 5000, `application gone after ${appGoneMs} ms`);
  t.true(vipGoneMs < 5000, `VIP gone after ${vipGoneMs} ms`);

  await pair.waitState(second, 'ALONE');
  await pair.waitServedBy(second);
  t.true((await pair.lab.nodes[second]!.addresses()).includes(pair.vip));

  // The killed node returns as SECOND (the survivor has the newer data and stays primary).
  pair.start(prim);
  await waitFor(`node${prim} to return as a ready SECOND`, async () => { const s = await pair.state(prim); return s?.state === 'SECOND' && s.ready; }, 60_000, 100);
  await pair.waitState(second, 'PRIM');
  t.deepEqual(await pair.get(), { node: `node${second}`, app: 'scripts' });
});

test.serial('[lab] SIGTERM of the primary daemon hands over: stop_prim then stop_prim force, the peer goes ALONE and serves', async (t) => {
  const pair = await DaemonPair.create(t);
  pair.start(0); pair.start(1);
  const { prim, second } = await pair.waitPrimSecond();
  await pair.waitServedBy(prim);
  const appPid = pair.appPid(prim);

  const d = pair.daemons[prim]!;
  d.child.kill('SIGTERM');
  const code = await Promise.race([d.exit, new Promise<string>((r) => setTimeout(() => r('still running after 60 s'), 60_000))]);
  t.is(code, 0, d.stderr.slice(-2000));

  await pair.waitState(second, 'ALONE');
  await pair.waitServedBy(second);
  t.false(alive(appPid), 'the old primary\'s application is stopped');
  t.false((await pair.lab.nodes[prim]!.addresses()).includes(pair.vip), 'the old primary released the VIP');
  t.false(existsSync(pair.nodes[prim]!.socket), 'the control socket is removed');

  const log = pair.appLog(prim);
  const graceful = headerTimes(log, 'stop_prim');
  const forced = headerTimes(log, 'stop_prim force');
  t.is(graceful.length, 1, log);
  t.is(forced.length, 1, log);
  t.true(graceful[0]! <= forced[0]!, 'graceful first');
  t.true(log.indexOf('Running stop_prim \n') < log.indexOf('Running stop_prim force'), log);
  t.truthy(d.events.find((e) => e.event === 'daemon' && /SIGTERM received/.test(String(e.msg))), 'the daemon logged the signal');
});
