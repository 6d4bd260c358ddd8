import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkEnvfile } from '../../../src/envfile/index.js';
import { envfileJsonSchema } from '../../../src/envfile/schema.js';
import { ROOT } from '../../helpers/cli.js';

type JsonSchema = { properties?: Record<string, JsonSchema>; items?: JsonSchema; anyOf?: JsonSchema[]; additionalProperties?: JsonSchema | boolean };

/** Every property name anywhere in the schema. */
function keys(schema: JsonSchema, out = new Set<string>()): Set<string> {
  for (const [name, sub] of Object.entries(schema.properties ?? {})) {
    out.add(name);
    keys(sub, out);
  }
  if (schema.items) keys(schema.items, out);
  for (const alt of schema.anyOf ?? []) keys(alt, out);
  if (typeof schema.additionalProperties === 'object') keys(schema.additionalProperties, out);
  return out;
}

describe('the Envfile JSON Schema', () => {
  it('schema/envfile.schema.json is up to date (run npm run build && npm run schema)', () => {
    const shipped = JSON.parse(readFileSync(join(ROOT, 'schema/envfile.schema.json'), 'utf8'));
    expect(shipped).toEqual(envfileJsonSchema());
  });

  it('rejects unknown keys for editors too', () => {
    expect(envfileJsonSchema().additionalProperties).toBe(false);
  });
});

describe('Envfile.example', () => {
  const text = readFileSync(join(ROOT, 'Envfile.example'), 'utf8');

  it('starts with the yaml-language-server $schema line', () => {
    expect(text.split('\n')[0]).toBe('# yaml-language-server: $schema=./schema/envfile.schema.json');
  });

  it('mentions every key the schema has', () => {
    const missing = [...keys(envfileJsonSchema() as JsonSchema)].filter((k) => !new RegExp(`\\b${k}\\b\\s*:`).test(text));
    expect(missing).toEqual([]);
  });

  it('is a valid Envfile', async () => {
    const { problems } = await checkEnvfile(join(ROOT, 'Envfile.example'), { isRoot: false });
    expect(problems).toEqual([]);
  });
});
