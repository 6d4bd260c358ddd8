import type { Command } from '@oclif/core';
import Help from './help.js';
import Init from './init.js';
import List from './list.js';
import Validate from './validate.js';

/**
 * Every command, by id (topic commands use `topic:verb`). Loaded explicitly rather than by
 * scanning the folder: it is faster at start-up, and bin/env's verb list is tested against it.
 */
export const COMMANDS: Record<string, Command.Class> = {
  help: Help,
  init: Init,
  list: List,
  validate: Validate,
};
