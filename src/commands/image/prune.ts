import { Flags } from '@oclif/core';
import { EnvCommand } from '../../cli/base.js';

export default class ImagePrune extends EnvCommand {
  static override summary = 'Remove cached images no env uses, and leftovers of interrupted builds.';
  static override flags = {
    imports: Flags.boolean({ description: 'Also remove unused imported images (they cannot be rebuilt).' }),
  };

  async run(): Promise<void> {
    const { imageUsers } = await import('../../core/image-users.js');
    const { pruneImages } = await import('../../images/index.js');
    const { flags } = await this.parse(ImagePrune);
    const inUse = new Set((await imageUsers()).keys());
    const removed = await pruneImages(inUse, { imports: flags.imports });
    this.result({ removed }, () => (removed.length ? removed.map((i) => `removed ${i.name}${i.kind === 'vm' ? ' (VM)' : ''} (${i.key})`).join('\n') : 'nothing to remove'));
  }
}
