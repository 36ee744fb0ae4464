/**
 * A minimal tcp checker (until `@ha/checkers` lands): connects to addr:port every `intervalMs`
 * with `timeoutMs`; reports `down` after `failures` consecutive failures and `up` after one success.
 */
import net from 'node:net';
import { EventEmitter } from 'eventemitter3';

/** Configuration of a {@link TcpCheck}. @public */
export interface TcpCheckInit {
  host: string;
  port: number;
  /** Default 1000 ms. */
  intervalMs?: number;
  /** Default 1000 ms. */
  timeoutMs?: number;
  /** Consecutive failures before `down` (default 2). */
  failures?: number;
  /** Local address to connect from. */
  localAddress?: string;
}

/** Connects once; resolves with undefined on success or the reason of the failure. @public */
export function tcpProbe(host: string, port: number, timeoutMs: number, localAddress?: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const done = (r: string | undefined) => { clearTimeout(t); s.destroy(); resolve(r); };
    const t = setTimeout(() => done(`no connection within ${timeoutMs} ms`), timeoutMs);
    s.once('connect', () => done(undefined));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

/** A periodic tcp check. @public */
export class TcpCheck extends EventEmitter<{ up: []; down: [{ reason: string }] }> {
  #timer: NodeJS.Timeout | undefined;
  #fails = 0;
  #healthy: boolean | undefined;
  constructor(readonly init: TcpCheckInit) { super(); }
  get healthy(): boolean | undefined { return this.#healthy; }
  start(): void {
    if (this.#timer) return;
    const tick = async () => {
      const r = await tcpProbe(this.init.host, this.init.port, this.init.timeoutMs ?? 1000, this.init.localAddress);
      if (!this.#timer) return;
      if (r === undefined) {
        this.#fails = 0;
        if (this.#healthy !== true) { this.#healthy = true; this.emit('up'); }
      } else if (++this.#fails >= (this.init.failures ?? 2) && this.#healthy !== false) {
        this.#healthy = false;
        this.emit('down', { reason: `tcp ${this.init.host}:${this.init.port}: ${r}` });
      }
      if (this.#timer) this.#timer = setTimeout(() => void tick(), this.init.intervalMs ?? 1000);
    };
    this.#timer = setTimeout(() => void tick(), 0);
  }
  stop(): void { clearTimeout(this.#timer); this.#timer = undefined; this.#healthy = undefined; this.#fails = 0; }
}
