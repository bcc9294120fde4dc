// `npm run bench -- --svg DIR` draws its charts with vega in Node; this renders one of them in a
// real headless Chromium (Debian's, installed by .ci/run) and checks the screenshot shows the
// chart: not blank, both series' colours present. The figures are made up: no benchmark runs here.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { drawCharts } from '../../apps/bench/charts.js';
import { results, type Figure } from '../../apps/bench/results.js';

const CHROMIUM = '/usr/bin/chromium';

function figures(): Figure[] {
  const out: Figure[] = [];
  for (let b = 1; b <= 1 << 22; b *= 4) {
    out.push({ series: 'ivcom', op: 'latency', ranks: 2, bytes: b, unit: 'us', rounds: [1 + b / 4096], median: 1 + b / 4096 });
    out.push({ series: 'tcp', op: 'latency', ranks: 2, bytes: b, unit: 'us', rounds: [30 + b / 1024], median: 30 + b / 1024 });
  }
  return out;
}

describe('bench charts', () => {
  it('renders latency against size as SVG that a browser draws: axes, title and both lines', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ivcom-charts-'));
    try {
      const files = await drawCharts(results('p2p', 3, figures()), dir);
      expect(files.map((f) => path.basename(f))).toEqual(['p2p-2ranks-latency.svg']);
      const svg = readFileSync(files[0]!, 'utf8');
      expect(svg).toMatch(/^<svg /);
      expect(svg).toContain('message size (bytes)');
      const png = path.join(dir, 'shot.png');
      const r = spawnSync(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', `--screenshot=${png}`, '--window-size=800,500', `file://${files[0]}`], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status, `${CHROMIUM} (apt-get install chromium): ${r.error?.message ?? r.stderr}`).toBe(0);
      const img = PNG.sync.read(readFileSync(png));
      let inked = 0;
      let blue = 0;
      let orange = 0;
      for (let i = 0; i < img.data.length; i += 4) {
        const [red, green, b] = [img.data[i]!, img.data[i + 1]!, img.data[i + 2]!];
        if (red < 235 || green < 235 || b < 235) inked++;
        // vega's default category colours: #4c78a8 (blue) and #f58518 (orange).
        if (Math.abs(red - 0x4c) < 30 && Math.abs(green - 0x78) < 30 && Math.abs(b - 0xa8) < 30) blue++;
        if (Math.abs(red - 0xf5) < 30 && Math.abs(green - 0x85) < 30 && Math.abs(b - 0x18) < 30) orange++;
      }
      const pixels = img.width * img.height;
      expect(inked / pixels).toBeGreaterThan(0.01);
      expect(blue).toBeGreaterThan(100);
      expect(orange).toBeGreaterThan(100);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
