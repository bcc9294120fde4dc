// Mutual challenge-response with the job secret: each side proves it knows the secret by an
// HMAC over both nonces and both ranks, so the secret never crosses the wire and a recorded
// exchange cannot be replayed. Until the server has checked the client's proof, nothing that
// arrives on the connection is parsed as a frame.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { RefusalReason } from './refusals.js';

export const MAGIC = 0x31435649; // 'IVC1' little endian
const NONCE = 32;
const MAC = 32;
export const HELLO_BYTES = 4 + 4 + 4 + NONCE;
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** A handshake that failed, and which kind of failure it was (for the refusal counts). */
export class HandshakeRefused extends Error {
  constructor(
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
  }
}

function mac(secret: Buffer, role: string, from: number, to: number, a: Buffer, b: Buffer): Buffer {
  const h = createHmac('sha256', secret);
  const ranks = Buffer.alloc(8);
  ranks.writeUInt32LE(from, 0);
  ranks.writeUInt32LE(to, 4);
  return h.update(role).update(ranks).update(a).update(b).digest();
}

/** Collects exactly `n` bytes, then hands over whatever came after them. */
function readBytes(sock: Socket, n: number): Promise<{ bytes: Buffer; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let have: Buffer[] = [];
    let len = 0;
    const timer = setTimeout(() => done(new HandshakeRefused('idle', `handshake timed out after ${HANDSHAKE_TIMEOUT_MS} ms`)), HANDSHAKE_TIMEOUT_MS);
    timer.unref();
    const onData = (c: Buffer) => {
      have.push(c);
      len += c.length;
      if (len >= n) {
        const all = Buffer.concat(have);
        done(undefined, all.subarray(0, n), all.subarray(n));
      }
    };
    const onEnd = () => done(new HandshakeRefused('closed early', 'connection closed during handshake'));
    const onError = (e: Error) => done(new HandshakeRefused('socket error', e.message));
    function done(err?: Error, bytes?: Buffer, rest?: Buffer) {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
      sock.pause();
      have = [];
      if (err) reject(err);
      else resolve({ bytes: bytes!, rest: rest! });
    }
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('error', onError);
    sock.resume();
  });
}

/** Client side. Resolves once the server proved itself; the client's proof is then on its way. */
export async function clientHandshake(sock: Socket, secret: Buffer, from: number, to: number): Promise<void> {
  const nonceC = randomBytes(NONCE);
  const hello = Buffer.alloc(HELLO_BYTES);
  hello.writeUInt32LE(MAGIC, 0);
  hello.writeUInt32LE(from, 4);
  hello.writeUInt32LE(to, 8);
  nonceC.copy(hello, 12);
  sock.write(hello);
  const { bytes } = await readBytes(sock, NONCE + MAC);
  const nonceS = bytes.subarray(0, NONCE);
  const expect = mac(secret, 'server', from, to, nonceC, nonceS);
  if (!timingSafeEqual(expect, bytes.subarray(NONCE))) {
    throw new Error(`rank ${to} failed to prove it belongs to this job`);
  }
  sock.write(mac(secret, 'client', from, to, nonceS, nonceC));
}

/**
 * Server side. Resolves with the client's rank and the bytes that followed its proof (the first
 * frames), or rejects: the caller then destroys the socket having delivered nothing.
 */
export async function serverHandshake(
  sock: Socket,
  secret: Buffer,
  self: number,
  size: number,
): Promise<{ from: number; rest: Buffer }> {
  const { bytes: hello } = await readBytes(sock, HELLO_BYTES);
  if (hello.readUInt32LE(0) !== MAGIC) throw new HandshakeRefused('not ivcom', 'not an ivcom connection (bad magic)');
  const from = hello.readUInt32LE(4);
  const to = hello.readUInt32LE(8);
  if (to !== self) throw new HandshakeRefused('wrong rank', `connection meant for rank ${to} reached rank ${self}`);
  if (from >= size || from === self) throw new HandshakeRefused('impossible rank', `connection claims impossible rank ${from}`);
  const nonceC = hello.subarray(12, 12 + NONCE);
  const nonceS = randomBytes(NONCE);
  sock.write(Buffer.concat([nonceS, mac(secret, 'server', from, to, nonceC, nonceS)]));
  const { bytes: proof, rest } = await readBytes(sock, MAC);
  if (!timingSafeEqual(mac(secret, 'client', from, to, nonceS, nonceC), proof)) {
    throw new HandshakeRefused('bad proof', `connection claiming rank ${from} failed to prove it knows the job secret`);
  }
  return { from, rest };
}
