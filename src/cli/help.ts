import { Help } from '@oclif/core';

/** Root help: what envbox is, and that anything else typed after `env` goes to the system's env. */
export default class EnvHelp extends Help {
  override formatRoot(): string {
    return [
      'PASSTHROUGH',
      '  `env` with anything that is not one of the commands below (no arguments, -i, -u NAME,',
      '  NAME=VALUE COMMAND, --version, …) runs the system env (coreutils) unchanged, so scripts that',
      '  use env keep working. `envbox` is the same program without the passthrough.',
      '',
      super.formatRoot(),
    ].join('\n');
  }
}
