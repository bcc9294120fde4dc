// Ranks started the way people start programs: through a wrapper (npm run, npx, tsx) that
// closes the fds ivrun passed. The rank finds its agent again through the environment, proves
// which rank it is, checks the agent's proof, and runs on the real transports.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture, ivrun, signalIfAlive } from '../helpers/job.js';

const P2P = fixture('p2p.js');
const WRAP = fixture('wrap.js');

describe('ranks started through a wrapper', () => {
  it.each(['ivcom', 'tcp'])('a Node wrapper between ivrun and the rank: the job runs over %s, large messages included', async (transport) => {
    const r = await ivrun(['-n', '3', '--transport', transport, '--timeout', '40', 'node', WRAP, 'node', P2P, 'rndvmix']);
    expect(r.stdout).toContain(`OK rndvmix size=3 transport=${transport}`);
    expect(r.code).toBe(0);
    expect(r.leftovers).toEqual([]);
  });

  it('npm run -s: the script starts the ranks', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ivcom-npm-'));
    try {
      writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'job', private: true, scripts: { job: `node ${P2P} order` } }));
      const r = await ivrun(['-n', '2', '--wdir', dir, '--timeout', '40', 'npm', 'run', '-s', 'job']);
      expect(r.stdout).toContain('OK order size=2 transport=ivcom');
      expect(r.code).toBe(0);
      expect(r.leftovers).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('SIGKILL of ivrun ends wrapped ranks too (each is tied to its wrapper, the wrapper to ivrun)', async () => {
    let seen = '';
    let killed = false;
    const r = await ivrun(['-n', '2', 'node', WRAP, 'node', P2P, 'joined'], {
      onStdout: (text, pid) => {
        seen += text;
        if (killed || !seen.includes('joined 0') || !seen.includes('joined 1')) return;
        killed = true;
        signalIfAlive(pid, 'SIGKILL');
      },
    });
    expect(r.signal).toBe('SIGKILL');
    expect(r.leftovers).toEqual([]);
  });

  it("the agent's door admits no stranger: a wrong token, a spent one, an unknown rank, junk", async () => {
    const r = await ivrun(['-n', '2', 'node', fixture('door.js')]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2);
    for (const l of lines) {
      expect(l.wrong).toEqual({ reply: { error: `wrong token for rank ${l.rank}` }, fds: 0 });
      expect(l.spent).toEqual({ reply: { error: `rank ${l.rank} has already joined the job` }, fds: 0 });
      expect(l.nobody.reply.error).toMatch(/no rank 999 runs on this host/);
      expect(l.junk.fds).toBe(0);
      expect(l.junk.reply.proof).toBeUndefined();
    }
  });

  it('init() in a worker thread is refused with ERR_IVCOM_STATE, naming the fix', async () => {
    const code = `const { Worker } = require('node:worker_threads');
      new Worker("import('${path.resolve('dist/runtime/index.js')}').then((m) => m.init()).catch((e) => { console.log('refused', e.code, e.message); })", { eval: true });`;
    const r = await ivrun(['-n', '1', 'node', '-e', code]);
    expect(r.stdout).toMatch(/refused ERR_IVCOM_STATE rank 0: init\(\) was called in a worker thread; .* call init\(\) in the main thread/);
  });
});
