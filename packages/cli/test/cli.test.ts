/**
 * The `ha` command: argument errors, `check`, control commands (against no daemon, against a
 * protocol-speaking socket server, and against a real `ha run` daemon on loopback, no root needed).
 * The lab test test/daemon.test.ts runs the daemon with a VIP in network namespaces.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlRequest, type ClusterStatus } from '@ha/cluster';
import { formatStatus, main } from '../src/main.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const EXAMPLE = join(ROOT, 'examples', 'userconfig-module');
const TYPO_FIXTURE = join(ROOT, 'packages', 'cluster', 'test', 'fixtures', 'mirror.pasted-typographic-quotes.userconfig.xml');
const BIN = join(ROOT, 'packages', 'cli', 'src', 'bin.ts');

async function ha(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries({ HA_CLUSTER_KEY: undefined, ...env })) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
  try {
    const code = await main(args, (s) => out.push(s), (s) => err.push(s));
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
  }
}

function tmp(t: { teardown(fn: () => unknown): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'ha-cli-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// --- arguments -------------------------------------------------------------------------------

test('no command: usage on stderr, exit 2', async (t) => {
  const r = await ha([]);
  t.is(r.code, 2);
  t.regex(r.err, /^usage: ha <command>/);
  t.is(r.out, '');
});

test('--help: usage on stdout, exit 0', async (t) => {
  const r = await ha(['--help']);
  t.is(r.code, 0);
  t.regex(r.out, /^usage: ha <command>/);
});

test('unknown command: named, exit 2', async (t) => {
  const r = await ha(['frobnicate']);
  t.is(r.code, 2);
  t.regex(r.err, /unknown command 'frobnicate'/);
  t.regex(r.err, /usage: ha/);
});

test('unknown option: named, exit 2', async (t) => {
  const r = await ha(['state', '--frobnicate']);
  t.is(r.code, 2);
  t.regex(r.err, /--frobnicate/);
  t.regex(r.err, /usage: ha/);
});

test('an extra argument: named, exit 2', async (t) => {
  const r = await ha(['state', 'now']);
  t.is(r.code, 2);
  t.regex(r.err, /unexpected argument 'now'/);
});

test('run: each missing required option is named', async (t) => {
  const d = tmp(t);
  const key = join(d, 'key');
  writeFileSync(key, 'a-cluster-key-of-enough-bytes\n');
  const cfg = ['--cluster', join(EXAMPLE, 'cluster.xml'), '--config', join(EXAMPLE, 'userconfig.xml')];

  let r = await ha(['run', '--key-file', key, ...cfg]);
  t.is(r.code, 2); t.regex(r.err, /--node is required/);

  r = await ha(['run', '--node', 'node0', ...cfg]);
  t.is(r.code, 2); t.regex(r.err, /cluster key is required: --key-file FILE or the HA_CLUSTER_KEY/);

  r = await ha(['run', '--node', 'node0', '--key-file', key, '--config', join(EXAMPLE, 'userconfig.xml')]);
  t.is(r.code, 2); t.regex(r.err, /--cluster is required/);

  r = await ha(['run', '--node', 'node0', '--key-file', key, '--cluster', join(EXAMPLE, 'cluster.xml')]);
  t.is(r.code, 2); t.regex(r.err, /--config is required/);
});

test('run: bad keys and presets are named', async (t) => {
  const d = tmp(t);
  const cfg = ['--node', 'node0', '--cluster', join(EXAMPLE, 'cluster.xml'), '--config', join(EXAMPLE, 'userconfig.xml')];
  const missing = join(d, 'no-such-key');
  let r = await ha(['run', ...cfg, '--key-file', missing]);
  t.is(r.code, 2); t.true(r.err.includes(`--key-file ${missing}`), r.err); t.regex(r.err, /ENOENT/);

  writeFileSync(join(d, 'short'), 'short\n');
  r = await ha(['run', ...cfg, '--key-file', join(d, 'short')]);
  t.is(r.code, 2); t.regex(r.err, /at least 16 bytes/);

  r = await ha(['run', ...cfg], { HA_CLUSTER_KEY: 'short' });
  t.is(r.code, 2); t.regex(r.err, /HA_CLUSTER_KEY: the cluster key must be at least 16 bytes/);

  r = await ha(['run', ...cfg, '--preset', 'turbo'], { HA_CLUSTER_KEY: 'a-cluster-key-of-enough-bytes' });
  t.is(r.code, 2); t.regex(r.err, /--preset must be default, fast, lan or wan; got 'turbo'/);
});

test('run: a node that is not in cluster.xml is named (exit 1)', async (t) => {
  const r = await ha(['run', '--node', 'node7', '--cluster', join(EXAMPLE, 'cluster.xml'), '--config', join(EXAMPLE, 'userconfig.xml')], { HA_CLUSTER_KEY: 'a-cluster-key-of-enough-bytes' });
  t.is(r.code, 1);
  t.regex(r.err, /this node 'node7' is not in the cluster \(nodes: node0, node1\)/);
});

// --- check -----------------------------------------------------------------------------------

test('check: the example module is ok (exit 0)', async (t) => {
  const r = await ha(['check', '--cluster', join(EXAMPLE, 'cluster.xml'), '--config', join(EXAMPLE, 'userconfig.xml')]);
  t.is(r.code, 0, r.err);
  t.regex(r.out, /^ok: .*userconfig\.xml: mirror module on node0, node1/);
  t.is(r.err, '');
});

test('check: pasted typographic quotes -> exit 1, the message names the file and line 7', async (t) => {
  const d = tmp(t);
  const file = join(d, 'userconfig.xml');
  copyFileSync(TYPO_FIXTURE, file);
  const r = await ha(['check', '--cluster', join(EXAMPLE, 'cluster.xml'), '--config', file]);
  t.is(r.code, 1);
  t.true(r.err.includes(`${file}:7:`), r.err);
  t.regex(r.err, /typographic quote/);
  t.regex(r.err, /\[ERR_CONFIG\]/);
  t.notRegex(r.err, /\n\s+at /, 'no stack trace for a configuration error');
});

test('check: a missing option or file is named', async (t) => {
  let r = await ha(['check', '--cluster', join(EXAMPLE, 'cluster.xml')]);
  t.is(r.code, 2); t.regex(r.err, /--config is required/);
  const d = tmp(t);
  r = await ha(['check', '--cluster', join(EXAMPLE, 'cluster.xml'), '--config', join(d, 'nope.xml')]);
  t.is(r.code, 1); t.true(r.err.includes(join(d, 'nope.xml')), r.err);
});

// --- control commands without a daemon ----------------------------------------------------------

test('control commands against a socket that does not exist: exit 1, hint that the daemon is not running', async (t) => {
  const d = tmp(t);
  const sock = join(d, 'none.sock');
  for (const cmd of ['state', 'start', 'stop', 'prim', 'second', 'swap', 'restart', 'logs']) {
    const r = await ha([cmd, '--socket', sock]);
    t.is(r.code, 1, cmd);
    t.true(r.err.includes(sock), r.err);
    t.regex(r.err, /is the daemon running\?/, cmd);
    t.regex(r.err, /ERR_CONTROL_UNREACHABLE/);
  }
});

test('control command against a stale socket path (nobody listening): same hint', async (t) => {
  const d = tmp(t);
  const sock = join(d, 'stale.sock');
  writeFileSync(sock, '');
  const r = await ha(['state', '--socket', sock]);
  t.is(r.code, 1);
  t.regex(r.err, /is the daemon running\?/);
});

test('logs -n must be a positive whole number (usage error, exit 2, before any connection)', async (t) => {
  for (const n of ['abc', '0', '1.5', '-3']) {
    const r = await ha(['logs', `-n${n}`, '--socket', '/nonexistent/x.sock']);
    t.is(r.code, 2, n);
    t.true(r.err.includes(`-n must be a positive whole number, got '${n}'`), r.err);
  }
  const r = await ha(['logs', '-n', 'abc', '--socket', '/nonexistent/x.sock']);
  t.is(r.code, 2);
  t.regex(r.err, /got 'abc'/);
});

// --- control commands against a socket server speaking the protocol ----------------------------

function status(state: string): ClusterStatus {
  return {
    node: 'node0', members: [], stats: {} as ClusterStatus['stats'],
    modules: [{
      module: 'mirror', node: 'node0', state, colour: 'green', since: '2026-01-01T00:00:00.000Z', ready: true, uptodate: true, epoch: 3,
      failover: true, lastReason: 'test', peer: { name: 'node1', heard: true, state: 'SECOND', ready: true },
      app: { running: state === 'PRIM' || state === 'ALONE' },
    } as unknown as ClusterStatus['modules'][number]],
  };
}

async function fakeDaemon(t: { teardown(fn: () => unknown): void }, answer: (req: Record<string, unknown>) => unknown): Promise<{ path: string; requests: Array<Record<string, unknown>> }> {
  const path = join(tmp(t), 'ctl.sock');
  const requests: Array<Record<string, unknown>> = [];
  const server: Server = createServer((s) => {
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i < 0) return;
      const req = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      requests.push(req);
      s.end(JSON.stringify(answer(req)) + '\n');
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { path, requests };
}

test('state: human-readable, and --json prints the status as JSON', async (t) => {
  const d = await fakeDaemon(t, () => ({ ok: true, result: status('PRIM') }));
  let r = await ha(['state', '--socket', d.path]);
  t.is(r.code, 0, r.err);
  t.regex(r.out, /^module mirror on node0: PRIM \[green\]/);
  t.regex(r.out, /peer node1: SECOND \(Ready\)/);
  t.regex(r.out, /application: running/);
  r = await ha(['state', '--json', '--socket', d.path]);
  t.is(r.code, 0);
  t.is((JSON.parse(r.out) as ClusterStatus).modules[0]!.state, 'PRIM');
  t.deepEqual(d.requests, [{ cmd: 'state' }, { cmd: 'state' }]);
});

test('swap / logs send their request; an error answer exits 1 with its code', async (t) => {
  const d = await fakeDaemon(t, (req) => req.cmd === 'logs' ? { ok: true, result: ['line 1', 'line 2'] }
    : req.cmd === 'prim' ? { ok: false, error: { code: 'ERR_COMMAND_REFUSED', message: 'prim refused: the peer is PRIM' } }
      : { ok: true, result: status('SECOND') });
  let r = await ha(['swap', '--socket', d.path]);
  t.is(r.code, 0, r.err);
  t.regex(r.out, /^swap: done\nmodule mirror on node0: SECOND/);
  r = await ha(['logs', '-n', '2', '--socket', d.path]);
  t.is(r.code, 0);
  t.is(r.out, 'line 1\nline 2');
  r = await ha(['prim', '--socket', d.path]);
  t.is(r.code, 1);
  t.regex(r.err, /^ha prim: prim refused: the peer is PRIM \[ERR_COMMAND_REFUSED\]$/);
  t.deepEqual(d.requests, [{ cmd: 'swap' }, { cmd: 'logs', lines: 2 }, { cmd: 'prim' }]);
});

test('--module names the default socket /run/ha/<module>.sock', async (t) => {
  const r = await ha(['state', '-m', 'no-such-module-for-test']);
  t.is(r.code, 1);
  t.regex(r.err, /\/run\/ha\/no-such-module-for-test\.sock/);
});

// --- the real daemon on loopback ---------------------------------------------------------------

interface Daemon { child: ChildProcess; out: string; err: string; exit: Promise<number | null> }

function loopbackModule(t: { teardown(fn: () => unknown): void }): { dir: string; args: (node: string) => string[]; sock: string } {
  const dir = tmp(t);
  const port = 21000 + Math.floor(Math.random() * 20000);
  writeFileSync(join(dir, 'cluster.xml'), `<cluster name="t" port="${port}">
  <lans><lan name="default"><node name="a" addr="127.0.0.1"/><node name="b" addr="127.0.0.2"/></lan></lans>
</cluster>
`);
  writeFileSync(join(dir, 'userconfig.xml'), `<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on">
  <heart><heartbeat name="default"/></heart>
  <user nicestoptimeout="5" forcestoptimeout="5"/>
</service>
</safe>
`);
  mkdirSync(join(dir, 'bin'));
  for (const [name, body] of [['start_prim', 'echo "Running start_prim $*"'], ['stop_prim', 'echo "Running stop_prim $*"']] as const) {
    writeFileSync(join(dir, 'bin', name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, 'bin', name), 0o755);
  }
  writeFileSync(join(dir, 'key'), 'loopback-cli-test-key-0123456789\n');
  const sock = join(dir, 'a.sock');
  return {
    dir, sock,
    args: (node) => ['run', '--cluster', join(dir, 'cluster.xml'), '--config', join(dir, 'userconfig.xml'), '--node', node,
      '--key-file', join(dir, 'key'), '--state-dir', join(dir, `state-${node}`), '--socket', sock],
  };
}

function spawnHa(t: { teardown(fn: () => unknown): void }, args: string[]): Daemon {
  const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const d: Daemon = { child, out: '', err: '', exit: new Promise((r) => child.once('exit', (code) => r(code))) };
  child.stdout!.on('data', (b: Buffer) => { d.out += b.toString(); });
  child.stderr!.on('data', (b: Buffer) => { d.err += b.toString(); });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  return d;
}

/** The exit code, or 'still running' after `ms` (the test then fails and its teardown kills the daemon). */
function exitWithin(d: Daemon, ms = 30_000): Promise<number | null | 'still running'> {
  return Promise.race([d.exit, new Promise<'still running'>((r) => setTimeout(() => r('still running'), ms).unref())]);
}

