import { Args } from '@oclif/core';
import { EnvCommand } from '../../cli/base.js';

export default class ImageImport extends EnvCommand {
  static override summary = 'Import a root filesystem tarball (.tar, .tar.gz, .tar.zst) as an image.';
  static override description = 'Use it in an Envfile as image: NAME. The guest needs systemd, sshd and sudo.';
  static override args = {
    file: Args.string({ description: 'The tarball.', required: true }),
    name: Args.string({ description: 'Name to refer to it by (no slash).', required: true }),
  };

  async run(): Promise<void> {
    const { importImage } = await import('../../images/index.js');
    const { formatSize } = await import('../../util/size.js');
    const { args } = await this.parse(ImageImport);
    const step = this.out.step(`Importing ${args.file}`);
    try {
      const image = await importImage(args.file, args.name, step);
      step.done(`${image.key}, ${formatSize(image.sizeBytes)}`);
      this.result({ image }, () => `image ${image.name} is ready; use it with image: ${image.name}`);
    } catch (err) {
      step.fail();
      throw err;
    }
  }
}
