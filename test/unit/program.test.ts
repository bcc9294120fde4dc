// A node command taken apart for --ranks-as threads: the options go to the thread host, the
// script and its arguments to every rank's worker.

import { describe, expect, it } from 'vitest';
import { splitNodeCommand } from '../../launcher/program.js';

const EXEC = '/opt/node/bin/node';

describe('splitNodeCommand', () => {
  it('splits options, script and arguments, options with a separate value included', () => {
    expect(splitNodeCommand(['node', 'app.js', '--size', '3'], EXEC)).toEqual({ node: 'node', flags: [], script: 'app.js', args: ['--size', '3'] });
    expect(splitNodeCommand(['/usr/bin/node', '--max-old-space-size=4096', '-r', 'pre.cjs', '--import', 'tsx', 'app.ts', 'x'], EXEC)).toEqual({
      node: '/usr/bin/node',
      flags: ['--max-old-space-size=4096', '-r', 'pre.cjs', '--import', 'tsx'],
      script: 'app.ts',
      args: ['x'],
    });
    expect(splitNodeCommand([EXEC, 'app.mjs'], EXEC)).toMatchObject({ node: EXEC, script: 'app.mjs' });
  });

  it('says why a command cannot run as threads', () => {
    expect(splitNodeCommand(['python3', 'x.py'], EXEC)).toMatch(/must be 'node \[options\] script\.js \[args\]', not 'python3'/);
    expect(splitNodeCommand(['npx', 'tsx', 'app.ts'], EXEC)).toMatch(/not 'npx'/);
    expect(splitNodeCommand(['node', '-e', '1'], EXEC)).toMatch(/node -e has none/);
    expect(splitNodeCommand(['node', '--eval=1'], EXEC)).toMatch(/node --eval=1 has none/);
    expect(splitNodeCommand(['node', '--test', 'a.test.js'], EXEC)).toMatch(/node --test has none/);
    expect(splitNodeCommand(['node', '--inspect'], EXEC)).toMatch(/needs a script file/);
    expect(splitNodeCommand(['node'], EXEC)).toMatch(/needs a script file/);
    expect(splitNodeCommand([], EXEC)).toMatch(/not ''/);
  });
});
