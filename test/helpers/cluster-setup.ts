// Vitest global setup: build the test cluster (cluster.sh up) once for the whole run, provide
// its description as inject('cluster'), and tear it down afterwards. A cluster that cannot be
// built (not root, a package missing) does not stop the run: tests that need it fail with the
// reason, the others run as usual.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import type { ClusterInfo, ClusterUp } from './cluster-info.js';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cluster.sh');

interface Run {
  code: number | string | null;
  stderr: string;
}

// The script bounds its own waits (about 50 s at worst); the timeout only guards against a hang.
function cluster(cmd: 'up' | 'down', dir: string, timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile('bash', [SCRIPT, cmd, dir], { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, _stdout, stderr) => {
      if (!err) return resolve({ code: 0, stderr });
      // An exit status, a signal, or why bash could not be started at all (ENOENT...).
      const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string };
      const code = e.killed ? `killed after ${timeoutMs} ms` : (e.code ?? e.signal ?? null);
      resolve({ code, stderr: stderr || e.message });
    });
  });
}

function tail(text: string, lines = 25): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ivt-cluster-'));
  const t0 = Date.now();
  const up = await cluster('up', dir, 120_000);
  const startupMs = Date.now() - t0;

  let info: ClusterInfo;
  if (up.code === 0) {
    try {
      const described = JSON.parse(readFileSync(path.join(dir, 'info.json'), 'utf8')) as Omit<ClusterUp, 'ok' | 'startupMs'>;
      info = { ok: true, ...described, startupMs };
    } catch (err) {
      info = { ok: false, reason: `cluster.sh up succeeded but ${dir}/info.json is unreadable: ${String(err)}` };
    }
  } else {
    info = { ok: false, reason: `cluster.sh up ${dir} failed (${up.code}):\n${tail(up.stderr)}` };
    // The script tears down what it built when it fails, but not when it is killed by the
    // timeout. DIR stays, for the logs.
    await cluster('down', dir, 60_000);
  }
  project.provide('cluster', info);

  return async () => {
    if (up.code !== 0) return;
    const down = await cluster('down', dir, 60_000);
    // A cluster that would not go away is a leak this run caused: fail loudly, keep the logs.
    if (down.code !== 0) throw new Error(`cluster.sh down ${dir} failed (${down.code}):\n${tail(down.stderr)}`);
    if (!process.env.IVT_KEEP_CLUSTER_DIR) rmSync(dir, { recursive: true, force: true });
  };
}
