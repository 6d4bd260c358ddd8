import { readFile, writeFile } from 'node:fs/promises';
import { EnvboxError } from '../../util/errors.js';
import { run, runOk } from '../../util/exec.js';
import { hostStateDir } from '../../util/paths.js';
import { readNetwork, writeNetwork, type NetworkState } from './hoststate.js';
import { bridgeName, formatIPv4, freeAddress, gatewayOf, nftTable, outboundElements, parseCidr, pickSubnet, usedCidrs } from './net.js';

/**
 * The bridge, its nft table and the per-guest address leases. Every function here runs under the host lock
 * (hoststate.withHostLock) because it reads and writes network.json.
 */

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

/** One look at the host's links and envbox's nft table (two commands at once: start runs this on every boot). */
export interface NetworkProbe {
  links: Map<string, { up: boolean; addrs: string[] }>;
  /** `nft list table` output, undefined when the table doesn't exist. */
  table: string | undefined;
}

async function probe(bridge: string): Promise<NetworkProbe> {
  const [links, table] = await Promise.all([runOk('ip', ['-j', 'addr', 'show']), run('nft', ['list', 'table', 'inet', bridge])]);
  const parsed = JSON.parse(links.stdout || '[]') as { ifname: string; flags?: string[]; addr_info?: { family?: string; local?: string }[] }[];
  return {
    links: new Map(
      parsed.map((l) => [
        l.ifname,
        { up: !!l.flags?.includes('UP'), addrs: (l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => a.local ?? '') },
      ]),
    ),
    table: table.code === 0 ? table.stdout : undefined,
  };
}

async function hostCidrs() {
  const [routes, addrs] = await Promise.all([
    runOk('ip', ['-j', '-4', 'route', 'show', 'table', 'all']),
    runOk('ip', ['-j', '-4', 'addr', 'show']),
  ]);
  return usedCidrs(routes.stdout, addrs.stdout);
}

/**
 * The bridge with its gateway address and the nft table, created when missing (first env, or after a
 * reboot wiped them). Returns the network state, what the host looked like, and one line per change.
 */
export async function ensureNetwork(outbound: boolean): Promise<{ state: NetworkState; probe: NetworkProbe; changes: string[] }> {
  const changes: string[] = [];
  const bridge = bridgeName();
  let state = await readNetwork();
  if (state && state.bridge !== bridge) {
    throw new EnvboxError('BRIDGE_MISMATCH', `envs on this host use bridge ${state.bridge}, not ${bridge}`, {
      hint: `unset ENVBOX_BRIDGE or set it to ${state.bridge}`,
    });
  }
  // Without a network yet (the first env), the host's routes are wanted too: looked at in the same moment.
  const [seen, inUse] = await Promise.all([probe(bridge), state ? undefined : hostCidrs()]);
  const link = seen.links.get(bridge);
  if (!state) {
    if (link?.addrs.length) {
      throw new EnvboxError('BRIDGE_IN_USE', `bridge ${bridge} exists, but this envbox (state in ${hostStateDir()}) did not make it`, {
        hint: `another envbox state folder uses it: set ENVBOX_BRIDGE to another name, or if nothing uses it: ip link del ${bridge}`,
      });
    }
    const subnet = pickSubnet(inUse ?? (await hostCidrs()));
    state = { bridge, subnet: `${formatIPv4(subnet.addr)}/24`, gateway: gatewayOf(subnet), leases: {} };
    await writeNetwork(state);
  }
  // What the bridge lacks, as one `ip -batch` (it stops at the first command that fails, and says which).
  const batch: string[] = [];
  if (!link) {
    batch.push(`link add ${bridge} type bridge`);
    changes.push(`created bridge ${bridge}`);
  }
  const addAddress = !link?.addrs.includes(state.gateway);
  if (addAddress) {
    batch.push(`addr add ${state.gateway}/24 dev ${bridge}`);
    changes.push(`gave ${bridge} ${state.gateway}/24`);
  }
  if (!link?.up) batch.push(`link set ${bridge} up`);
  if (addAddress) {
    // Quick ACKs towards the guests: the host's ssh client would otherwise wait 40 ms for a delayed ACK at
    // several points of each login (config.ts quickAckHook does the same in each guest).
    batch.push(`route replace ${state.subnet} dev ${bridge} proto kernel scope link src ${state.gateway} quickack 1`);
  }
  if (batch.length > 0) await runOk('ip', ['-batch', '-'], { input: `${batch.join('\n')}\n`, code: 'BRIDGE_CREATE', what: `ip ${batch.join('; ')}` });
  if (!seen.table) {
    const table = nftTable(bridge, state.subnet);
    await runOk('nft', ['-f', '-'], { input: table, code: 'NFT_FAILED' });
    // The table as it now is (its outbound set empty), so callers need not list it again.
    seen.table = table;
    changes.push(`created nft table inet ${bridge}`);
  }
  if (outbound && (await readFile(IP_FORWARD, 'utf8')).trim() !== '1') {
    await writeFile(IP_FORWARD, '1\n');
    state.forwardingEnabled = true;
    changes.push('turned on IPv4 forwarding (net.ipv4.ip_forward=1)');
  }
  if (changes.length > 0) await writeNetwork(state);
  return { state, probe: seen, changes };
}

