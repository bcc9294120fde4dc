import { describe, expect, it } from 'vitest';
import { withYoungGeneration, YOUNG_SEMI_SPACE_MB } from '../../launcher/young-generation.js';

const FLAG = `--min-semi-space-size=${YOUNG_SEMI_SPACE_MB}`;

describe('the young generation of node ranks', () => {
  it('is set right after the node binary, however node is named', () => {
    expect(withYoungGeneration(['node', 'app.js', '--x'], {})).toEqual(['node', FLAG, 'app.js', '--x']);
    expect(withYoungGeneration(['/usr/bin/nodejs', '--inspect', 'app.js'], {})).toEqual(['/usr/bin/nodejs', FLAG, '--inspect', 'app.js']);
    expect(withYoungGeneration(['/opt/n/bin/n20', '-e', '1'], {}, '/opt/n/bin/n20')).toEqual(['/opt/n/bin/n20', FLAG, '-e', '1']);
  });
  it('leaves other programs, and a user\'s own semi-space choice, alone', () => {
    for (const c of [['python3', 'app.py'], ['npx', 'tsx', 'app.ts'], ['sh', '-c', 'node app.js'], []]) expect(withYoungGeneration(c, {})).toEqual(c);
    for (const flag of ['--max-semi-space-size=8', '--min_semi_space_size=2', '--semi-space-growth-factor=4']) {
      expect(withYoungGeneration(['node', flag, 'app.js'], {})).toEqual(['node', flag, 'app.js']);
      expect(withYoungGeneration(['node', 'app.js'], { NODE_OPTIONS: `--enable-source-maps ${flag}` })).toEqual(['node', 'app.js']);
    }
  });
});
