// `--svg DIR`: charts of a suite's results (results.ts), rendered to SVG in Node by vega from
// vega-lite specs (no browser): time or bandwidth against message size on log scales, one line
// per transport or peer; for the collectives, one chart per rank count and operation.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { Figure, Results } from './results.js';

const WIDTH = 520;
const HEIGHT = 320;

function spec(title: string, figures: Figure[], unit: string): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: WIDTH,
    height: HEIGHT,
    background: 'white',
    data: { values: figures.map((f) => ({ bytes: f.bytes, value: f.median, series: f.series })) },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'bytes', type: 'quantitative', title: 'message size (bytes)', scale: { type: 'log', base: 2 } },
      y: { field: 'value', type: 'quantitative', title: unit, scale: { type: 'log' } },
      color: { field: 'series', type: 'nominal', title: null },
    },
  };
}

async function svgOf(s: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(s).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Draws every chart of `r` into `dir`; returns the files written. */
export async function drawCharts(r: Results, dir: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const groups = new Map<string, Figure[]>();
  for (const f of r.figures) {
    // A log scale has no place for 0; figures that are not per message size are data only.
    if (f.bytes <= 0 || !(f.median > 0) || (f.unit !== 'us' && f.unit !== 'MB/s')) continue;
    const key = `${f.ranks}|${f.op}|${f.unit}`;
    (groups.get(key) ?? groups.set(key, []).get(key)!).push(f);
  }
  const written: string[] = [];
  const when = r.date.slice(0, 10);
  for (const [key, figures] of groups) {
    const [ranks, op, unit] = key.split('|') as [string, string, string];
    const what = op === 'latency' ? 'one-way latency' : op === 'bandwidth' ? 'bandwidth' : `${op}, time per call`;
    const title = `${r.suite}: ${what}, ${ranks} ranks (${r.machine.cpus} cores, ${when}, medians of ${r.rounds} rounds)`;
    const file = path.join(dir, `${r.suite}-${ranks}ranks-${op}.svg`);
    writeFileSync(file, await svgOf(spec(title, figures, unit === 'us' ? 'µs' : unit)));
    written.push(file);
  }
  return written;
}
