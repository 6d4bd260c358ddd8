// Regenerates schema/envfile.schema.json from the one Envfile schema (run after `npm run build`).
import { writeFileSync, mkdirSync } from 'node:fs';
import { envfileJsonSchema } from '../dist/envfile/schema.js';

mkdirSync(new URL('../schema/', import.meta.url), { recursive: true });
writeFileSync(new URL('../schema/envfile.schema.json', import.meta.url), `${JSON.stringify(envfileJsonSchema(), null, 2)}\n`);
