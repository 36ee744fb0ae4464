/**
 * Shared set-up of the replication failure tests (test/rfs-faults*.test.ts): a mirror pair of the
 * embedded example with a replicated directory, each node with its own copy seen at the same path.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jsonLines, REPO_ROOT } from './lab/index.js';
import { MirrorPair, type Ev, type NodeProc } from './lab/mirror-pair.js';

const pexec = promisify(execFile);

export { treeDiff, treeHash } from './lab/tree.js';

export interface FaultPair {
  pair: MirrorPair;
  root: string;
  /** The replicated path (the same on both nodes). */
  data: string;
  /** Each node's own copy (bound over `data` in the node's mount namespace). */
  copies: [string, string];
  start(i: number, extra?: string[]): NodeProc;
  /** Starts node i with a shell prefix run in its mount namespace before the bind (e.g. a tmpfs mount). */
  startWith(i: number, shellPrefix: string, extra?: string[], launcher?: string): NodeProc;
  /** Module-log entries of node i with this event name. */
  logs(i: number, event: string): Ev[];
  /** Highest record number node i's writer had acknowledged. */
  acked(i: number): number;
  /** Runs a shell command in node i's mount namespace (through its FUSE mount when it is primary). */
  sh(i: number, script: string): Promise<{ stdout: string; stderr: string }>;
  destroy(): Promise<void>;
}

export async function faultPair(args: string[], opts: { defaultPrimary?: string } = {}): Promise<FaultPair> {
  const root = mkdtempSync(join(tmpdir(), 'ha-faults-'));
  const data = join(root, 'data');
  const copies: [string, string] = [join(root, 'node0'), join(root, 'node1')];
  for (const d of [data, ...copies]) mkdirSync(d, { recursive: true });
  const pair = await MirrorPair.create({ args: ['--data', data, ...args], ...opts });
  const fp: FaultPair = {
    pair, root, data, copies,
    start: (i, extra = []) => pair.start(i, extra, { binds: [[copies[i]!, data]] }),
    startWith: (i, prefix, extra = [], launcher = 'exec') => {
      // MirrorPair.start's arguments, spawned through a shell of our own (MirrorPair.start only binds).
      const q = (x: string) => `'${x.replace(/'/g, "'\\''")}'`;
      const host = pair.lab.nodes[i]!;
      const a = [
        '--node', `node${i}`, '--addresses', pair.addresses, '--vip', pair.vip,
        '--state-dir', join(pair.dir, `node${i}`), '--preset', 'default', '--hb-port', '8888',
        ...(opts.defaultPrimary ? ['--default-primary', opts.defaultPrimary] : []),
        '--data', data, ...args, ...extra,
      ];
      const argv = [process.execPath, '--conditions=development', '--import', 'tsx', 'examples/embedded-http/server.ts', ...a];
      const child = host.spawn('sh', ['-c', `${prefix} && ${launcher} ${argv.map(q).join(' ')}`], {
        cwd: REPO_ROOT, env: { ...process.env, HA_CLUSTER_KEY: pair.key },
      });
      const events = jsonLines(child);
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => { if (process.env.HA_TRACE) process.stderr.write(d); stderr = (stderr + d.toString()).slice(-20000); });
      const exited = new Promise<void>((r) => child.once('exit', (code, sig) => { if (code) events.push({ ev: 'exit', code, sig, stderr }); r(); }));
      const p = { child, events, exited };
      pair.procs[i] = p;
      return p;
    },
    logs: (i, event) => (pair.procs[i]?.events ?? []).filter((e) => e.ev === 'log' && e.event === event),
    acked: (i) => Math.max(0, ...(pair.procs[i]?.events ?? []).filter((e) => e.ev === 'acked').map((e) => e.n as number)),
    sh: async (i, script) => pexec('nsenter', ['-t', String(pair.procs[i]!.child.pid), '-m', '--', 'sh', '-c', script], { maxBuffer: 1 << 24 }),
    destroy: async () => {
      if (process.env.HA_FAULTS_DUMP) {
        const { writeFileSync } = await import('node:fs');
        writeFileSync(process.env.HA_FAULTS_DUMP, JSON.stringify(pair.procs.map((p) => p?.events ?? []), null, 1));
      }
      await pair.destroy();
      rmSync(root, { recursive: true, force: true });
    },
  };
  return fp;
}

/** Messages of log entries, for t.log on failure. */
export function msgs(ev: Ev[]): string { return ev.map((e) => `${e.event as string}: ${e.msg as string}`).join('\n'); }
