import { describe, expect, it } from 'vitest';
import { closeFd, cpuYield, doorbellDrain, doorbellRing, eventfdCreate, FdWatcher } from '../../kmod/index.js';
import { expectNativeError, fixture, runChild, sleep, waitForOutput } from './helpers.js';

describe('doorbells', () => {
  it('cpuYield returns at once when nothing else wants the CPU', () => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 1000; i++) cpuYield();
    expect(cpuYield()).toBeUndefined();
    expect(process.hrtime.bigint() - t0).toBeGreaterThan(0n);
  });

  it('counts rings and drains to zero; saturation is not an error', () => {
    const fd = eventfdCreate();
    try {
      expect(doorbellDrain(fd)).toBe(0);
      doorbellRing(fd);
      doorbellRing(fd);
      doorbellRing(fd);
      expect(doorbellDrain(fd)).toBe(3);
      expect(doorbellDrain(fd)).toBe(0);
      expectNativeError(() => doorbellRing(-1), 'EBADF', 'write');
      expectNativeError(() => doorbellDrain(-1), 'EBADF', 'read');
    } finally {
      closeFd(fd);
    }
  });

  it('FdWatcher runs its callback as an I/O callback: microtasks drain right after it', async () => {
    // Two doorbells ready in the same loop iteration: with MakeCallback semantics each callback's
    // promise reactions run before the next callback; with a plain call they would pile up.
    const order: string[] = [];
    const other = eventfdCreate();
    const otherWatcher = new FdWatcher(other, () => {
      doorbellDrain(other);
      order.push('B');
      void Promise.resolve().then(() => order.push('microB'));
      otherWatcher.close();
    });
    const fd = eventfdCreate();
    let calls = 0;
    const watcher = new FdWatcher(fd, () => {
      calls++;
      doorbellDrain(fd);
      order.push('A');
      void Promise.resolve().then(() => order.push('microA'));
      setImmediate(() => order.push('immediate'));
    });
    watcher.start();
    otherWatcher.start();
    doorbellRing(fd);
    doorbellRing(other);
    await sleep(50);
    const pairs = [order.slice(0, 2), order.slice(2, 4)].sort((x, y) => x[0]!.localeCompare(y[0]!));
    expect(pairs).toEqual([['A', 'microA'], ['B', 'microB']]);
    expect(order[4]).toBe('immediate');
    expect(calls).toBe(1);
    closeFd(other);

    // stop() silences it, start() resumes (a pending ring is delivered), close() is final.
    watcher.stop();
    doorbellRing(fd);
    await sleep(30);
    expect(calls).toBe(1);
    watcher.start();
    await sleep(30);
    expect(calls).toBe(2);
    watcher.close();
    doorbellRing(fd);
    watcher.start(); // no-ops after close
    watcher.ref();
    watcher.unref();
    watcher.stop();
    watcher.close();
    await sleep(30);
    expect(calls).toBe(2);
    closeFd(fd);
  });

  it('resolves a promise from the watcher callback', async () => {
    const fd = eventfdCreate();
    const p = new Promise<number>((resolve) => {
      const w = new FdWatcher(fd, () => {
        w.close();
        resolve(doorbellDrain(fd));
      });
      w.start();
    });
    setTimeout(() => doorbellRing(fd), 5);
    expect(await p).toBe(1);
    closeFd(fd);
  });

  it('rejects what it cannot watch', () => {
    expectNativeError(() => new FdWatcher(-1, () => {}), 'EBADF', 'uv_poll_init');
    expectNativeError(() => new FdWatcher(987654, () => {}), 'EBADF', 'uv_poll_init');
    expect(() => new FdWatcher(0, 'x' as unknown as () => void)).toThrow(TypeError);
  });

  it('an unref()ed watcher does not keep a process alive', async () => {
    const bell = eventfdCreate();
    const { done } = runChild([fixture('child-watch.mjs'), 'unref'], ['ignore', 'pipe', 'pipe', bell]);
    const result = await done;
    closeFd(bell);
    expect(result).toMatchObject({ code: 0, stdout: 'ready\n', stderr: '' });
  }, 20_000);

  it('a ref()ed watcher keeps a process alive until it fires and is closed', async () => {
    const bell = eventfdCreate();
    const { child, done } = runChild([fixture('child-watch.mjs'), 'ref'], ['ignore', 'pipe', 'pipe', bell]);
    await waitForOutput(child, (out) => out.includes('ready'));
    await sleep(400);
    expect(child.exitCode).toBeNull();
    doorbellRing(bell);
    const result = await done;
    closeFd(bell);
    expect(result).toMatchObject({ code: 0, stdout: 'ready\nrang 1\n', stderr: '' });
  }, 20_000);

  it('an exception thrown by the callback is an uncaught exception', async () => {
    const bell = eventfdCreate();
    doorbellRing(bell);
    const { done } = runChild([fixture('child-watch.mjs'), 'throw'], ['ignore', 'pipe', 'pipe', bell]);
    const result = await done;
    closeFd(bell);
    expect(result).toMatchObject({ code: 0, stdout: 'ready\ncaught boom\n', stderr: '' });
  }, 20_000);

  it('idle watchers are garbage-collected, started ones are kept alive until closed', async () => {
    const { done } = runChild([fixture('child-gc.mjs')], ['ignore', 'pipe', 'pipe'], ['--expose-gc']);
    const result = await done;
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      before: { idle: true, stopped: true, active: false },
      after: { active: true, fired: 1 },
    });
  }, 20_000);

  it('worker threads that end with live watchers and mapped segments tear down cleanly', async () => {
    const { done } = runChild([fixture('child-worker.mjs')], ['ignore', 'pipe', 'pipe']);
    const result = await done;
    expect(result.stderr).toBe('');
    expect(result.signal).toBeNull();
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual([
      { code: 1, value: 7 }, // terminate()d
      { code: 0, value: 7 }, // process.exit(0) inside the worker
    ]);
  }, 20_000);
});