/** The env's address: its existing lease, else the lowest free one. */
export async function leaseAddress(state: NetworkState, id: string): Promise<string> {
  const held = state.leases[id];
  if (held) return held;
  const subnet = parseCidr(state.subnet)!;
  const addr = freeAddress(subnet, [state.gateway, ...Object.values(state.leases)]);
  if (!addr) {
    throw new EnvboxError('NO_FREE_ADDRESS', `every address on ${state.bridge} (${state.subnet}) is leased`, {
      hint: 'destroy envs you no longer need (env list shows them)',
    });
  }
  state.leases[id] = addr;
  await writeNetwork(state);
  return addr;
}

/**
 * Puts the guest in or out of the NAT set, to match its Envfile's `network.outbound`. With the table
 * listing at hand (`tableText`), nothing runs when the set is already right.
 */
export async function setOutbound(bridge: string, address: string, outbound: boolean, tableText?: string): Promise<void> {
  if (tableText !== undefined && outboundElements(tableText).includes(address) === outbound) return;
  if (outbound) {
    await runOk('nft', ['add', 'element', 'inet', bridge, 'outbound', `{ ${address} }`], { code: 'NFT_FAILED' });
  } else {
    // Deleting an absent element fails; that is the state we want.
    await run('nft', ['delete', 'element', 'inet', bridge, 'outbound', `{ ${address} }`]);
  }
}

/**
 * Drops the env's lease and NAT entry; when no env is left, the bridge, the table and the forwarding
 * envbox turned on go too.
 */
export async function releaseNetwork(id: string): Promise<void> {
  const state = await readNetwork();
  if (!state) return;
  const address = state.leases[id];
  if (address) {
    await setOutbound(state.bridge, address, false);
    // The next env to lease this address has another MAC: a cached neighbour entry would send its
    // traffic nowhere for up to a minute.
    await run('ip', ['neigh', 'flush', 'to', address, 'dev', state.bridge]);
    delete state.leases[id];
  }
  if (Object.keys(state.leases).length > 0) return writeNetwork(state);
  const seen = await probe(state.bridge);
  if (seen.table) await runOk('nft', ['delete', 'table', 'inet', state.bridge], { code: 'NFT_FAILED' });
  if (seen.links.has(state.bridge)) await runOk('ip', ['link', 'del', state.bridge]);
  if (state.forwardingEnabled) await writeFile(IP_FORWARD, '0\n');
  await writeNetwork(undefined);
}

/** What `env doctor` says about the bridge. */
export async function describeNetwork(): Promise<{ ok: boolean; detail: string }> {
  const state = await readNetwork();
  if (!state) return { ok: true, detail: `no bridge yet (${bridgeName()} is created by the first env up)` };
  const seen = await probe(state.bridge);
  const up = seen.links.get(state.bridge)?.addrs.includes(state.gateway) && !!seen.table;
  const count = Object.keys(state.leases).length;
  return {
    ok: true,
    detail: up
      ? `${state.bridge} ${state.gateway}/24, ${count} env(s)`
      : `${state.bridge} (${state.subnet}) is recorded but not up; the next env up or start recreates it`,
  };
}
