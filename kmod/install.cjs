// `npm install ivcom` runs this: builds the native addon (the shared-memory fast path) against
// the headers of the Node that runs the install, found beside it (<prefix>/include/node), so
// node-gyp never downloads headers (a machine without internet, or an empty HOME, installs
// too). If it still cannot be built, the install succeeds: ivcom then runs over TCP only, and
// ivrun says so once per job, with how to build the fast path.
'use strict';

const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

/** Where this Node's own headers are (a distribution's /usr, nvm's or the official tarball's prefix). */
function localNodedir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

const nodedir = localNodedir();
// npm hands lifecycle scripts the path of its own node-gyp; outside npm, the one on PATH.
const gyp = process.env.npm_config_node_gyp;
const args = ['rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const r = gyp ? spawnSync(process.execPath, [gyp, ...args], { cwd: root, stdio: 'inherit' }) : spawnSync('node-gyp', args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  const why = r.error ? r.error.message : `node-gyp exited with ${r.status ?? r.signal}`;
  process.stderr.write(
    `\nivcom: the native addon (the shared-memory fast path) was not built (${why}${nodedir ? '' : "; no Node headers were found beside this Node's binary"}).\n` +
      'ivcom works without it, over TCP only. To build it: install python3, make and a C++ compiler, then run: npm rebuild ivcom\n\n',
  );
}
