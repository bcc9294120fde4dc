import { describe, expect, it } from 'vitest';
import { withRankFlags, YOUNG_SEMI_SPACE_MB } from '../../launcher/v8-flags.js';

const YOUNG = `--min-semi-space-size=${YOUNG_SEMI_SPACE_MB}`;
const COMPILE = '--no-concurrent-recompilation';
const GC = '--single-threaded-gc';
const ROOMY = { ranks: 2, cores: 4 };
const FULL = { ranks: 2, cores: 2 };

describe('the V8 flags of node ranks', () => {
  it('are set right after the node binary, however node is named', () => {
    expect(withRankFlags(['node', 'app.js', '--x'], {}, ROOMY)).toEqual(['node', YOUNG, 'app.js', '--x']);
    expect(withRankFlags(['/usr/bin/nodejs', '--inspect', 'app.js'], {}, ROOMY)).toEqual(['/usr/bin/nodejs', YOUNG, '--inspect', 'app.js']);
    expect(withRankFlags(['/opt/n/bin/n20', '-e', '1'], {}, ROOMY, '/opt/n/bin/n20')).toEqual(['/opt/n/bin/n20', YOUNG, '-e', '1']);
  });

  it("keep V8's compiler and collector on the rank's thread only when the ranks take every core", () => {
    expect(withRankFlags(['node', 'app.js'], {}, FULL)).toEqual(['node', YOUNG, COMPILE, GC, 'app.js']);
    expect(withRankFlags(['node', 'app.js'], {}, { ranks: 8, cores: 2 })).toEqual(['node', YOUNG, COMPILE, GC, 'app.js']);
    expect(withRankFlags(['node', 'app.js'], {}, { ranks: 3, cores: 4 })).toEqual(['node', YOUNG, 'app.js']);
  });

  it("leave other programs, and a user's own choice on each matter, alone", () => {
    for (const c of [['python3', 'app.py'], ['npx', 'tsx', 'app.ts'], ['sh', '-c', 'node app.js'], []]) expect(withRankFlags(c, {}, FULL)).toEqual(c);
    for (const flag of ['--max-semi-space-size=8', '--min_semi_space_size=2', '--semi-space-growth-factor=4']) {
      expect(withRankFlags(['node', flag, 'app.js'], {}, ROOMY)).toEqual(['node', flag, 'app.js']);
      expect(withRankFlags(['node', 'app.js'], { NODE_OPTIONS: `--enable-source-maps ${flag}` }, ROOMY)).toEqual(['node', 'app.js']);
    }
    for (const flag of ['--concurrent-recompilation', '--no-concurrent-recompilation', '--no_concurrent_recompilation']) {
      expect(withRankFlags(['node', flag, 'app.js'], {}, FULL)).toEqual(['node', YOUNG, GC, flag, 'app.js']);
    }
    for (const flag of ['--single-threaded-gc', '--no-single-threaded-gc', '--single_threaded_gc']) {
      expect(withRankFlags(['node', flag, 'app.js'], {}, FULL)).toEqual(['node', YOUNG, COMPILE, flag, 'app.js']);
    }
    // --single-threaded covers both.
    expect(withRankFlags(['node', '--single-threaded', 'app.js'], {}, FULL)).toEqual(['node', YOUNG, '--single-threaded', 'app.js']);
  });
});
