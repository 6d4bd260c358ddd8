/**
 * A UDP forward's host side: one host socket; each host peer (address:port) gets its own datagram
 * channel into the guest, so the guest's replies find their way back to the right peer. UDP has no
 * close, so a peer quiet for a minute is forgotten.
 */
import dgram from 'node:dgram';
import type { NetnsDatagramChannel } from '../../native/netns.js';
import type { ForwardCounters } from './spec.js';

export type GuestUdp = (host: string, port: number) => Promise<NetnsDatagramChannel>;

const IDLE_MS = 60_000;
// Datagrams held for a peer while its channel opens; beyond this they are dropped, as UDP may.
const MAX_QUEUED = 64;

interface Peer {
  channel?: NetnsDatagramChannel;
  queue: Buffer[];
  lastSeen: number;
}

export class UdpForward {
  private socket: dgram.Socket | undefined;
  private readonly peers = new Map<string, Peer>();
  private total = 0;
  private bytesIn = 0;
  private bytesOut = 0;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly target: { guestIp: string; guestPort: number },
    private readonly open: GuestUdp,
  ) {}

  listen(ip: string, port: number): Promise<number> {
    const socket = dgram.createSocket({ type: ip.includes(':') ? 'udp6' : 'udp4' });
    this.socket = socket;
    socket.on('message', (msg, from) => this.receive(msg, from));
    this.sweeper = setInterval(() => this.sweep(), IDLE_MS / 2).unref();
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: ip, port, exclusive: true }, () => {
        socket.off('error', reject);
        socket.on('error', () => {});
        resolve(socket.address().port);
      });
    });
  }

  stats(): ForwardCounters {
    return { connections: this.peers.size, total: this.total, bytesIn: this.bytesIn, bytesOut: this.bytesOut };
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const peer of this.peers.values()) peer.channel?.close();
    this.peers.clear();
    const socket = this.socket;
    this.socket = undefined;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  private receive(msg: Buffer, from: dgram.RemoteInfo): void {
    this.bytesIn += msg.length;
    const key = `${from.address}|${from.port}`;
    let peer = this.peers.get(key);
    if (!peer) {
      peer = { queue: [], lastSeen: Date.now() };
      this.peers.set(key, peer);
      this.total++;
      this.connect(key, peer, from);
    }
    peer.lastSeen = Date.now();
    if (peer.channel) peer.channel.send(msg);
    else if (peer.queue.length < MAX_QUEUED) peer.queue.push(msg);
  }

  private connect(key: string, peer: Peer, from: dgram.RemoteInfo): void {
    this.open(this.target.guestIp, this.target.guestPort).then(
      (channel) => {
        if (this.peers.get(key) !== peer) return channel.close();
        peer.channel = channel;
        channel.on('message', (reply: Buffer) => {
          peer.lastSeen = Date.now();
          this.bytesOut += reply.length;
          this.socket?.send(reply, from.port, from.address);
        });
        channel.on('close', () => {
          if (this.peers.get(key) === peer) this.peers.delete(key);
        });
        for (const msg of peer.queue.splice(0)) channel.send(msg);
      },
      // The guest is unreachable right now: forget the peer so its next datagram tries again.
      () => {
        if (this.peers.get(key) === peer) this.peers.delete(key);
      },
    );
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, peer] of this.peers) {
      if (now - peer.lastSeen < IDLE_MS) continue;
      peer.channel?.close();
      this.peers.delete(key);
    }
  }
}
