/**
 * `ha verify` and the replication line of `ha state`: the CLI against a control socket that
 * answers like the daemon (the daemon's side is ReplicatedDir.verify, tested in rfs-sync.test.ts).
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatReplication, formatVerify, main } from '../packages/cli/src/index.js';
import type { DirVerifyReport } from '../packages/replicator/src/index.js';

async function daemon(answer: (req: { cmd: string }) => unknown): Promise<{ path: string; close: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'ha-verify-cli-'));
  const path = join(dir, 'ctl.sock');
  const server = createServer((s) => {
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i < 0) return;
      const req = JSON.parse(buf.slice(0, i)) as { cmd: string };
      s.end(JSON.stringify({ ok: true, result: answer(req) }) + '\n');
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { path, close: () => { server.close(); rmSync(dir, { recursive: true, force: true }); } };
}

const differing: DirVerifyReport[] = [{
  dir: '/srv/data', entries: 12, bytes: 5 << 20, ms: 42,
  differences: [{ path: 'db/file', kind: 'content', detail: '1 block(s) of 65536 bytes differ, the first at offset 131072', offset: 131072, blocks: 1 }],
}];

test('ha verify: prints every difference and exits 3 when the copies differ, 0 when identical', async (t) => {
  let reports = differing;
  const d = await daemon((req) => (req.cmd === 'verify' ? reports : undefined));
  t.teardown(d.close);
  const out: string[] = [];
  t.is(await main(['verify', '--socket', d.path], (s) => out.push(s), () => {}), 3);
  t.regex(out.join('\n'), /\/srv\/data\/db\/file: content: 1 block/);
  t.regex(out.join('\n'), /\/srv\/data: 1 difference/);
  reports = [{ ...differing[0]!, differences: [] }];
  out.length = 0;
  t.is(await main(['verify', '--socket', d.path], (s) => out.push(s), () => {}), 0);
  t.regex(out.join('\n'), /\/srv\/data: identical/);
});

test('ha verify: a daemon that cannot be reached is an error (exit 1), not a pass', async (t) => {
  const err: string[] = [];
  t.is(await main(['verify', '--socket', '/nonexistent/ha.sock'], () => {}, (s) => err.push(s)), 1);
  t.regex(err.join('\n'), /cannot reach the control socket/);
});

test('formatVerify / formatReplication', (t) => {
  t.is(formatVerify([]), '');
  const lines = formatReplication([
    { dir: '/srv/a', role: 'primary', state: 'attached', progress: { kind: 'full', startedAt: 'x', bytesDone: 50 << 20, bytesTotal: 100 << 20, filesDone: 10, filesTotal: 20, filesKept: 8, rate: 10 << 20, etaS: 5 } },
    { dir: '/srv/b', role: 'secondary' },
  ]);
  t.is(lines[0], '  replication /srv/a: primary attached, first synchronisation 50%: 10/20 entries, 50.0 MiB/100.0 MiB, 10.0 MiB/s, ETA 5 s');
  t.is(lines[1], '  replication /srv/b: secondary');
  t.deepEqual(formatReplication(undefined), []);
});
