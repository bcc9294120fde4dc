// One error hierarchy, recognised by its brand: the addon's errors are NativeErrors, and errors
// from another copy of the package are still ivcom errors of their kind.

import { describe, expect, it } from 'vitest';
import { closeFd } from '../../kmod/index.js';
import { CorruptError, IVCOM_ERROR, IvcomError, NativeError, PeerLostError, StateError } from '../../runtime/errors.js';

describe('errors', () => {
  it('the native addon throws NativeError with errno and syscall', () => {
    let err: unknown;
    try {
      closeFd(1 << 20);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NativeError);
    expect(err).toBeInstanceOf(IvcomError);
    expect(err).not.toBeInstanceOf(CorruptError);
    expect(err).toMatchObject({ code: 'ERR_IVCOM_NATIVE', errno: 9, syscall: 'close', name: 'NativeError' });
  });

  it("an error from another copy of the package is recognised by brand and code", () => {
    // What a second copy's PeerLostError looks like: its own class, the shared brand.
    const foreign = Object.assign(new Error('rank 1: peer 2 gone'), { code: 'ERR_IVCOM_PEER_LOST' });
    Object.defineProperty(foreign, IVCOM_ERROR, { value: true });
    expect(foreign).toBeInstanceOf(IvcomError);
    expect(foreign).toBeInstanceOf(PeerLostError);
    expect(foreign).not.toBeInstanceOf(StateError);
    // Without the brand, a look-alike is not ours.
    expect(Object.assign(new Error('x'), { code: 'ERR_IVCOM_PEER_LOST' })).not.toBeInstanceOf(IvcomError);
  });

  it('subclasses keep their code, name and the fields callers read', () => {
    const e = new StateError('rank 0: recv after finalize()', { rank: 0 });
    expect(e).toBeInstanceOf(StateError);
    expect(e).toBeInstanceOf(IvcomError);
    expect(e).toBeInstanceOf(Error);
    expect(e).toMatchObject({ code: 'ERR_IVCOM_STATE', name: 'StateError', rank: 0 });
  });
});
