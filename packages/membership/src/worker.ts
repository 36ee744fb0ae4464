/**
 * Worker-thread entry: runs the membership {@link Engine} (sockets, heartbeat timer, receive
 * loop, detector) away from the application's event loop, at a raised scheduling priority.
 * Protocol with the main thread: see `WorkerRequest` / `WorkerReport` in protocol.ts.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { Engine } from './engine.js';
import type { WorkerInit, WorkerReport, WorkerRequest } from './protocol.js';

/** Thread priority asked for (nice value; needs CAP_SYS_NICE / root). */
const PRIORITY = -15;

function post(r: WorkerReport): void {
  try {
    parentPort?.postMessage(r);
  } catch (err) {
    // A value that cannot be cloned (exotic payload): report without it.
    if (r.kind === 'event') parentPort?.postMessage({ kind: 'log', level: 'warn', event: 'event:unclonable', msg: `event ${r.name} could not be passed to the main thread: ${(err as Error).message}` } satisfies WorkerReport);
  }
}

function raisePriority(): void {
  let tid: number | undefined;
  try {
    const link = readlinkSync('/proc/thread-self'); // '<pid>/task/<tid>'
    tid = Number(link.split('/').pop());
    if (!Number.isInteger(tid)) throw new Error(`unexpected /proc/thread-self: ${link}`);
    setPriority(tid, PRIORITY);
    post({ kind: 'log', level: 'debug', event: 'worker:priority', msg: `heartbeat thread ${tid} runs at nice ${PRIORITY}`, fields: { tid } });
  } catch (err) {
    post({ kind: 'log', level: 'debug', event: 'worker:priority', msg: `could not raise the heartbeat thread's priority (continuing): ${(err as Error).message}`, fields: { tid } });
  }
}

async function main(): Promise<void> {
  const init = workerData as WorkerInit;
  raisePriority();
  const engine = new Engine(init.cfg, {
    event: (e) => post({ kind: 'event', name: e.name, data: e.data }),
    snapshot: (members, stats) => post({ kind: 'snapshot', members, stats }),
    log: (level, event, msg, fields) => post({ kind: 'log', level, event, msg, fields }),
  }, init.payload);
  try {
    await engine.start();
  } catch (err) {
    const e = err as Error & { code?: string; details?: Record<string, unknown> };
    post({ kind: 'startFailed', error: { name: e.name, code: e.code, message: e.message, details: e.details } });
    parentPort?.close();
    return;
  }
  post({ kind: 'started' });
  parentPort?.on('message', (m: WorkerRequest) => {
    switch (m.kind) {
      case 'setPayload': engine.setPayload(m.bytes); break;
      case 'send': engine.send(m.to, m.channel, m.body); break;
      case 'mute': engine.mute(m.network, m.muted); break;
      case 'stop':
        void engine.stop().finally(() => {
          post({ kind: 'stopped' });
          parentPort?.close();
        });
        break;
    }
  });
}

void main();