async function until(what: string, f: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const stateOf = async (sock: string): Promise<string | undefined> =>
  controlRequest(sock, { cmd: 'state' }, 5000).then((s) => (s as ClusterStatus).modules[0]!.state, () => undefined);

test.serial('daemon on loopback: ha run, state, prim (alone), a second daemon on the same socket is refused, SIGTERM stops the application and exits 0', async (t) => {
  const m = loopbackModule(t);
  const d = spawnHa(t, m.args('a'));
  // The socket is served just before the module starts (STOP), then: first start without the peer waits.
  await until('the daemon to answer on its socket, in WAIT', async () => (await stateOf(m.sock)) === 'WAIT');

  let r = await ha(['state', '--json', '--socket', m.sock]);
  t.is(r.code, 0);
  t.is((JSON.parse(r.out) as ClusterStatus).node, 'a');

  r = await ha(['prim', '--socket', m.sock]);
  t.is(r.code, 0, r.err);
  await until('ALONE', async () => (await stateOf(m.sock)) === 'ALONE');
  const appLog = join(m.dir, 'state-a', 'mirror', 'app.log');
  await until('start_prim in the application log', () => existsSync(appLog) && readFileSync(appLog, 'utf8').includes('Running start_prim'));

  r = await ha(['logs', '-n', '500', '--socket', m.sock]);
  t.is(r.code, 0);
  t.regex(r.out, /ALONE/);

  // A second daemon given the same socket must not steal it.
  const d2 = spawnHa(t, m.args('a'));
  t.is(await exitWithin(d2), 1, d2.err);
  t.regex(d2.err, /already running on the control socket/);
  t.regex(d2.err, /ERR_DAEMON_RUNNING/);
  t.is(await stateOf(m.sock), 'ALONE', 'the first daemon is still reachable');

  d.child.kill('SIGTERM');
  t.is(await exitWithin(d), 0, d.err);
  t.false(existsSync(m.sock), 'the control socket is removed');
  const text = readFileSync(appLog, 'utf8');
  t.regex(text, /Running stop_prim \n[^]*Running stop_prim force/);
});

test.serial('daemon on loopback: a control socket that cannot be served -> exit 1 at once, nothing started', async (t) => {
  const m = loopbackModule(t);
  const args = m.args('a');
  args[args.indexOf('--socket') + 1] = join(m.dir, 'key', 'a.sock'); // parent is a file
  const d = spawnHa(t, args);
  t.is(await exitWithin(d), 1, d.err);
  t.regex(d.err, /cannot serve the control socket .*key\/a\.sock/);
  t.regex(d.err, /ERR_CONTROL_SOCKET/);
  t.notRegex(d.out, /STOP -> WAIT/, 'the module was not started');
});

test('ha state shows each checked resource (state, reason, rule) and the replication of each directory', (t) => {
  const st = {
    node: 'node1', members: [], stats: {},
    modules: [{
      module: 'mirror', node: 'node1', state: 'PRIM', colour: 'green', ready: true, since: '2026-11-22T00:00:00Z',
      lastReason: 'peer node2 is our secondary', uptodate: true, epoch: 3, failover: true, app: { running: true },
      peer: { name: 'node2', heard: true, state: 'SECOND', ready: true },
      resources: [
        { resource: 'process.nginx', kind: 'process', state: 'up', reason: '2 running (1..)', since: 'x', checks: 10, faults: 0, action: 'restart', when: 'primary', running: true },
        { resource: 'tcp.db', kind: 'tcp', state: 'down', reason: '127.0.0.1:5432 refuses connections', since: 'x', checks: 3, faults: 1, action: 'stopstart', when: 'primary', running: true },
        { resource: 'ping.gw', kind: 'ping', state: 'unknown', reason: '', since: 'x', checks: 0, faults: 0, action: 'wait', when: 'always', running: false },
      ],
      replication: [{ dir: '/srv/data', role: 'primary', state: 'synced', dirtyEntries: 0 }],
    }],
  } as unknown as ClusterStatus;
  const out = formatStatus(st);
  t.regex(out, /resource process\.nginx \(process, primary, action restart\): up - 2 running/);
  t.regex(out, /resource tcp\.db \(tcp, primary, action stopstart\): down - 127\.0\.0\.1:5432 refuses connections \[1 checker faults\]/);
  t.regex(out, /resource ping\.gw \(ping, always, action wait\): not checked in this state/);
  t.regex(out, /replication \/srv\/data: primary synced/);
});
