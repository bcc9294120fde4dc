// Where the package is installed: what it builds (build/Release) is found from there, whether the
// code runs from source (under vitest) or compiled (dist/).

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest ancestor directory of `start` that holds binding.gyp and package.json. */
export function findPackageRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(join(dir, 'binding.gyp')) && existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error(`ivcom: cannot find the package root (binding.gyp) above ${start}`);
    }
    dir = parent;
  }
}

/** A file that node-gyp builds (build/Release/<name>), found from the module at `moduleUrl`. */
export function builtFile(moduleUrl: string, name: string): string {
  return join(findPackageRoot(dirname(fileURLToPath(moduleUrl))), 'build', 'Release', name);
}
