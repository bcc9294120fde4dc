#!/usr/bin/env node
// ivrun: an mpirun for Node.js. Parses the command line, builds the plan, runs the job, and
// exits with 0 only when every rank did.

import { readFileSync, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { randomBytes } from 'node:crypto';
import { DEFAULT_RING_BYTES, isValidRingBytes, MAX_RING_BYTES, MIN_RING_BYTES } from '../transport/ivcom/layout.js';
import { serveAgent } from './agent-serve.js';
import { isLocalHost, parseHostfile, parseHostList, type HostSlots } from './hosts/hostfile.js';
import { slurmAllocation, srunLauncher } from './hosts/slurm.js';
import { parseSshArgs, SSH_ARGS_ENV, sshLauncher } from './hosts/ssh.js';
import { Job } from './job.js';
import { GROUP_MAX_RANKS } from '../transport/ivcom/group-layout.js';
import { LOCAL_ONLY, makePlan, type Plan, type PlanHost } from './plan.js';
import { allowedCpus, cpuPerRank } from './binding.js';
import { OutputFiles } from './output-files.js';
import { ringMemoryWarning } from './ring-memory.js';
import { rewriteHabits } from './habits.js';
import { BUILD_HINT } from '../kmod/build-hint.js';
import { parseTimeout, TIMEOUT_ENV } from './timeout.js';
import { splitNodeCommand, whyNotRunnable } from './program.js';

/** The shell's status for a command it cannot find or run; ivrun's ranks exited with it before. */
const COMMAND_NOT_FOUND = 127;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** How ivrun runs itself on another host: the same node and the same install path, as mpirun's prefix. */
const AGENT_ARGV = [process.execPath, fileURLToPath(import.meta.url), '--agent'];

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

/** yargs' own wording, made to name the option as typed and what to give instead. */
function parserMessage(msg: string): string {
  const unknown = /^Unknown arguments?: (.*)$/.exec(msg);
  if (unknown !== null) {
    const names = unknown[1]!.split(', ').map((a) => (a.length === 1 ? `-${a}` : `--${a}`));
    return `unknown option ${names.join(', ')}; options of your program go after its name (ivrun -n 2 node app.js --its-option)`;
  }
  const choice = /Argument: (\S+), Given: "(.*)", Choices: (.*)/.exec(msg);
  if (choice !== null) {
    const flag = choice[1]!.length === 1 ? `-${choice[1]}` : `--${choice[1]}`;
    return `${flag} ${JSON.stringify(choice[2])} is not one of ${choice[3]!.replaceAll('"', '')}; e.g. ${flag} ${choice[3]!.split(',')[0]!.replaceAll('"', '').trim()}`;
  }
  const missing = /^Not enough arguments following: (\S+)$/.exec(msg);
  if (missing !== null) return `${missing[1]!.length === 1 ? '-' : '--'}${missing[1]} needs a value`;
  return msg;
}

/** The environment variable --host-slots falls back to. */
const HOST_SLOTS_ENV = 'IVCOM_HOST_SLOTS';
const HOST_SLOTS_MODES = ['on', 'off'];

/**
 * Whether the job's small world collectives meet in the host group (runtime/host-slots.ts):
 * decided here, once, so that every rank takes the same way. Only a job that runs on one host
 * can (the group is that host's memory), with at most GROUP_MAX_RANKS ranks (one grant carries
 * every rank's doorbell).
 */
function hostSlotsFor(given: string | undefined, plan: Plan): boolean {
  const from = given !== undefined ? '--host-slots' : HOST_SLOTS_ENV;
  const mode = (given ?? process.env[HOST_SLOTS_ENV] ?? 'on').trim().toLowerCase() || 'on';
  if (!HOST_SLOTS_MODES.includes(mode)) usageError(`${from} must be one of ${HOST_SLOTS_MODES.join(', ')}, got '${given ?? process.env[HOST_SLOTS_ENV]}'`);
  return mode === 'on' && plan.hosts.length === 1 && plan.size <= GROUP_MAX_RANKS;
}

function usageError(msg: string): never {
  process.stderr.write(`ivrun: ${msg}\nRun 'ivrun --help' for the options.\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  // Started by a head ivrun on this host (through ssh or srun): be this host's agent.
  if (process.argv[2] === '--agent' && process.argv.length === 3) return serveAgent();
  let words: string[];
  try {
    words = rewriteHabits(hideBin(process.argv));
  } catch (err) {
    usageError((err as Error).message);
  }
  const argv = await yargs(words)
    .scriptName('ivrun')
    .usage('Usage: $0 [options] <command> [args...]\n\nRuns <command> as the ranks of one ivcom job.')
    .parserConfiguration({ 'halt-at-non-option': true, 'populate--': false, 'duplicate-arguments-array': true })
    .option('n', { alias: 'np', type: 'string', describe: 'Number of ranks to start (default: 1; the slots of --hostfile/-H; the tasks of a Slurm allocation)' })
    .option('vms', {
      type: 'string',
      describe: 'Number of co-resident domains ("VMs") on each host; each host\'s ranks are split into blocks of consecutive ranks (default: one domain per rank)',
    })
    .option('isolation', {
      choices: ['none', 'netns'] as const,
      default: 'none' as const,
      describe: 'How domains are isolated: none (plain process groups) or netns (each VM its own network and UTS namespace on a per-job bridge; needs root)',
    })
    .option('transport', {
      choices: ['auto', 'tcp', 'ivcom'] as const,
      default: 'auto' as const,
      describe: 'auto: shared memory between ranks of one host, TCP otherwise; tcp: force the fallback; ivcom: require shared memory (an error where it cannot be used)',
    })
    .option('x', { type: 'string', describe: 'Export an environment variable to the ranks: NAME (its current value) or NAME=VALUE; repeatable. Ranks on other hosts get only these' })
    .option('N', { alias: 'npernode', type: 'string', describe: 'Ranks per host: N on each host of -H/--hostfile/the Slurm allocation (default -n: N times the hosts), or N on this machine' })
    .option('wdir', { type: 'string', describe: "Working directory of the ranks (default: ivrun's)" })
    .option('tag-output', { alias: ['prepend-rank', 'l'], type: 'boolean', default: false, describe: 'Prefix every output line with [rank]' })
    .option('output-filename', { type: 'string', describe: "Write each rank's output to DIR/1/rank.N/stdout and stderr (Open MPI's layout) instead of ivrun's own" })
    .option('ranks-as', {
      choices: ['processes', 'threads'] as const,
      default: 'processes' as const,
      describe: "processes: every rank a process of its own; threads: each domain's ranks run as worker threads of one process (one domain per host unless --vms says otherwise): cheaper switches when ranks outnumber cores, at the price of the process isolation between them (docs/decisions.md)",
    })
    .option('bind-to', { choices: ['none', 'core'] as const, default: 'none' as const, describe: 'core: each rank of a host on a CPU of its own (its affinity, set before it starts); none: the kernel places them' })
    .option('timeout', { type: 'string', describe: `End the job (exit status 124) if it runs longer than this many seconds; 0 or Infinity: no limit (default: $${TIMEOUT_ENV})` })
    .option('single-copy', {
      choices: ['on', 'off'] as const,
      default: 'on' as const,
      describe: 'on: a large message between ranks of one host is copied once, straight from the sender\'s memory into the receiver\'s (process_vm_readv, where the kernel allows it), and so are the parts of a large allreduce in the host group (--host-slots); off: always streamed through the shared ring',
    })
    .option('host-slots', {
      type: 'string',
      describe: `on: when the whole job runs on one host, the world communicator's barriers and allreduces meet in one shared segment of the host instead of rounds of messages (small ones: one round, one wait; large ones: each rank copies its parts straight from the others); off: always messages (default: $${HOST_SLOTS_ENV}, else on; docs/collectives.md)`,
    })
    .option('verify', {
      type: 'boolean',
      default: false,
      describe: 'Check every message end to end: a CRC-32C of its bytes from the sender\'s memory, checked where it lands; a mismatch (shared memory scribbled by a peer you do not trust) is ERR_IVCOM_CORRUPT. Same as IVCOM_VERIFY=1 (docs/transports.md has its cost)',
    })
    .option('ring-bytes', { type: 'string', describe: `Bytes of each shared-memory ring (one per direction of a pair; a power of two, default ${DEFAULT_RING_BYTES})` })
    .option('hostfile', { alias: ['machinefile'], type: 'string', describe: "Hosts to run ranks on: lines 'host slots=N' (Open MPI) or 'host:N' (MPICH); # comments. Others than this machine are reached over ssh" })
    .option('H', { alias: 'host', type: 'string', describe: 'Hosts as a list: host1:slots,host2:slots (a host without :slots has one)' })
    .option('oversubscribe', { type: 'boolean', default: false, describe: 'Allow more ranks than the hosts have slots (the extra ones go round the hosts)' })
    .option('allow-run-as-root', { type: 'boolean', default: false, describe: "Accepted for mpirun's sake and ignored: ivrun runs as root without it" })
    .option('ssh-args', { type: 'string', describe: `Extra options for ssh, e.g. '-p 2222 -F ./ssh_config' (default: $${SSH_ARGS_ENV})` })
    .example('$0 -n 4 node app.js', '4 ranks on this host, one domain each')
    .example('$0 -n 8 --vms 2 node app.js', '2 co-resident domains of 4 ranks')
    .example('$0 -n 8 --vms 4 --isolation netns node app.js', '4 VMs, each in its own network namespace on a bridge')
    .example('$0 -H node1:4,node2:4 node app.js', '8 ranks on two hosts over ssh: shared memory within each, TCP between')
    .example('salloc -N 2 -n 8 $0 node app.js', 'inside a Slurm allocation: hosts and -n from the allocation')
    .example('$0 -n 4 --transport tcp node app.js', 'force the TCP fallback')
    .epilogue("Exit status: 0 when every rank exits 0; otherwise the failing rank's code (128+N when killed by signal N), 124 on --timeout, 2 on bad options, 127 when the command is not found, 1 when a host or its VMs cannot be set up.")
    .strictOptions()
    .version(version())
    .help()
    .alias('h', 'help')
    .alias('V', 'version')
    .fail((msg, err) => usageError(parserMessage(err?.message ?? msg)))
    .parse();

  const command = argv._.map(String);
  if (command.length === 0) usageError('no command given; e.g. ivrun -n 4 node app.js');
  const one = <T>(v: T | T[] | undefined, flag: string): T | undefined => {
    if (Array.isArray(v)) usageError(`${flag} was given ${v.length} times; give it once`);
    return v as T | undefined;
  };
  /** A whole number as typed (so a mistake is quoted as typed, not as NaN). */
  const whole = (v: string | string[] | undefined, flag: string, example: string): number | undefined => {
    const text = one(v, flag);
    if (text === undefined) return undefined;
    if (!/^\s*\d+\s*$/.test(text)) usageError(`${flag} ${JSON.stringify(text)} is not a whole number; e.g. ${flag} ${example}`);
    return Number(text);
  };
  const ringBytes = whole(argv['ring-bytes'], '--ring-bytes', String(DEFAULT_RING_BYTES)) ?? DEFAULT_RING_BYTES;
  if (!isValidRingBytes(ringBytes)) {
    usageError(`--ring-bytes must be a power of two from ${MIN_RING_BYTES} to ${MAX_RING_BYTES}, got ${ringBytes}; e.g. --ring-bytes ${DEFAULT_RING_BYTES}`);
  }
  const argN = whole(argv.n, '-n', '4');
  const threads = argv['ranks-as'] === 'threads';
  // Threads share a domain's process: without --vms, a host's ranks are one domain.
  const vms = whole(argv.vms, '--vms', '2') ?? (threads ? 1 : undefined);
  const timeoutArg = one(argv.timeout, '--timeout');
  const timeoutFrom = timeoutArg !== undefined ? '--timeout' : TIMEOUT_ENV;
  const timeoutText = timeoutArg ?? process.env[TIMEOUT_ENV];
  let timeout: number | undefined;
  try {
    // An empty MPIEXEC_TIMEOUT is unset; an empty --timeout is a mistake.
    if (timeoutText !== undefined && (timeoutArg !== undefined || timeoutText.trim() !== '')) timeout = parseTimeout(timeoutText, timeoutFrom);
  } catch (err) {
    usageError((err as Error).message);
  }

  // Where ranks run: a hostfile, -H, a Slurm allocation, or this machine alone.
  let hosts: HostSlots[] | undefined;
  let launcher: (h: PlanHost) => string[] | undefined = () => undefined;
  let defaultN = 1;
  const hostfile = one(argv.hostfile, '--hostfile');
  const hostList = one(argv.H, '-H');
  const sshArgsText = one(argv['ssh-args'], '--ssh-args') ?? process.env[SSH_ARGS_ENV];
  try {
    if (hostfile !== undefined && hostList !== undefined) usageError('give either --hostfile or -H, not both');
    if (hostfile !== undefined || hostList !== undefined) {
      if (hostfile !== undefined) {
        let text: string;
        try {
          text = readFileSync(hostfile, 'utf8');
        } catch (err) {
          usageError(`--hostfile ${hostfile}: ${(err as Error).message}; give a readable file of lines 'host slots=N', or -H host:N`);
        }
        hosts = parseHostfile(text, hostfile);
      } else hosts = parseHostList(hostList!);
      const sshArgs = parseSshArgs(sshArgsText);
      launcher = (h) => (isLocalHost(h.name) ? undefined : sshLauncher(h.name, sshArgs, AGENT_ARGV));
      defaultN = hosts.reduce((s, h) => s + (h.slots ?? 0), 0);
    } else {
      const alloc = slurmAllocation();
      if (alloc !== undefined) {
        hosts = alloc.hosts;
        // Every node of the allocation is reached through its own srun step, this one included.
        launcher = (h) => srunLauncher(h.name, AGENT_ARGV);
        defaultN = alloc.tasks;
      }
    }
  } catch (err) {
    usageError((err as Error).message);
  }
  const perHost = whole(argv.N, '-N', '2');
  if (perHost !== undefined) {
    if (!Number.isInteger(perHost) || perHost < 1) usageError(`-N (ranks per host) must be a positive integer, got ${perHost}; e.g. -N 2`);
    // Every host gets N slots (this machine alone when no hosts were given).
    hosts = (hosts ?? LOCAL_ONLY).map((h) => ({ ...h, slots: perHost }));
    defaultN = perHost * hosts.length;
    if (argN !== undefined && argN > defaultN && !argv.oversubscribe) {
      usageError(`-n ${argN} is more than -N ${perHost} ranks on each of ${hosts.length} host${hosts.length > 1 ? 's' : ''}; give -n ${defaultN} or less, or leave -n out`);
    }
  }
  const n = argN ?? defaultN;
  if (!Number.isInteger(n) || n < 1) usageError(`-n must be a positive integer, got ${n}; e.g. -n 4`);
  let plan;
  try {
    plan = makePlan(n, vms, hosts, argv.oversubscribe);
  } catch (err) {
    usageError((err as Error).message);
  }
  if (argv.isolation === 'netns' && plan.hosts.some((h) => launcher(h) !== undefined)) {
    usageError(
      "--isolation netns runs on this host only: a VM's address is private to its host's bridge, so ranks on other hosts could not reach it; use --isolation none across hosts",
    );
  }

  if (argv.transport !== 'tcp' && argv['ring-bytes'] !== undefined) {
    // Only for rings the user sized: the default's worst case is ours to have chosen, and
    // warning about it on every large job would teach people to ignore the warning.
    // This machine's hosts only: another host's memory is its own agent's to know.
    for (const h of plan.hosts.filter((ph) => launcher(ph) === undefined)) {
      const warning = ringMemoryWarning(h.name, h.ranks.length, ringBytes, totalmem());
      if (warning !== undefined) process.stderr.write(`${warning}\n`);
    }
  }

  const exports: Record<string, string> = {};
  const xs = argv.x === undefined ? [] : ([] as string[]).concat(argv.x);
  for (const x of xs) {
    const eq = x.indexOf('=');
    const name = eq < 0 ? x : x.slice(0, eq);
    if (!ENV_NAME.test(name)) usageError(`-x ${x}: '${name}' is not a valid environment variable name`);
    if (eq >= 0) exports[name] = x.slice(eq + 1);
    else if (process.env[name] === undefined) usageError(`-x ${name}: ${name} is not set in ivrun's environment; use -x ${name}=VALUE`);
    else exports[name] = process.env[name]!;
  }
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  Object.assign(env, exports);
  // Every rank checks, or none does (a trailer one side adds, the other must strip): the
  // setting goes to the ranks of every host, not only to those that inherit ivrun's environment.
  const verifyEnv = env.IVCOM_VERIFY;
  if (verifyEnv !== undefined && verifyEnv !== '' && verifyEnv !== '0' && verifyEnv !== '1') {
    usageError(`IVCOM_VERIFY must be 1 or 0, got '${verifyEnv}'`);
  }
  if (argv.verify || verifyEnv === '1') {
    env.IVCOM_VERIFY = '1';
    exports.IVCOM_VERIFY = '1';
  }

  // A caller may name the job (log correlation, tests looking for its segments); else random.
  const jobId = process.env.IVCOM_JOB_ID ?? randomBytes(6).toString('hex');
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(jobId)) usageError(`IVCOM_JOB_ID must be 1-40 letters, digits, '-' or '_', got '${jobId}'`);
  if (argv.transport === 'ivcom') {
    try {
      await import('../kmod/index.js');
    } catch (err) {
      usageError(`--transport ivcom needs the native addon, which failed to load (${(err as Error).message}); ${BUILD_HINT}, or use --transport tcp`);
    }
  }
  const cwd = path.resolve(one(argv.wdir, '--wdir') ?? '.');
  if (!statSync(cwd, { throwIfNoEntry: false })?.isDirectory()) usageError(`--wdir ${argv.wdir}: no such directory`);
  // Other hosts have their own PATH and files: only this one's is checked here.
  if (plan.hosts.some((h) => launcher(h) === undefined)) {
    const why = whyNotRunnable(command[0]!, env.PATH, cwd);
    if (why !== undefined) {
      process.stderr.write(`ivrun: ${why}\n`);
      process.exit(COMMAND_NOT_FOUND);
    }
  }
  const bindTo = argv['bind-to'] === 'core' ? ('core' as const) : undefined;
  if (threads) {
    if (bindTo !== undefined) usageError('--bind-to core gives each rank process a CPU of its own; with --ranks-as threads the ranks share one process: use --bind-to none');
    const cmd = splitNodeCommand(command);
    if (typeof cmd === 'string') usageError(cmd);
  }
  if (bindTo !== undefined) {
    // This host's share is checked now (a usage error); other hosts check their own CPUs.
    const here = plan.hosts.find((h) => launcher(h) === undefined);
    try {
      if (here !== undefined) cpuPerRank(allowedCpus(), here.ranks.length, argv.oversubscribe);
    } catch (err) {
      usageError((err as Error).message);
    }
  }
  let outputFiles: OutputFiles | undefined;
  const outDir = one(argv['output-filename'], '--output-filename');
  if (outDir !== undefined) {
    try {
      outputFiles = new OutputFiles(path.resolve(outDir));
    } catch (err) {
      usageError(`--output-filename ${outDir}: ${(err as Error).message}`);
    }
  }
  const job = new Job({
    jobId,
    plan,
    command,
    env,
    exports,
    cwd,
    tagOutput: argv['tag-output'],
    outputFiles,
    bindTo,
    oversubscribe: argv.oversubscribe,
    ranksAs: threads ? 'threads' : undefined,
    timeoutSec: timeout,
    timeoutFrom,
    transport: argv.transport,
    isolation: argv.isolation,
    ringBytes,
    singleCopy: argv['single-copy'] === 'on',
    hostSlots: hostSlotsFor(one(argv['host-slots'], '--host-slots'), plan),
    launcherFor: launcher,
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => job.signal(sig));
  // mpirun's habit for a hung job: ask it, without ending it, what every rank waits for.
  process.on('SIGUSR1', () => void job.report());
  process.stdout.on('error', () => {});
  job.start();
  process.exitCode = await job.done;
  // process.exit() drops whatever is still queued for a slow reader of our stdout: let the
  // forwarded output reach it first.
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((r) => s.write('', () => r()))));
  process.exit();
}

void main();
