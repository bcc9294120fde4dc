// Every bench script and the runner answer --help with their usage, and do nothing else.

import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/job.js';

const BENCH = path.join(ROOT, 'dist/apps/bench');

describe('bench --help', () => {
  it.each(['run', 'natural', 'pingpong', 'collectives', 'stream', 'idle', 'ring-micro', 'match-micro', 'wake-floor', 'startup'])('%s.js --help prints its usage and exits 0', (name) => {
    const r = spawnSync(process.execPath, [path.join(BENCH, `${name}.js`), '--help'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(80);
    expect(r.stdout).not.toMatch(/^\s*\/\//m); // the comment markers are gone
  });

  it('npm start --help too', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist/apps/experiment/run.js'), '--help'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--json FILE/);
  });
});
