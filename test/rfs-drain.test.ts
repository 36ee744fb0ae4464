/**
 * A secondary that takes over must first apply every record it acknowledged as received:
 * `close({ drain: true })` applies the receiver's whole queue before returning.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectSender, startReceiver } from '@ha/native';

const KEY = 'drain-test-key-0123456789abcdef';

test('close({ drain: true }) applies every record already received, in order', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ha-drain-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The receiver really fsyncs (slow apply) while the sender only waits for "received": a backlog
  // of received, unapplied records builds up.
  const rcv = startReceiver({ dir, bind: '127.0.0.1', port: 0, key: KEY, mode: 'written' });
  const snd = await connectSender({ host: '127.0.0.1', port: rcv.port, key: KEY, mode: 'received', ackTimeoutMs: 10_000 });
  t.teardown(() => snd.close());
  const expected = createHash('sha256');
  snd.submitForTest({ op: 'create', path: 'f', mode: 0o644 });
  let last = 0;
  // Many small records with an fsync each: the applier works through batches slowly while the
  // reader keeps queueing what arrives, so at close a queue of received records is waiting.
  const chunk = 4096;
  for (let i = 0; i < 1500; i++) {
    const data = Buffer.alloc(chunk, i & 0xff);
    expected.update(data);
    snd.submitForTest({ op: 'write', path: 'f', offset: i * chunk, data });
    last = snd.submitForTest({ op: 'fsync', path: 'f' });
  }
  // Wait until everything is RECEIVED (the ack the primary's write() waited for in this mode)...
  t.true(await snd.waitAcked(last));
  const st = rcv.stats();
  t.log(`at close: received up to ${st.lastSeqReceived}, applied up to ${st.lastSeqApplied}`);
  t.true(st.lastSeqApplied < st.lastSeqReceived, 'a backlog of received records not yet applied (else this test proves nothing)');
  // ... then take over: drain, and every received byte must be in the file.
  rcv.close({ drain: true });
  const got = createHash('sha256').update(readFileSync(join(dir, 'f'))).digest('hex');
  t.is(got, expected.digest('hex'));
});
