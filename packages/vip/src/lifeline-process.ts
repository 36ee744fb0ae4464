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
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
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

/**
 * Aborts FUSE connections through the kernel's FUSE control file system (`<fusectl>/<id>/abort`).
 * Where it is not mounted on /sys/fs/fuse/connections (a bare VM or container), a child in a mount
 * namespace of its own (`unshare -m`) mounts it there and writes the aborts: the mount goes with
 * that namespace, nothing is left behind.
 */
function abortFuseConnections(ids: number[]): void {
  const dir = '/sys/fs/fuse/connections';
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir && l.includes(' - fusectl '));
  if (!mounted) {
    // One line per connection: "<id> ok" or "<id> <error>".
    const script = `mount -t fusectl -o nosuid,nodev,noexec fusectl ${dir} || exit 1
for id; do if err=$(echo 1 2>&1 > ${dir}/$id/abort); then echo "$id ok"; elif [ -e ${dir}/$id ]; then echo "$id $err"; else echo "$id gone"; fi; done`;
    let out: string;
    try {
      out = execFileSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', ...ids.map(String)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 });
    } catch (err) {
      log('lifeline:error', `cannot mount the FUSE control file system to abort ${ids.length} connection(s): ${(err as Error).message}`);
      return;
    }
    for (const line of out.split('\n').filter(Boolean)) {
      const [id, ...rest] = line.split(' ');
      const what = rest.join(' ');
      log('lifeline:fuse-abort', what === 'ok' ? `aborted FUSE connection ${id}` : `FUSE connection ${id}: ${what === 'gone' ? 'already gone' : what}`, { id: Number(id) });
    }
    return;
  }
  for (const id of ids) {
    try {
      writeFileSync(`${dir}/${id}/abort`, '1');
      log('lifeline:fuse-abort', `aborted FUSE connection ${id}`, { id });
    } catch (err) {
      log('lifeline:fuse-abort', `FUSE connection ${id}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'already gone' : (err as Error).message}`, { id });
    }
  }
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
  log('lifeline:parent-died', `parent ${parentPid} died without a clean stop; undoing: ${vips.length} VIP(s), ${state.onDeath?.length ?? 0} command(s), ${state.pgids?.length ?? 0} group(s), ${state.pids?.length ?? 0} process(es), ${state.fuseAbort?.length ?? 0} FUSE connection(s)`);
  // First, abort the FUSE connections the parent served: until then a thread of the dying parent
  // may be stuck closing a file on its own mount, and nothing it holds is released.
  if ((state.fuseAbort ?? []).length > 0) abortFuseConnections(state.fuseAbort ?? []);
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
// A parent killed while one of its threads is stuck (e.g. closing a file on a FUSE mount it
// served itself) never closes our pipe: its leader is a zombie while that thread waits. Watch its
// state too; a zombie or vanished parent is dead.
function parentDead(): boolean {
  try {
    const stat = readFileSync(`/proc/${parentPid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    // Field 9 of stat (index 6 after the command): the task flags; PF_EXITING (0x4) is set once
    // the process is exiting (a SIGKILL was delivered), even while one of its threads is stuck.
    const flags = Number(fields[6]);
    if (state === 'Z' || state === 'X' || (Number.isFinite(flags) && (flags & 0x4) !== 0)) return true;
    // A SIGKILL pending on a thread that waits uninterruptibly (a request to a FUSE daemon that
    // was itself) never gets as far as exiting: pending SIGKILL (bit 0x100 of SigPnd/ShdPnd) is death.
    const status = readFileSync(`/proc/${parentPid}/status`, 'utf8');
    return /^(SigPnd|ShdPnd):\s*[0-9a-f]*[13579bdf][0-9a-f]{2}$/im.test(status);
  } catch { return true; }
}
const watch = setInterval(() => { if (parentDead()) { clearInterval(watch); finish(); } }, 50);
// Signals to our own group (we run detached) should not stop the watch silently.
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});
log('lifeline:ready', 'watching parent', {});
process.stdout.write('ready\n', () => { process.stdout.destroy(); });
