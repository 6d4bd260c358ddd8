import { Args } from '@oclif/core';
import { EnvCommand } from '../../cli/base.js';

export default class ImageRm extends EnvCommand {
  static override summary = 'Remove a cached image (envs already created from it keep working until destroyed).';
  static override args = { image: Args.string({ description: 'Image name or key.', required: true }) };

  async run(): Promise<void> {
    const { removeImage } = await import('../../images/index.js');
    const { args } = await this.parse(ImageRm);
    const removed = await removeImage(args.image);
    this.result({ removed }, () => removed.map((i) => `removed ${i.name} (${i.key})`).join('\n'));
  }
}
