import { describe, expect, it } from 'vitest';
import os from 'node:os';
import { hostCpus, spinOverride } from '../../runtime/progress.js';

describe('IVCOM_SPIN_US', () => {
  it('unset or empty leaves the adaptive spin; a number of µs fixes it', () => {
    expect(spinOverride(undefined, 0)).toBeUndefined();
    expect(spinOverride('', 0)).toBeUndefined(); // was read as 0: no spin at all
    expect(spinOverride(' ', 0)).toBeUndefined();
    expect(spinOverride('0', 0)).toBe(0);
    expect(spinOverride('250', 0)).toBe(250);
    expect(spinOverride('2.5', 0)).toBe(2.5);
  });

  it('anything else is refused, naming the rank, the variable and the value', () => {
    for (const bad of ['abc', '-1', 'Infinity', '1ms']) {
      expect(() => spinOverride(bad, 3)).toThrow(
        expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', message: expect.stringMatching(new RegExp(`rank 3: IVCOM_SPIN_US .*'${bad}'`)) }),
      );
    }
  });
});

describe('IVCOM_HOST_CPUS (set by ivrun)', () => {
  it('counts the host\'s CPUs as ivrun does; unset, this process\'s', () => {
    expect(hostCpus('4', 0)).toBe(4);
    expect(hostCpus(undefined, 0)).toBe(os.availableParallelism());
  });

  it('refuses what is not a count, naming the rank, the variable and the value', () => {
    for (const bad of ['0', '-2', '1.5', 'two', '']) {
      expect(() => hostCpus(bad, 5)).toThrow(
        expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', message: expect.stringMatching(new RegExp(`rank 5: IVCOM_HOST_CPUS .*'${bad}'`)) }),
      );
    }
  });
});
