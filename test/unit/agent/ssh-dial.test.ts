import { describe, expect, it } from 'vitest';
import { channelFailureKind } from '../../../src/agent/ssh-dial.js';

// What OpenSSH's sshd puts in a refused direct-tcpip channel (reason 2, CONNECT_FAILED, with strerror or its own text).
describe('channelFailureKind', () => {
  it.each([
    [2, 'Connection refused', 'refused'],
    [2, '', 'refused'],
    [2, 'unknown host', 'dns'],
    [2, 'Name or service not known', 'dns'],
    [2, 'No route to host', 'unreachable'],
    [2, 'Network is unreachable', 'network'],
    [2, 'Connection timed out', 'timeout'],
    [1, 'open failed', 'failure'],
    [4, '', 'failure'],
    [undefined, 'server closed channel unexpectedly', 'failure'],
  ])('reason %s %j → %s', (reason, description, kind) => {
    expect(channelFailureKind(reason, description)).toBe(kind);
  });
});
