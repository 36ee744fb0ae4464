/**
 * Replay protection: per (sender, network) a sliding window of sequence numbers, and per
 * sender the highest incarnation seen (a lower one is stale; a higher one means the sender
 * restarted: its windows are reset).
 */

/** Size of the replay window (sequence numbers). @public */
export const REPLAY_WINDOW = 64;

/**
 * Sliding window over sequence numbers (IPsec style): accepts each number once, rejects
 * numbers more than `size` behind the highest seen.
 */
export class ReplayWindow {
  #highest = 0;
  readonly #seen: Uint8Array;
  constructor(readonly size: number = REPLAY_WINDOW) {
    this.#seen = new Uint8Array(size);
  }

  get highest(): number { return this.#highest; }

  /** Would `seq` be accepted? (does not record it) */
  check(seq: number): boolean {
    if (!Number.isSafeInteger(seq) || seq < 1) return false;
    if (seq > this.#highest) return true;
    if (this.#highest - seq >= this.size) return false;
    return this.#seen[seq % this.size] === 0;
  }

  /** Accepts `seq` if it is new and recent; records it. */
  accept(seq: number): boolean {
    if (!this.check(seq)) return false;
    if (seq > this.#highest) {
      const from = Math.max(this.#highest + 1, seq - this.size + 1);
      for (let s = from; s <= seq; s++) this.#seen[s % this.size] = 0;
      this.#highest = seq;
    }
    this.#seen[seq % this.size] = 1;
    return true;
  }
}

/** Verdict of {@link ReplayGuard.accept}. */
export type ReplayVerdict = 'ok' | 'replay' | 'staleIncarnation';

interface SenderState {
  incarnation: number;
  nets: Map<number, ReplayWindow>;
  app: ReplayWindow;
}

/** Replay state of every sender. */
export class ReplayGuard {
  readonly #senders = new Map<string, SenderState>();
  constructor(readonly size: number = REPLAY_WINDOW) {}

  /** Highest incarnation seen from `sender`, or undefined. */
  incarnationOf(sender: string): number | undefined {
    return this.#senders.get(sender)?.incarnation;
  }

  /**
   * Checks (sender, incarnation, net, seq) and records it when accepted. A higher incarnation
   * than the one recorded replaces it and resets the sender's windows.
   */
  accept(sender: string, incarnation: number, net: number, seq: number): ReplayVerdict {
    let s = this.#senders.get(sender);
    if (s && incarnation < s.incarnation) return 'staleIncarnation';
    if (!s || incarnation > s.incarnation) {
      s = { incarnation, nets: new Map(), app: new ReplayWindow(this.size) };
      this.#senders.set(sender, s);
    }
    let w = s.nets.get(net);
    if (!w) { w = new ReplayWindow(this.size); s.nets.set(net, w); }
    return w.accept(seq) ? 'ok' : 'replay';
  }

  /**
   * Deduplicates application messages, sent once on every network with the same message id:
   * true the first time `mid` is seen for the sender's current incarnation.
   */
  acceptApp(sender: string, mid: number): boolean {
    const s = this.#senders.get(sender);
    return s ? s.app.accept(mid) : false;
  }
}
