// ivcom installed the way a user installs it: the packed tarball, into a fresh project, with an
// empty HOME (no npm or node-gyp settings, no cached headers) and node-gyp's header download
// pointed at a closed port, so any attempt to fetch headers fails. The addon must build from the
// local Node's headers; and where it cannot be built, the install must still succeed and ivrun
// must say once that ranks talk over TCP, and how to build the fast path. (Dependencies come
// from the npm cache or registry, as for any install.)

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/job.js';

const INSTALL_TIMEOUT_MS = 240_000;
let work: string;
let tarball: string;
let cache: string;

const APP = `import { init, finalize } from 'ivcom';
const c = await init();
const got = await c.sendrecv('hi from ' + c.rank, 1 - c.rank, 1 - c.rank);
console.log('rank ' + c.rank + ' got ' + got + ' over ' + c.transportTo(1 - c.rank));
await finalize();
`;

function consumer(name: string, extraEnv: Record<string, string> = {}) {
  const dir = path.join(work, name);
  const home = path.join(work, `${name}-home`);
  execFileSync('mkdir', ['-p', dir, home]);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `consumer-${name}`, private: true, type: 'module' }));
  writeFileSync(path.join(dir, 'app.mjs'), APP);
  const env: Record<string, string | undefined> = { ...process.env, HOME: home, npm_config_dist_url: 'http://127.0.0.1:9', ...extraEnv };
  delete env.npm_config_nodedir;
  const install = spawnSync('npm', ['install', '--prefer-offline', '--cache', cache, '--no-audit', '--no-fund', tarball], {
    cwd: dir,
    env,
    encoding: 'utf8',
    timeout: INSTALL_TIMEOUT_MS,
  });
  const run = () => spawnSync('npx', ['ivrun', '-n', '2', '--timeout', '30', 'node', 'app.mjs'], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
  return { dir, home, install, run };
}

beforeAll(() => {
  work = mkdtempSync(path.join(os.tmpdir(), 'ivcom-install-'));
  cache = execFileSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).trim();
  // --ignore-scripts: dist is built already (test/helpers/build.ts); rebuilding it here would
  // rewrite files other test files are running.
  execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', work], { cwd: ROOT, stdio: 'ignore' });
  tarball = path.join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!);
}, INSTALL_TIMEOUT_MS);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('npm install of the packed tarball', () => {
  it('ships the runtime, the launcher, the addon sources, the docs and the license, and no tests', () => {
    const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n');
    for (const f of ['package/dist/runtime/index.js', 'package/dist/launcher/ivrun.js', 'package/kmod/src/addon.cc', 'package/kmod/install.cjs', 'package/docs/api.md', 'package/docs/launcher.md', 'package/LICENSE', 'package/README.md']) {
      expect(files).toContain(f);
    }
    expect(files.filter((f) => /\/(test|apps)\//.test(f))).toEqual([]);
  });

  it('builds the fast path from the local headers, offline from nodejs.org, and npx ivrun runs over it', () => {
    const c = consumer('fast');
    expect(c.install.status, c.install.stderr).toBe(0);
    expect(existsSync(path.join(c.dir, 'node_modules/ivcom/build/Release/ivcom_kmod.node'))).toBe(true);
    // node-gyp never fetched or cached headers of its own.
    expect(existsSync(path.join(c.home, '.cache/node-gyp'))).toBe(false);
    const r = c.run();
    expect(r.stdout).toContain('rank 0 got hi from 1 over ivcom');
    expect(r.stdout).toContain('rank 1 got hi from 0 over ivcom');
    expect(r.status).toBe(0);
  }, INSTALL_TIMEOUT_MS);

  it('without a working compiler the install still succeeds, and ivrun says once that ranks use TCP', () => {
    const c = consumer('nocompiler', { CXX: '/bin/false', CC: '/bin/false' });
    expect(c.install.status, c.install.stderr).toBe(0);
    expect(existsSync(path.join(c.dir, 'node_modules/ivcom/build/Release/ivcom_kmod.node'))).toBe(false);
    const r = c.run();
    expect(r.stdout).toContain('rank 0 got hi from 1 over tcp');
    expect(r.status).toBe(0);
    expect(r.stderr.match(/the shared-memory fast path is not built here, so ranks on one host talk over TCP; build it with 'npm rebuild ivcom'/g)).toHaveLength(1);
  }, INSTALL_TIMEOUT_MS);
});
