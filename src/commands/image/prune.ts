import { Flags } from '@oclif/core';
import { EnvCommand } from '../../cli/base.js';

export default class ImagePrune extends EnvCommand {
  static override summary = 'Remove cached images no env uses, and leftovers of interrupted builds.';
  static override flags = {
    imports: Flags.boolean({ description: 'Also remove unused imported images (they cannot be rebuilt).' }),
  };

  async run(): Promise<void> {
    const { listEnvs } = await import('../../core/state.js');
    const { pruneImages } = await import('../../images/index.js');
    const { flags } = await this.parse(ImagePrune);
    const inUse = new Set((await listEnvs()).map((e) => e.record.image?.key).filter((k): k is string => Boolean(k)));
    const removed = await pruneImages(inUse, { imports: flags.imports });
    this.result({ removed }, () => (removed.length ? removed.map((i) => `removed ${i.name} (${i.key})`).join('\n') : 'nothing to remove'));
  }
}
