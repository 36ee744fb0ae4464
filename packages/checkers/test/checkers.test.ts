import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryLog } from '@ha/interface';
import {
  CheckerConfigError, CheckerSet, customChecker, parseStat, processChecker, restartVerdict, tcpChecker, witness,
  type Checker, type CheckerActionRequest, type ResourceChange,
} from '@ha/checkers';

const until = async (what: string, f: () => boolean, ms = 5000) => {
  const t0 = Date.now();
  while (!f()) { if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`); await new Promise((r) => setTimeout(r, 10)); }
};

test('restartVerdict: table', (t) => {
  const H = 3600_000;
  const rows: Array<[number[], number, { maxloop?: number; loopIntervalMs?: number }, 'restart' | 'stop', number]> = [
    [[], 1000, {}, 'restart', 1],
    [[1000], 2000, {}, 'restart', 2],
    [[1000, 2000], 3000, {}, 'stop', 3],                       // default maxloop 3
    [[1000, 2000], 3000 + 24 * H, {}, 'restart', 1],           // old failures leave the window
    [[1000, 2000], 3000, { maxloop: 5 }, 'restart', 3],
    [[0], 10_000, { maxloop: 2, loopIntervalMs: 5000 }, 'restart', 1],
    [[6000], 10_000, { maxloop: 2, loopIntervalMs: 5000 }, 'stop', 2],
    [[], 1, { maxloop: 1 }, 'stop', 1],
  ];
  for (const [h, now, init, verdict, count] of rows) {
    const v = restartVerdict(h, now, init);
    t.is(v.verdict, verdict, JSON.stringify([h, now, init]));
    t.is(v.count, count);
  }
});

test('parseStat: names with spaces and parentheses, start time, state', (t) => {
  const s = '1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615';
  t.deepEqual(parseStat(1234, s), { pid: 1234, comm: 'my (odd) proc', start: 987654, state: 'S' });
  t.is(parseStat(1, 'garbage'), undefined);
});

test('bad checker config names the checker and the field', (t) => {
  const e1 = t.throws(() => tcpChecker({ host: '127.0.0.1', port: 70000 })({}), { instanceOf: CheckerConfigError });
  t.regex(e1.message, /tcp\.127\.0\.0\.1:70000: port/);
  const e2 = t.throws(() => processChecker({ process: 'a/b' })({}), { instanceOf: CheckerConfigError });
  t.regex(e2.message, /process/);
  t.throws(() => processChecker({ process: 'x', atleast: 2, atmost: 1 })({}), { message: /atmost/ });
  t.throws(() => witness({ targets: [] }), { message: /at least one target/ });
  t.throws(() => witness({ targets: [{ tcp: { host: 'x', port: 0 } }] }), { message: /targets\[0\]/ });
});

test('process checker: a named process killed with SIGKILL is seen down quickly; count bounds', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ha-ck-'));
  const name = `hack${process.pid % 100000}${Math.floor(Math.random() * 1000)}`.slice(0, 15);
  symlinkSync('/bin/sleep', join(dir, name));
  const kids = [spawn(join(dir, name), ['60']), spawn(join(dir, name), ['60'])];
  t.teardown(() => { for (const k of kids) k.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); });
  await new Promise((r) => setTimeout(r, 100));
  const c = processChecker({ process: name, atleast: 2, atmost: 2, scanMs: 60_000 })({}) as Checker & { pids: number[] };
  const changes: ResourceChange[] = [];
  c.on('change', (e) => changes.push(e));
  await c.start();
  t.teardown(() => c.stop());
  t.is(c.state, 'up');
  t.deepEqual(c.pids.sort(), kids.map((k) => k.pid!).sort());
  const t0 = performance.now();
  kids[0]!.kill('SIGKILL');
  await until('down', () => c.state === 'down');
  t.log(`death seen after ${Math.round(performance.now() - t0)} ms`);
  t.regex(changes.at(-1)!.reason, /1 running, at least 2/);
  await c.stop();
});

test('process checker: a monitored process that dies as a zombie (its parent does not reap it) is seen down too', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ha-ck-'));
  const name = `hz${process.pid % 100000}${Math.floor(Math.random() * 1000)}`.slice(0, 15);
  symlinkSync('/bin/sleep', join(dir, name));
  // sh starts the monitored process in the background, then execs a sleep that never reaps it.
  const parent = spawn('sh', ['-c', `'${join(dir, name)}' 60 & exec sleep 60`], { stdio: 'ignore' });
  t.teardown(() => { parent.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); });
  const c = processChecker({ process: name, scanMs: 60_000 })({}) as Checker & { pids: number[] };
  let pid = 0;
  await until('the monitored process started', () => {
    try { pid = Number(readFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8').trim().split(' ')[0]); } catch { pid = 0; }
    return pid > 0;
  });
  await new Promise((r) => setTimeout(r, 100));
  await c.start();
  t.teardown(() => c.stop());
  t.is(c.state, 'up');
  t.deepEqual(c.pids, [pid]);
  process.kill(pid, 'SIGKILL');
  await until('down', () => c.state === 'down', 3000);
  t.regex(readFileSync(`/proc/${pid}/stat`, 'latin1'), /\) Z /, 'it is a zombie (kill(pid, 0) still succeeds): the periodic stat read saw it');
  await c.stop();
});

test('process checker: a child process is watched through its exit event', async (t) => {
  const child = spawn('/bin/sleep', ['60']);
  t.teardown(() => child.kill('SIGKILL'));
  const c = processChecker({ child })({});
  await c.start();
  t.is(c.state, 'up');
  child.kill('SIGKILL');
  await until('down', () => c.state === 'down');
  await c.stop();
  t.pass();
});

test('tcp checker: stopping the listener makes the resource down', async (t) => {
  const server: Server = createServer((s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const c = tcpChecker({ host: '127.0.0.1', port, intervalMs: 50, timeoutMs: 2000 })({});
  await c.start();
  t.teardown(() => c.stop());
  await until('up', () => c.state === 'up');
  await new Promise((r) => server.close(r));
  await until('down', () => c.state === 'down');
  t.regex(c.status().reason, /refuses/);
});

test('a hanging or throwing checker is reported and does not block the others', async (t) => {
  const log = memoryLog('t');
  let fastChecks = 0;
  const set = new CheckerSet({
    checkers: [
      { checker: customChecker({ name: 'hangs', intervalMs: 50, timeoutMs: 100, check: () => new Promise<boolean>(() => {}) }), action: 'none' },
      { checker: customChecker({ name: 'throws', intervalMs: 50, timeoutMs: 100, check: () => { throw new Error('boom'); } }), action: 'none' },
      { checker: customChecker({ name: 'fast', intervalMs: 20, timeoutMs: 100, check: () => { fastChecks++; return true; } }), action: 'none' },
    ],
  }, log);
  const faults: string[] = [];
  set.on('fault', (f) => faults.push(`${f.resource}:${f.fault}`));
  await set.setPhase('primary');
  t.teardown(() => set.stop());
  await until('faults of both', () => faults.includes('hangs:timeout') && faults.includes('throws:error'));
  await until('fast keeps checking', () => fastChecks >= 10);
  const st = Object.fromEntries(set.status().map((s) => [s.resource, s]));
  t.is(st.hangs!.state, 'unknown');
  t.regex(st.hangs!.reason, /hung/);
  t.is(st.throws!.state, 'unknown');
  t.regex(st.throws!.reason, /boom/);
  t.is(st.fast!.state, 'up');
  t.true(log.entries.some((e) => e.event === 'checker:timeout' && /hangs/.test(e.msg)));
});

test('checker set: restart actions until maxloop, then stop; wait holds', async (t) => {
  let healthy = true;
  let ping = true;
  const set = new CheckerSet({
    maxloop: 3, loopIntervalMs: 60_000,
    checkers: [
      { checker: customChecker({ name: 'app', intervalMs: 20, check: () => healthy }), action: 'restart' },
      { checker: customChecker({ name: 'router', intervalMs: 20, check: () => ping }), when: 'always' },
    ],
  });
  const actions: CheckerActionRequest[] = [];
  set.handler = async (req) => { actions.push(req); healthy = true; await set.rearm(); };
  await set.setPhase('primary');
  t.teardown(() => set.stop());
  for (let i = 1; i <= 3; i++) {
    await until('app up', () => set.status()[0]!.state === 'up');
    healthy = false;
    await until(`action ${i}`, () => actions.length === i);
  }
  t.deepEqual(actions.map((a) => a.action), ['restart', 'restart', 'stop']);
  t.true(actions[2]!.escalated);
  t.regex(actions[2]!.reason, /maxloop=3/);
  t.is(set.hold, undefined);
  ping = false;
  await until('hold', () => set.hold !== undefined);
  t.regex(set.hold!, /router/);
  ping = true;
  await until('released', () => set.hold === undefined);
  // 'always' checkers keep running in the started phase, 'primary' ones do not.
  await set.setPhase('started');
  t.deepEqual(set.status().map((s) => s.running), [false, true]);
});

test('witness: tcp and custom targets; any/all', async (t) => {
  const server: Server = createServer((s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const w = witness({ targets: [{ tcp: { host: '127.0.0.1', port } }, { name: 'never', check: () => new Promise<boolean>(() => {}) }], timeoutMs: 2000 }); // generous: a loaded CI machine
  const r = await w.check();
  t.true(r.reachable);
  t.deepEqual(r.targets.map((x) => x.reachable), [true, false]);
  const all = await witness({ targets: [{ tcp: { host: '127.0.0.1', port } }, { name: 'no', check: () => false }], require: 'all' }).check();
  t.false(all.reachable);
  const thrower = await witness({ targets: [{ name: 'boom', check: () => { throw new Error('x'); } }] }).check();
  t.false(thrower.reachable);
  t.is(thrower.targets[0]!.error, 'x');
});
