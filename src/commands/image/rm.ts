import { Args } from '@oclif/core';
import { EnvCommand } from '../../cli/base.js';

export default class ImageRm extends EnvCommand {
  static override summary = 'Remove a cached image (container and VM builds); refused while an env is built on it.';
  static override args = { image: Args.string({ description: 'Image name or key.', required: true }) };

  async run(): Promise<void> {
    const { removeImage } = await import('../../images/index.js');
    const { imageUsers } = await import('../../core/image-users.js');
    const { args } = await this.parse(ImageRm);
    const removed = await removeImage(args.image, await imageUsers());
    this.result({ removed }, () => removed.map((i) => `removed ${i.name}${i.kind === 'vm' ? ' (VM)' : ''} (${i.key})`).join('\n'));
  }
}
