import { describe, expect, it } from 'vitest';
import type { CollPort } from '../../runtime/collectives/port.js';
import { announce, describeCall, KINDS, nextTagBase, sameCall, slotOf, TAG_SLOTS, TAG_STRIDE } from '../../runtime/collectives/signature.js';

const port = () => ({}) as CollPort;

describe('collective tags: slot, kind and root', () => {
  it('gives every call its slot and carries what was announced', () => {
    const p = port();
    const sig = { kind: 'bcast' as const, root: 3, base: -1 };
    announce(p, sig);
    const a = nextTagBase(p);
    expect(sig.base).toBe(a);
    expect(slotOf(a)).toBe(0);
    expect(describeCall(a + 5)).toBe('bcast (root 3)');
    announce(p, { kind: 'allreduce', root: 0, base: -1 });
    const b = nextTagBase(p);
    expect(slotOf(b)).toBe(1);
    expect(describeCall(b)).toBe('allreduce');
    // Unannounced: kind 0, and the announcement is used once only.
    expect(describeCall(nextTagBase(p))).toBe('collective');
  });

  it('tells calls apart by kind and root, not by phase', () => {
    const tag = (kind: (typeof KINDS)[number], root: number) => {
      const p = port();
      announce(p, { kind, root, base: -1 });
      return nextTagBase(p);
    };
    expect(sameCall(tag('bcast', 1), tag('bcast', 1) + TAG_STRIDE - 1)).toBe(true);
    expect(sameCall(tag('bcast', 1), tag('bcast', 2))).toBe(false);
    expect(sameCall(tag('barrier', 0), tag('gather', 0))).toBe(false);
    expect(KINDS.length).toBeLessThanOrEqual(16);
  });

  it('stays a positive 32-bit tag at the largest slot, kind and root', () => {
    const p = port();
    for (let i = 0; i < TAG_SLOTS - 1; i++) nextTagBase(p);
    announce(p, { kind: KINDS[KINDS.length - 1]!, root: 511, base: -1 });
    const top = nextTagBase(p) + TAG_STRIDE - 1;
    expect(top | 0).toBe(top);
    expect(top).toBeGreaterThan(0);
    expect(slotOf(top)).toBe(TAG_SLOTS - 1);
    expect(slotOf(nextTagBase(p))).toBe(0); // wraps
  });
});
