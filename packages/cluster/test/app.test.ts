/**
 * AppRunner with real child processes in temp directories: scripts (start_prim / stop_prim, their
 * output in the application log, graceful then forced stop, hanging scripts, leftovers killed by
 * process group) and callbacks (order, timeouts). The lifeline is a recording fake here: what is
 * tested is the runner's contract with it (the pgid under 'app' on start, an empty list after stop);
 * the real lifeline is exercised by the lab tests (test/daemon.test.ts, packages/vip/test).
 */
import test from 'ava';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryLog } from '@ha/interface';
import type { Lifeline } from '@ha/vip';
import { AppRunner, AppScriptError, AppStartError, type AppCallbacks, type AppRunnerInit } from '../src/app.js';

interface Fixture { dir: string; bin: string; appLog: string; state: string }

function fixture(t: { teardown(fn: () => unknown): void }): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'ha-app-'));
  const f = { dir, bin: join(dir, 'bin'), appLog: join(dir, 'log', 'app.log'), state: join(dir, 'state') };
  mkdirSync(f.bin); mkdirSync(f.state);
  t.teardown(() => {
    // Kill anything a failed test left behind (by PID, from the files the scripts wrote).
    for (const name of ['sleep.pid', 'stop-sleep.pid', 'app.pid']) {
      const p = join(f.state, name);
      if (existsSync(p)) { try { process.kill(Number(readFileSync(p, 'utf8')), 'SIGKILL'); } catch { /* gone */ } }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return f;
}

function script(f: Fixture, name: string, body: string, mode = 0o755): string {
  const file = join(f.bin, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, mode);
  return file;
}

function runner(f: Fixture, over: Partial<AppRunnerInit> = {}, lifeline?: Lifeline) {
  const log = memoryLog('app');
  const r = new AppRunner({
    module: 'mirror', node: 'node0', scripts: { dir: f.bin, env: { HA_APP_STATE: f.state } },
    niceStopTimeoutMs: 5000, forceStopTimeoutMs: 5000, startTimeoutMs: 10_000, appLogFile: f.appLog, ...over,
  }, log, lifeline);
  return { r, log };
}

/** Alive and not a zombie (a killed orphan may stay a zombie until init reaps it). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch { return false; }
}

async function until(what: string, f: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function fakeLifeline(): { lifeline: Lifeline; calls: Array<{ owner: string; state: unknown }> } {
  const calls: Array<{ owner: string; state: unknown }> = [];
  const lifeline = { update: (owner: string, state: unknown) => { calls.push({ owner, state: structuredClone(state) }); } } as unknown as Lifeline;
  return { lifeline, calls };
}

const appLog = (f: Fixture) => readFileSync(f.appLog, 'utf8');

// --- scripts ---------------------------------------------------------------------------------

test('start_prim output lands in the application log, framed by a header and a footer line', async (t) => {
  const f = fixture(t);
  script(f, 'start_prim', 'echo "hello from start_prim on $HA_NODE module $HA_MODULE action $HA_ACTION"; echo "to stderr" >&2');
  const { r, log } = runner(f);
  await r.start();
  t.true(r.running);
  const lines = appLog(f).trimEnd().split('\n');
  t.is(lines.length, 4, appLog(f));
  t.regex(lines[0]!, /^=== \d{4}-\d\d-\d\dT[\d:.]+Z start_prim ===$/);
  t.is(lines[1], 'hello from start_prim on node0 module mirror action start_prim');
  t.is(lines[2], 'to stderr');
  t.regex(lines[3]!, /^=== \d{4}-\d\d-\d\dT[\d:.]+Z start_prim exited 0 after \d+ ms ===$/);
  t.truthy(log.entries.find((e) => e.event === 'app:started'));
  await r.stop('test end');
});

test('stop runs `stop_prim` then `stop_prim force`, in that order, both logged in the application log', async (t) => {
  const f = fixture(t);
  script(f, 'start_prim', 'echo started');
  script(f, 'stop_prim', 'echo "stop_prim called with [$*]"; echo "$*" >> "$HA_APP_STATE/calls"');
  const { r, log } = runner(f);
  await r.start();
  const res = await r.stop('test');
  t.false(res.forced);
  t.false(r.running);
  t.deepEqual(readFileSync(join(f.state, 'calls'), 'utf8').split('\n'), ['', 'force', '']);
  const text = appLog(f);
  const graceful = text.indexOf('stop_prim called with []');
  const forced = text.indexOf('stop_prim called with [force]');
  t.true(graceful > 0 && forced > graceful, text);
  t.regex(text, /=== \S+ stop_prim ===\nstop_prim called with \[\]\n=== \S+ stop_prim exited 0 after \d+ ms ===/);
  t.regex(text, /=== \S+ stop_prim force ===\nstop_prim called with \[force\]\n=== \S+ stop_prim force exited 0 after \d+ ms ===/);
  t.deepEqual(log.entries.filter((e) => e.event === 'app:script').map((e) => e.args), [[], [], ['force']]);
});

test('a stop_prim that hangs past niceStopTimeoutMs is killed (with what it started) and the forced call still happens', async (t) => {
  const f = fixture(t);
  script(f, 'start_prim', 'echo started');
  script(f, 'stop_prim', [
    'echo "$*" >> "$HA_APP_STATE/calls"',
    'if [ "$1" != force ]; then sleep 1000 & echo $! > "$HA_APP_STATE/stop-sleep.pid"; wait; fi',
  ].join('\n'));
  const { r, log } = runner(f, { niceStopTimeoutMs: 500 });
  await r.start();
  const res = await r.stop('test');
  t.true(res.forced, 'the graceful stop timed out: reported as forced');
  t.deepEqual(readFileSync(join(f.state, 'calls'), 'utf8').split('\n'), ['', 'force', '']);
  t.truthy(log.entries.find((e) => e.event === 'app:script-timeout' && /stop_prim/.test(e.msg)));
  const sleepPid = Number(readFileSync(join(f.state, 'stop-sleep.pid'), 'utf8'));
  await until(`the hanging stop_prim's sleep (${sleepPid}) to be gone`, () => !alive(sleepPid));
  t.false(alive(sleepPid));
  t.regex(appLog(f), /stop_prim exited SIGKILL/);
});

test('processes left in the start script\'s process group after the stop scripts are SIGKILLed', async (t) => {
  const f = fixture(t);
  // The application ignores SIGTERM and nobody stops it: only the process-group kill can end it.
  script(f, 'start_prim', 'sh -c \'trap "" TERM; exec sleep 1000\' & echo $! > "$HA_APP_STATE/sleep.pid"; echo started');
  const { r, log } = runner(f);
  await r.start();
  const pid = Number(readFileSync(join(f.state, 'sleep.pid'), 'utf8'));
  t.true(alive(pid), 'the background process runs after start_prim returned');
  await r.stop('test');
  await until(`leftover ${pid} to be gone`, () => !alive(pid));
  t.false(alive(pid));
  const kill = log.entries.find((e) => e.event === 'app:kill');
  t.truthy(kill, 'the kill is logged');
  t.regex(kill!.msg, /SIGKILL/);
  t.truthy(log.entries.find((e) => e.event === 'app:script-missing' && /stop_prim/.test(e.msg)), 'no stop_prim: logged and skipped');
});

test('a failing start_prim (exit 1) raises AppStartError (ERR_APP_START); stop still cleans what it started', async (t) => {
  const f = fixture(t);
  script(f, 'start_prim', 'sleep 1000 & echo $! > "$HA_APP_STATE/sleep.pid"; echo "cannot start" >&2; exit 1');
  const { r } = runner(f);
  const err = await t.throwsAsync(r.start(), { instanceOf: AppStartError });
  t.is(err?.code, 'ERR_APP_START');
  t.regex(err!.message, /start_prim exited with 1/);
  t.regex(appLog(f), /cannot start\n=== \S+ start_prim exited 1 after/);
  t.true(r.running, 'processes may have been started: the runner still has something to stop');
  const pid = Number(readFileSync(join(f.state, 'sleep.pid'), 'utf8'));
  await r.stop('start failed');
  await until(`${pid} to be gone`, () => !alive(pid));
  t.false(r.running);
});

test('a start_prim that does not finish within startTimeoutMs raises AppStartError', async (t) => {
  const f = fixture(t);
  script(f, 'start_prim', 'exec sleep 1000');
  const { r } = runner(f, { startTimeoutMs: 300 });
  const err = await t.throwsAsync(r.start(), { instanceOf: AppStartError });
  t.regex(err!.message, /did not finish within 300 ms/);
  await r.stop('start failed');
});

test('a non-executable script is refused at construction (ERR_APP_SCRIPT, naming the file)', (t) => {
  const f = fixture(t);
  const file = script(f, 'stop_prim', 'echo stop', 0o644);
  script(f, 'start_prim', 'echo start');
  const err = t.throws(() => runner(f), { instanceOf: AppScriptError });
  t.is(err?.code, 'ERR_APP_SCRIPT');
  t.true(err!.message.includes(file), err!.message);
  t.regex(err!.message, /not executable/);
});

test('a script path that is a directory is refused at construction', (t) => {
  const f = fixture(t);
  mkdirSync(join(f.bin, 'start_prim'));
  const err = t.throws(() => runner(f), { instanceOf: AppScriptError });
  t.regex(err!.message, /not a regular file/);
});

test('missing scripts are logged and skipped: start and stop succeed', async (t) => {
  const f = fixture(t);
  const { r, log } = runner(f);
  await r.start();
  t.true(r.running);
  const res = await r.stop('test');
  t.false(res.forced);
  const missing = log.entries.filter((e) => e.event === 'app:script-missing').map((e) => e.msg);
  t.is(missing.length, 3, JSON.stringify(missing)); // start_prim, stop_prim, stop_prim force
  t.true(missing.every((m) => m.includes(f.bin)));
  t.false(existsSync(f.appLog), 'nothing ran: nothing written to the application log');
});

test('lifeline: the start script\'s pgid under "app" on start, an empty list after stop', async (t) => {
  const f = fixture(t);
  script(f, 'start_prim', 'echo $$ > "$HA_APP_STATE/script.pid"; sleep 1000 & echo $! > "$HA_APP_STATE/sleep.pid"');
  const { lifeline, calls } = fakeLifeline();
  const { r } = runner(f, {}, lifeline);
  await r.start();
  const scriptPid = Number(readFileSync(join(f.state, 'script.pid'), 'utf8'));
  t.deepEqual(calls, [{ owner: 'app', state: { pgids: [scriptPid] } }]);
  // The pgid is really the group of what the script started.
  const sleepPid = Number(readFileSync(join(f.state, 'sleep.pid'), 'utf8'));
  const stat = readFileSync(`/proc/${sleepPid}/stat`, 'utf8');
  t.is(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]), scriptPid, 'the background process is in the script\'s process group');
  await r.stop('test');
  t.deepEqual(calls.at(-1), { owner: 'app', state: { pgids: [] } });
  t.is(calls.length, 2);
});

// --- callbacks -------------------------------------------------------------------------------

function callbacks(calls: string[], over: Partial<AppCallbacks> = {}): AppCallbacks {
  return {
    start: async (ctx) => { calls.push(`start ${ctx.module} ${ctx.node}`); },
    stop: async (ctx) => { calls.push(`stop force=${ctx.force}`); },
    ...over,
  };
}

test('callbacks: start, then stop({force:false}), then stop({force:true})', async (t) => {
  const f = fixture(t);
  const calls: string[] = [];
  const { r } = runner(f, { scripts: undefined, callbacks: callbacks(calls) });
  await r.start();
  t.true(r.running);
  const res = await r.stop('test');
  t.false(res.forced);
  t.false(r.running);
  t.deepEqual(calls, ['start mirror node0', 'stop force=false', 'stop force=true']);
});

test('callbacks: a graceful stop that never resolves is cut by niceStopTimeoutMs (its signal aborted) and the forced stop still runs', async (t) => {
  const f = fixture(t);
  const calls: string[] = [];
  let gracefulSignal: AbortSignal | undefined;
  const { r, log } = runner(f, {
    scripts: undefined, niceStopTimeoutMs: 300,
    callbacks: callbacks(calls, {
      stop: (ctx) => {
        calls.push(`stop force=${ctx.force}`);
        if (!ctx.force) { gracefulSignal = ctx.signal; return new Promise<void>(() => {}); }
      },
    }),
  });
  await r.start();
  const res = await r.stop('test');
  t.true(res.forced);
  t.deepEqual(calls, ['start mirror node0', 'stop force=false', 'stop force=true']);
  t.true(gracefulSignal?.aborted, 'the timed-out call\'s signal is aborted');
  t.truthy(log.entries.find((e) => e.event === 'app:stop-graceful-failed' && /300 ms/.test(e.msg)));
});

test('callbacks: a forced stop that never resolves is cut by forceStopTimeoutMs; stop() returns and logs it', async (t) => {
  const f = fixture(t);
  const calls: string[] = [];
  const { r, log } = runner(f, {
    scripts: undefined, forceStopTimeoutMs: 300,
    callbacks: callbacks(calls, { stop: (ctx) => { calls.push(`stop force=${ctx.force}`); return ctx.force ? new Promise<void>(() => {}) : undefined; } }),
  });
  await r.start();
  await r.stop('test');
  t.false(r.running);
  t.deepEqual(calls.slice(1), ['stop force=false', 'stop force=true']);
  t.truthy(log.entries.find((e) => e.event === 'app:stop-force-failed'));
});

test('callbacks: a graceful stop that throws goes on to the forced stop', async (t) => {
  const f = fixture(t);
  const calls: string[] = [];
  const { r } = runner(f, {
    scripts: undefined,
    callbacks: callbacks(calls, { stop: (ctx) => { calls.push(`stop force=${ctx.force}`); if (!ctx.force) throw new Error('boom'); } }),
  });
  await r.start();
  const res = await r.stop('test');
  t.true(res.forced);
  t.deepEqual(calls.slice(1), ['stop force=false', 'stop force=true']);
});

test('callbacks: a start that throws or never resolves raises AppStartError', async (t) => {
  const f = fixture(t);
  const { r: r1 } = runner(f, { scripts: undefined, callbacks: callbacks([], { start: () => { throw new Error('no database'); } }) });
  const e1 = await t.throwsAsync(r1.start(), { instanceOf: AppStartError });
  t.is(e1?.code, 'ERR_APP_START');
  t.regex(e1!.message, /no database/);
  const { r: r2 } = runner(f, { scripts: undefined, startTimeoutMs: 200, callbacks: callbacks([], { start: () => new Promise<void>(() => {}) }) });
  const e2 = await t.throwsAsync(r2.start(), { instanceOf: AppStartError });
  t.regex(e2!.message, /did not finish within 200 ms/);
});
