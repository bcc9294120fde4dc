#!/usr/bin/env node
// ivrun: an mpirun for Node.js. Parses the command line, builds the plan, runs the job, and
// exits with 0 only when every rank did.

import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { randomBytes } from 'node:crypto';
import { DEFAULT_RING_BYTES, isValidRingBytes, MAX_RING_BYTES, MIN_RING_BYTES } from '../transport/ivcom/layout.js';
import { Job, type GrantBroker } from './job.js';
import { makePlan } from './plan.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

function usageError(msg: string): never {
  process.stderr.write(`ivrun: ${msg}\nRun 'ivrun --help' for the options.\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('ivrun')
    .usage('Usage: $0 [options] <command> [args...]\n\nRuns <command> as the ranks of one ivcom job.')
    .parserConfiguration({ 'halt-at-non-option': true, 'populate--': false, 'duplicate-arguments-array': true })
    .option('n', { alias: 'np', type: 'number', default: 1, describe: 'Number of ranks to start' })
    .option('vms', {
      type: 'number',
      describe: 'Number of co-resident domains ("VMs") on this host; ranks are split into blocks of consecutive ranks (default: one domain per rank)',
    })
    .option('isolation', {
      choices: ['none', 'netns'] as const,
      default: 'none' as const,
      describe: 'How domains are isolated: plain process groups, or a network namespace each',
    })
    .option('transport', {
      choices: ['auto', 'tcp', 'ivcom'] as const,
      default: 'auto' as const,
      describe: 'auto: shared memory between ranks of one host, TCP otherwise; tcp: force the fallback; ivcom: require shared memory (an error where it cannot be used)',
    })
    .option('x', { type: 'string', describe: 'Export an environment variable to the ranks: NAME (its current value) or NAME=VALUE; repeatable' })
    .option('tag-output', { type: 'boolean', default: false, describe: 'Prefix every output line with [rank]' })
    .option('timeout', { type: 'number', describe: 'End the job (exit status 124) if it runs longer than this many seconds' })
    .option('ring-bytes', { type: 'number', default: DEFAULT_RING_BYTES, describe: 'Bytes of each shared-memory ring (one per direction of a pair)' })
    .option('hostfile', { type: 'string', describe: 'File naming other hosts to run ranks on (over ssh)' })
    .example('$0 -n 4 node app.js', '4 ranks on this host, one domain each')
    .example('$0 -n 8 --vms 2 node app.js', '2 co-resident domains of 4 ranks')
    .example('$0 -n 4 --transport tcp node app.js', 'force the TCP fallback')
    .epilogue('Exit status: 0 when every rank exits 0; otherwise the failing rank\'s code (128+N when killed by signal N), 124 on --timeout, 2 on bad options.')
    .strictOptions()
    .version(version())
    .help()
    .alias('h', 'help')
    .fail((msg, err) => usageError(err?.message ?? msg))
    .parse();

  const command = argv._.map(String);
  if (command.length === 0) usageError('no command given; e.g. ivrun -n 4 node app.js');
  const n = argv.n;
  if (!Number.isInteger(n) || n < 1) usageError(`-n must be a positive integer, got ${n}`);
  const vms = argv.vms ?? n;
  if (!Number.isInteger(vms) || vms < 1 || vms > n) usageError(`--vms must be an integer from 1 to ${n} (the number of ranks), got ${argv.vms}`);
  if (argv.timeout !== undefined && !(argv.timeout > 0)) usageError(`--timeout must be a positive number of seconds, got ${argv.timeout}`);
  const ringBytes = argv['ring-bytes'];
  if (!isValidRingBytes(ringBytes)) {
    usageError(`--ring-bytes must be a power of two from ${MIN_RING_BYTES} to ${MAX_RING_BYTES}, got ${ringBytes}`);
  }
  if (argv.hostfile !== undefined) usageError('--hostfile (ranks on other hosts over ssh) is not supported yet; run all ranks on this host');
  if (argv.isolation === 'netns') usageError('--isolation netns is not supported yet; use --isolation none');

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  const xs = argv.x === undefined ? [] : ([] as string[]).concat(argv.x);
  for (const x of xs) {
    const eq = x.indexOf('=');
    const name = eq < 0 ? x : x.slice(0, eq);
    if (!ENV_NAME.test(name)) usageError(`-x ${x}: '${name}' is not a valid environment variable name`);
    if (eq >= 0) env[name] = x.slice(eq + 1);
    else if (process.env[name] === undefined) usageError(`-x ${name}: ${name} is not set in ivrun's environment; use -x ${name}=VALUE`);
  }

  const plan = makePlan(n, vms);
  // A caller may name the job (log correlation, tests looking for its segments); else random.
  const jobId = process.env.IVCOM_JOB_ID ?? randomBytes(6).toString('hex');
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(jobId)) usageError(`IVCOM_JOB_ID must be 1-40 letters, digits, '-' or '_', got '${jobId}'`);
  let grants: GrantBroker | undefined;
  if (argv.transport !== 'tcp') {
    try {
      const { KmodGrantBroker } = await import('./grants.js');
      grants = new KmodGrantBroker(plan, jobId, ringBytes);
    } catch (err) {
      // Without the native addon there is no shared memory to grant. That is an error only when
      // shared memory was demanded; otherwise every pair uses TCP and transportTo says so.
      if (argv.transport === 'ivcom') {
        usageError(`--transport ivcom needs the native addon, which failed to load (${(err as Error).message}); run 'npm run build' or use --transport tcp`);
      }
    }
  }
  const job = new Job({
    jobId,
    plan,
    command,
    env,
    tagOutput: argv['tag-output'],
    timeoutSec: argv.timeout,
    transport: argv.transport,
    ringBytes,
  }, grants);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => job.signal(sig));
  process.stdout.on('error', () => {});
  job.start();
  process.exitCode = await job.done;
  // process.exit() drops whatever is still queued for a slow reader of our stdout: let the
  // forwarded output reach it first.
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((r) => s.write('', () => r()))));
  process.exit();
}

void main();
