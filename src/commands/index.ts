import type { Command } from '@oclif/core';
import Agent from './agent.js';
import Destroy from './destroy.js';
import Doctor from './doctor.js';
import Exec from './exec.js';
import Halt from './halt.js';
import Help from './help.js';
import ImageBuild from './image/build.js';
import ImageImport from './image/import.js';
import ImageList from './image/list.js';
import ImagePrune from './image/prune.js';
import ImageRm from './image/rm.js';
import Init from './init.js';
import List from './list.js';
import Logs from './logs.js';
import Ports from './ports.js';
import Provision from './provision.js';
import Proxy from './proxy.js';
import Reload from './reload.js';
import RemoteAdd from './remote/add.js';
import RemoteList from './remote/list.js';
import RemoteRm from './remote/rm.js';
import Resume from './resume.js';
import Ssh from './ssh.js';
import SshConfig from './ssh-config.js';
import Status from './status.js';
import Suspend from './suspend.js';
import Sync from './sync.js';
import Up from './up.js';
import Validate from './validate.js';

/**
 * Every command, by id (topic commands use `topic:verb`). Loaded explicitly rather than by
 * scanning the folder: it is faster at start-up, and bin/verbs is tested against it.
 */
export const COMMANDS: Record<string, Command.Class> = {
  agent: Agent,
  destroy: Destroy,
  doctor: Doctor,
  exec: Exec,
  halt: Halt,
  help: Help,
  'image:build': ImageBuild,
  'image:import': ImageImport,
  'image:list': ImageList,
  'image:prune': ImagePrune,
  'image:rm': ImageRm,
  init: Init,
  list: List,
  logs: Logs,
  ports: Ports,
  provision: Provision,
  proxy: Proxy,
  reload: Reload,
  'remote:add': RemoteAdd,
  'remote:list': RemoteList,
  'remote:rm': RemoteRm,
  resume: Resume,
  ssh: Ssh,
  'ssh-config': SshConfig,
  status: Status,
  suspend: Suspend,
  sync: Sync,
  up: Up,
  validate: Validate,
};
