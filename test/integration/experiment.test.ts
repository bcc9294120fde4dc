// `npm start`: the paper's experiment runs to the end and writes its JSON (one short round; no
// timing is asserted, only that every figure was measured and the ratios follow from them).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/job.js';

describe('npm start (the IVCOM experiment)', () => {
  it('runs ivcom and TCP between two VMs and writes {rtt, throughput, transitions, rows}', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ivcom-exp-'));
    try {
      const file = path.join(dir, 'exp.json');
      const r = spawnSync(process.execPath, [path.join(ROOT, 'dist/apps/experiment/run.js'), '--rounds', '1', '--quick', '--json', file], {
        encoding: 'utf8',
        timeout: 120_000,
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/two VMs \(network namespaces on a bridge\)/);
      expect(r.stderr).toMatch(/round 1\/1: ivcom/);
      const j = JSON.parse(readFileSync(file, 'utf8'));
      for (const [k, a, b, ratio] of [
        ['rtt', 'ivcom_us', 'tcp_us', 'reduction'],
        ['throughput', 'ivcom_gbps', 'tcp_gbps', 'ratio'],
        ['transitions', 'ivcom_per_msg', 'tcp_per_msg', 'reduction'],
      ] as const) {
        expect(j[k][a]).toBeGreaterThanOrEqual(0);
        expect(j[k][b]).toBeGreaterThan(0);
        const want = ratio === 'ratio' ? j[k][a] / j[k][b] : 1 - j[k][a] / j[k][b];
        expect(j[k][ratio]).toBeCloseTo(want, 9);
      }
      expect(j.rows).toHaveLength(7);
      expect(j.paper).toEqual({ rttReduction: 0.7, throughputRatio: 3, transitionsReduction: 0.9 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);

  it('without the privilege for namespaces says so and measures two processes over loopback, labelled', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ivcom-exp-'));
    try {
      const file = path.join(dir, 'exp.json');
      // Root without CAP_SYS_ADMIN and CAP_NET_ADMIN (dropped from the bounding set, so gone
      // after exec) may not make network namespaces.
      const r = spawnSync(
        'setpriv',
        ['--bounding-set=-sys_admin,-net_admin', process.execPath, path.join(ROOT, 'dist/apps/experiment/run.js'), '--rounds', '1', '--quick', '--json', file],
        { encoding: 'utf8', timeout: 120_000 },
      );
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/cannot make VMs here \(.*\); running the same between two processes over loopback TCP instead/);
      expect(r.stdout).toMatch(/two processes on this host \(no VMs: no privilege for namespaces\)/);
      expect(JSON.parse(readFileSync(file, 'utf8')).isolation).toBe('none');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
