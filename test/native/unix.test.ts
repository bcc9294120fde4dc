import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { closeFd, recvFds, sendFds, streamPair, unixAccept, unixConnect, unixListen } from '../../kmod/index.js';
import { openFdCount } from './helpers.js';

describe("the agent's socket (abstract AF_UNIX, seqpacket)", () => {
  it('connects, carries one message with fds each way, and leaves nothing in the file system', () => {
    const start = openFdCount();
    const name = `ivcom-test-${randomBytes(6).toString('hex')}`;
    const l = unixListen(name);
    expect(unixAccept(l)).toBeNull(); // nobody waiting: null, not a throw
    const c = unixConnect(name);
    const s = unixAccept(l)!;
    expect(s).toBeGreaterThanOrEqual(0);
    sendFds(c, [], Buffer.from('ask'));
    expect(recvFds(s)!.data.toString()).toBe('ask');
    const [x, y] = streamPair();
    sendFds(s, [y], Buffer.from('take'));
    const m = recvFds(c)!;
    expect(m.fds).toHaveLength(1);
    expect(readFileSync('/proc/net/unix', 'utf8')).toContain(`@${name}`);
    for (const fd of [l, c, s, x, y, ...m.fds]) closeFd(fd);
    expect(readFileSync('/proc/net/unix', 'utf8')).not.toContain(`@${name}`);
    expect(openFdCount()).toBe(start);
  });

  it('fails with errno codes: nobody listening, a name too long, a name taken', () => {
    const name = `ivcom-test-${randomBytes(6).toString('hex')}`;
    expect(() => unixConnect(name)).toThrow(expect.objectContaining({ code: 'ERR_IVCOM_NATIVE', syscall: 'connect' }));
    expect(() => unixListen('x'.repeat(200))).toThrow(expect.objectContaining({ code: 'ERR_IVCOM_NATIVE' }));
    const l = unixListen(name);
    expect(() => unixListen(name)).toThrow(expect.objectContaining({ code: 'ERR_IVCOM_NATIVE', syscall: 'bind' }));
    closeFd(l);
  });
});
