/**
 * Where the helpers built from native/ live. They are optional at run time: a caller that gets
 * `undefined` takes its slower path and says so, it never fails because a build is missing.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../util/package.js';

/** native/build/<name> under the package folder when it is an executable file, else undefined. */
export function nativeHelperPath(name: string): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return undefined;
  try {
    const path = join(packageRoot(), 'native', 'build', name);
    return executable(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

/** True when `path` is a regular file this process may execute. */
export function executable(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
