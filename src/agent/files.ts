import { join } from 'node:path';

/**
 * Where an env's agent keeps its files, all inside the env's state folder (0700): the pid file that
 * `env halt` signals, the control socket in a private run/ folder, the JSON-lines event log that
 * `env up` tails and `env logs` prints, its stderr, and what it must remember across restarts.
 */
export interface AgentFiles {
  pid: string;
  /** 0700: the control socket and the netns relay's socket live here. */
  runDir: string;
  socket: string;
  events: string;
  log: string;
  /** The host ports `env up` settled on (auto_correct), so the agent uses the same ones. */
  plan: string;
  /** The proxy's port (stable across restarts for `socks: auto`) and its credentials (0600). */
  proxy: string;
}

export function agentFiles(stateDir: string): AgentFiles {
  const runDir = join(stateDir, 'run');
  return {
    pid: join(stateDir, 'agent.pid'),
    runDir,
    socket: join(runDir, 'agent.sock'),
    events: join(stateDir, 'events.jsonl'),
    log: join(stateDir, 'agent.log'),
    plan: join(stateDir, 'ports.json'),
    proxy: join(stateDir, 'proxy.json'),
  };
}
