/** UDP sockets, one per network, bound to the local address and the network's port. */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { MembershipBindError } from './errors.js';

/** One network as the transport sees it. */
export interface TransportNetwork {
  name: string;
  localAddress: string;
  port: number;
}

/** Receives datagrams: (network index, bytes, sender). */
export type PacketHandler = (net: number, buf: Buffer, from: RemoteInfo) => void;

/** The sockets of all networks. */
export class Transport {
  readonly #sockets: Socket[] = [];
  /** Networks whose sending is muted (test hook: simulates one link being cut). */
  readonly muted = new Set<number>();
  sendErrors = 0;

  constructor(
    readonly networks: readonly TransportNetwork[],
    readonly onPacket: PacketHandler,
    readonly onError: (net: number, err: Error) => void = () => {},
  ) {}

  /** Binds every socket; if one fails, closes those already bound and throws MembershipBindError. */
  async start(): Promise<void> {
    try {
      for (const [i, n] of this.networks.entries()) {
        const sock = createSocket({ type: 'udp4', reuseAddr: false });
        this.#sockets.push(sock);
        await new Promise<void>((resolve, reject) => {
          const onErr = (err: Error) => reject(new MembershipBindError(
            `membership: cannot bind network '${n.name}' to ${n.localAddress}:${n.port}: ${err.message}`,
            { cause: err, details: { network: n.name, address: n.localAddress, port: n.port } }));
          sock.once('error', onErr);
          sock.bind({ address: n.localAddress, port: n.port, exclusive: true }, () => {
            sock.off('error', onErr);
            resolve();
          });
        });
        try { sock.setRecvBufferSize(1 << 20); } catch { /* capped by the kernel: keep its default */ }
        sock.on('error', (err) => this.onError(i, err));
        sock.on('message', (buf, rinfo) => this.onPacket(i, buf, rinfo));
      }
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  /** Sends one datagram; errors (no route, link down...) are counted, never thrown. */
  send(net: number, buf: Uint8Array, address: string, port: number): void {
    if (this.muted.has(net)) return;
    const sock = this.#sockets[net];
    if (!sock) return;
    try {
      sock.send(buf, port, address, (err) => { if (err) this.sendErrors++; });
    } catch {
      this.sendErrors++;
    }
  }

  /** Closes every socket. */
  stop(): void {
    for (const s of this.#sockets.splice(0)) {
      try { s.close(); } catch { /* already closed */ }
    }
  }
}
