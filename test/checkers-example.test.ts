/** The custom TypeScript checker of examples/custom-checker: a real HTTP endpoint and a maintenance file. */
import test from 'ava';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { healthChecker } from '../examples/custom-checker/health-file-checker.js';

test('custom checker example: up while /health answers 200, down with a maintenance file or a 500', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ha-health-'));
  let status = 200;
  const server = createServer((_, res) => { res.statusCode = status; res.end('ok'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => { server.close(); rmSync(dir, { recursive: true, force: true }); });
  const port = (server.address() as { port: number }).port;
  const c = healthChecker({ url: `http://127.0.0.1:${port}/health`, dir, intervalMs: 20 })({});
  await c.start();
  t.teardown(() => c.stop());
  const until = async (s: string) => { const end = Date.now() + 5000; while (c.state !== s) { if (Date.now() > end) throw new Error(`not ${s}: ${c.status().reason}`); await new Promise((r) => setTimeout(r, 10)); } };
  await until('up');
  writeFileSync(join(dir, 'maintenance'), '');
  await until('down');
  t.regex(c.status().reason, /maintenance/);
  rmSync(join(dir, 'maintenance'));
  await until('up');
  status = 500;
  await until('down');
  t.regex(c.status().reason, /500/);
});
