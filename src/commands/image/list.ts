import { EnvCommand } from '../../cli/base.js';
import { table } from '../../cli/table.js';

export default class ImageList extends EnvCommand {
  static override summary = 'List cached images and the recipes that can be built.';

  async run(): Promise<void> {
    const { listImages, listRecipes } = await import('../../images/index.js');
    const { formatSize } = await import('../../util/size.js');
    await this.parse(ImageList);
    const images = await listImages();
    const recipes = await listRecipes();
    const built = new Set(images.map((i) => i.name));
    const { imageUsers } = await import('../../core/image-users.js');
    const users = await imageUsers();
    const listed = images.map((i) => ({ ...i, usedBy: users.get(i.key) ?? [] }));
    this.result({ images: listed, recipes }, () => {
      const rows = listed.map((i) => [i.name, i.kind, i.key, i.source, formatSize(i.sizeBytes), i.created.slice(0, 19).replace('T', ' '), i.usedBy.join(',') || '-']);
      for (const r of recipes) if (!built.has(r)) rows.push([r, '-', '-', 'recipe', '-', 'not built', '-']);
      return table([['IMAGE', 'KIND', 'KEY', 'SOURCE', 'SIZE', 'BUILT', 'USED BY'], ...rows]);
    });
  }
}
