// Vitest global setup: integration tests run the compiled launcher and fixtures, so compile
// once before any test starts (fast when nothing changed).

import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './job.js';

export default function setup(): void {
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.json')], {
    stdio: 'inherit',
  });
}
