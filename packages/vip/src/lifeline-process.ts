/**
 * The lifeline's watchdog process (spawned by `lifeline.ts`, never imported).
 *
 * Usage: node lifeline-process.js [logFile]
 * Reads JSON lines on stdin (see `lifeline-protocol.ts`). When stdin ends without a
 * `{"bye":true}`, the parent died (however: SIGKILL included, since the kernel closes the pipe):
 * it removes the VIPs at once, then runs the onDeath commands (each with its timeout), then
 * SIGKILLs the registered process groups and processes, logs what it did and exits.
 * It prints "ready" on stdout once listening so the parent knows it runs.
 */
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { deleteAddress } from './iproute.js';
import { stateProblems, type LifelineCommand, type LifelineState } from './lifeline-protocol.js';

const logFile = process.argv[2];
const parentPid = process.ppid;
let state: LifelineState = {};
let bye = false;
let buf = '';

function log(event: string, msg: string, fields: Record<string, unknown> = {}): void {
  if (logFile === undefined || logFile === '') return;
  const line = JSON.stringify({ ts: new Date().toISOString(), level: event.endsWith('error') ? 'error' : 'info', component: 'lifeline', event, msg, pid: process.pid, parentPid, ...fields });
  try { appendFileSync(logFile, line + '\n'); } catch { /* nowhere else to report */ }
}

function onLine(line: string): void {
  if (line.trim() === '') return;
  let msg: unknown;
  try { msg = JSON.parse(line); } catch {
    log('lifeline:bad-input', `ignored a line that is not JSON: ${line.slice(0, 200)}`);
    return;
  }
  if (typeof msg === 'object' && msg !== null && (msg as { bye?: unknown }).bye === true) {
    bye = true;
    log('lifeline:bye', 'parent stopped cleanly; exiting without undoing anything');
    process.exit(0);
  }
  const problems = stateProblems(msg);
  if (problems.length > 0) {
    log('lifeline:bad-input', `ignored a state with problems: ${problems.join('; ')}`);
    return;
  }
  state = msg as LifelineState;
}

function runCommand(c: LifelineCommand): Promise<string> {
  const timeoutMs = c.timeoutMs ?? 5000;
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn(c.cmd, c.args ?? [], { detached: true, stdio: 'ignore', ...(c.cwd ? { cwd: c.cwd } : {}), env: { ...process.env, ...c.env } });
    } catch (err) { resolve(`could not start: ${(err as Error).message}`); return; }
    const timer = setTimeout(() => {
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); resolve(`could not start: ${err.message}`); });
    child.once('exit', (code, signal) => { clearTimeout(timer); resolve(signal ? `killed by ${signal}` : `exit ${code}`); });
  });
}

function kill(target: number, group: boolean): string {
  try { process.kill(group ? -target : target, 'SIGKILL'); return 'killed'; } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH' ? 'already gone' : `failed: ${(err as Error).message}`;
  }
}

async function undo(): Promise<void> {
  const t0 = performance.now();
  const vips = state.vips ?? [];
  log('lifeline:parent-died', `parent ${parentPid} died without a clean stop; undoing: ${vips.length} VIP(s), ${state.onDeath?.length ?? 0} command(s), ${state.pgids?.length ?? 0} group(s), ${state.pids?.length ?? 0} process(es)`);
  await Promise.all(vips.map(async (v) => {
    try {
      const removed = await deleteAddress(v);
      log('lifeline:vip-removed', `${removed ? 'removed' : 'was already gone:'} VIP ${v.address}/${v.prefix} from ${v.interface}`, { ...v, ms: Math.round(performance.now() - t0) });
    } catch (err) {
      log('lifeline:error', `could not remove VIP ${v.address} from ${v.interface}: ${(err as Error).message}`, { ...v });
    }
  }));
  for (const c of state.onDeath ?? []) {
    const result = await runCommand(c);
    log('lifeline:command', `ran ${c.cmd} ${(c.args ?? []).join(' ')}: ${result}`, { cmd: c.cmd, args: c.args ?? [], result });
  }
  for (const g of state.pgids ?? []) log('lifeline:kill', `SIGKILL process group ${g}: ${kill(g, true)}`, { pgid: g });
  for (const p of state.pids ?? []) log('lifeline:kill', `SIGKILL process ${p}: ${kill(p, false)}`, { pid: p });
  log('lifeline:done', `undone in ${Math.round(performance.now() - t0)} ms; exiting`, { ms: Math.round(performance.now() - t0) });
}

process.stdin.setEncoding('utf8');
process.stdin.on('data', (d: string) => {
  buf += d;
  let nl: number;
  while ((nl = buf.indexOf('\n')) >= 0) { onLine(buf.slice(0, nl)); buf = buf.slice(nl + 1); }
});
let finishing = false;
const finish = () => {
  if (bye || finishing) return;
  finishing = true;
  if (buf !== '') { onLine(buf); buf = ''; }
  if (bye) return;
  undo().catch((err) => log('lifeline:error', `undo failed: ${(err as Error).message}`)).finally(() => process.exit(0));
};
process.stdin.once('end', finish);
process.stdin.once('error', finish);
// Signals to our own group (we run detached) should not stop the watch silently.
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});
log('lifeline:ready', 'watching parent', {});
process.stdout.write('ready\n', () => { process.stdout.destroy(); });
