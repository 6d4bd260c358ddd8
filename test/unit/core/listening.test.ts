import { createServer, type Server } from 'node:net';
import { describe, expect, it } from 'vitest';
import { guestListens, listensOn } from '../../../src/core/listening.js';

// Lines as /proc/net/tcp and tcp6 print them (little-endian host): state 0A is LISTEN, 01 ESTABLISHED.
const ANY_22 = '   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0';
const LOOPBACK_22 = '   1: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0 100 0 0 10 0';
const V6_ANY_22 = '   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0 100 0 0 10 0';
const GUEST_8080 = '   2: 0200470A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1004 1 0 100 0 0 10 0';

describe('listensOn', () => {
  it('takes a listener on every address, IPv4 or IPv6, as reaching the guest address', () => {
    expect(listensOn(ANY_22, '10.71.0.2', 22)).toBe(true);
    expect(listensOn(V6_ANY_22, '10.71.0.2', 22)).toBe(true);
  });

  it('does not take one on loopback only, on another port, or on another address', () => {
    expect(listensOn(LOOPBACK_22, '10.71.0.2', 22)).toBe(false);
    expect(listensOn(ANY_22, '10.71.0.2', 2222)).toBe(false);
    expect(listensOn(GUEST_8080, '10.71.0.2', 8080)).toBe(true);
    expect(listensOn(GUEST_8080, '10.71.0.3', 8080)).toBe(false);
    expect(listensOn('', '10.71.0.2', 22)).toBe(false);
  });
});

describe('guestListens', () => {
  it("reads a live process's socket tables: a real listener shows, a closed one doesn't", async () => {
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    expect(await guestListens(process.pid, '127.0.0.1', port)).toBe(true);
    await new Promise((resolve) => server.close(resolve));
    expect(await guestListens(process.pid, '127.0.0.1', port)).toBe(false);
  });

  it('says nothing for a process that does not exist', async () => {
    expect(await guestListens(2 ** 22 + 12345, '127.0.0.1', 22)).toBeUndefined();
  });
});
