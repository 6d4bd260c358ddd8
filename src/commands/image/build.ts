import { Args, Flags } from '@oclif/core';
import { EnvCommand } from '../../cli/base.js';

export default class ImageBuild extends EnvCommand {
  static override summary = 'Build an image from its recipe (env up does this when needed).';
  static override args = { name: Args.string({ description: 'Recipe name, like debian/bookworm.', required: true }) };
  static override flags = {
    package: Flags.string({ char: 'p', description: 'Extra Debian package to bake in (repeatable).', multiple: true }),
    force: Flags.boolean({ description: 'Rebuild even when cached (picks up Debian updates).' }),
  };

  async run(): Promise<void> {
    const { buildImage } = await import('../../images/index.js');
    const { formatSize } = await import('../../util/size.js');
    const { args, flags } = await this.parse(ImageBuild);
    const ref = flags.package?.length ? { from: args.name, packages: flags.package } : args.name;
    const step = this.out.step(`Building image ${args.name}`);
    try {
      const image = await buildImage(ref, step, { force: flags.force });
      step.done(`${image.key}, ${formatSize(image.sizeBytes)}`);
      this.result({ image }, () => `image ${image.name} is ready (${image.key})`);
    } catch (err) {
      step.fail();
      throw err;
    }
  }
}
