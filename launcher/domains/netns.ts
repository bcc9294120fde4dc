// Domains as network namespaces: every VM gets its own network and UTS namespace (hostname
// vm<K>), joined by a veth pair to a bridge, the way a Xen guest sits on xenbr0 behind dom0.
//
// Nothing here can outlive the job, by construction rather than by cleanup code:
// - every namespace is anonymous (unshare, no `ip netns add`, no bind mount under /run/netns),
//   so it exists only while a process is inside it;
// - the processes inside are the ranks and one holder per namespace, and each holder is tied to
//   the agent twice: SIGKILL when the agent dies (pdeathsig) and EOF on its stdin pipe;
// - the bridge lives in a namespace of its own (the job's "dom0 switch"), not in the host's:
//   when that namespace goes, so do the bridge and every veth end in it, and a veth pair dies
//   with either end. No device is ever created in the host's namespace.
// Addresses are private to the job's switch, so two jobs at once cannot collide; each job still
// draws its own /24 so that addresses in logs tell jobs apart.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { TIED } from '../tie.js';

/** How long namespace setup may take before the job is refused (a stuck `ip`, a full kernel). */
const SETUP_TIMEOUT_MS = 10_000;
/**
 * How often a namespace is asked whether its links are up yet. The kernel reports a veth as up
 * (and a rank's os.networkInterfaces() lists it, and the bridge forwards on it) only once its
 * link-state worker has run, up to a second after `link set up`: ranks start after that.
 */
const LINK_POLL_MS = 20;

export interface VmNetwork {
  domain: number;
  hostname: string;
  /** The VM's address on the job's bridge; its ranks listen here. */
  address: string;
  /** argv prefix that runs a command inside the VM's namespaces (exec, no extra process). */
  enter: string[];
}

export class IsolationError extends Error {
  readonly code = 'ERR_IVCOM_ISOLATION';
}

interface Holder {
  child: ChildProcess;
  pid: number;
}

/** Runs a command to completion, `input` (if any) on its stdin; its exit status decides. */
function run(file: string, args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
    // A command that exits before reading its input makes the write fail with EPIPE: its exit
    // status, not the pipe, says whether it worked.
    child.stdin?.on('error', () => {});
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => reject(e));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${file} ${args.join(' ')}: ${err.trim() || `exit ${code}`}`))));
    child.stdin?.end(input);
  });
}

/**
 * Waits inside namespace `pid` until `ip -o link show <what>` lists only links in state UP (at
 * least one). The loop is bounded by the setup timeout, so it never outlives a failed setup.
 */
function linksUp(pid: number, what: string): Promise<void> {
  const tries = Math.ceil(SETUP_TIMEOUT_MS / LINK_POLL_MS);
  const script =
    `i=0; while :; do l=$(ip -o link show ${what}) || exit 1; ` +
    `[ -n "$l" ] && ! printf '%s\\n' "$l" | grep -qv 'state UP' && exit 0; ` +
    `i=$((i+1)); [ $i -ge ${tries} ] && { echo "links not up: $l" >&2; exit 1; }; sleep ${LINK_POLL_MS / 1000}; done`;
  return run('nsenter', [`--target=${pid}`, '--net', '--', '/bin/sh', '-c', script]);
}

/**
 * A process alone in fresh namespaces. It says "ready" once it is inside them (so the caller
 * never configures the wrong namespace), then waits for EOF on stdin: the agent's end.
 */
function holder(kinds: string[], hostname: string | undefined): Promise<Holder> {
  const script = `${hostname ? 'hostname "$1" && ' : ''}echo ready && exec cat >/dev/null`;
  const [file, ...args] = [...TIED, 'unshare', ...kinds, '--', '/bin/sh', '-c', script, 'sh', ...(hostname ? [hostname] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn(file!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(err.trim() || `unshare exited with ${code}`)));
    child.stdout!.once('data', () => resolve({ child, pid: child.pid! }));
  });
}

/** A /24 in 10.0.0.0/8, away from the low subnets that hosts and containers usually take. */
function drawSubnet(): string {
  return `10.${randomInt(64, 250)}.${randomInt(0, 256)}`;
}

export class NetnsDomains {
  private constructor(
    readonly vms: VmNetwork[],
    private readonly holders: Holder[],
  ) {}

  /** Creates one VM per domain index, all on one bridge. */
  static async create(domains: number[]): Promise<NetnsDomains> {
    const holders: Holder[] = [];
    const setup = async (): Promise<VmNetwork[]> => {
      const sw = await holder(['--net'], undefined);
      holders.push(sw);
      const vmHolders = await Promise.all(domains.map((d) => holder(['--net', '--uts'], `vm${d}`)));
      holders.push(...vmHolders);
      const subnet = drawSubnet();
      const vms = domains.map((d, i): VmNetwork => ({
        domain: d,
        hostname: `vm${d}`,
        // .1 is left free (a dom0 address, should the switch ever get an uplink).
        address: `${subnet}.${i + 2}`,
        enter: ['nsenter', `--target=${vmHolders[i]!.pid}`, '--net', '--uts', '--'],
      }));
      if (domains.length + 2 > 254) throw new IsolationError(`--isolation netns supports at most 252 VMs per host, got ${domains.length}`);
      // Both ends are created straight inside their namespaces: no device ever exists in ours.
      await run('ip', ['-batch', '-'], vmHolders.map((h, i) => `link add vif${i} netns ${sw.pid} type veth peer name eth0 netns ${h.pid}\n`).join(''));
      const bridge = ['link add br0 type bridge', 'link set br0 up', 'link set lo up'];
      domains.forEach((_, i) => bridge.push(`link set vif${i} master br0`, `link set vif${i} up`));
      await Promise.all([
        run('nsenter', [`--target=${sw.pid}`, '--net', '--', 'ip', '-batch', '-'], bridge.join('\n') + '\n'),
        ...vms.map((vm, i) =>
          run('nsenter', [`--target=${vmHolders[i]!.pid}`, '--net', '--', 'ip', '-batch', '-'], `link set lo up\naddr add ${vm.address}/24 dev eth0\nlink set eth0 up\n`),
        ),
      ]);
      await Promise.all([linksUp(sw.pid, 'master br0'), ...vmHolders.map((h) => linksUp(h.pid, 'eth0'))]);
      return vms;
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`network setup took longer than ${SETUP_TIMEOUT_MS} ms`)), SETUP_TIMEOUT_MS);
      });
      const vms = await Promise.race([setup(), timeout]);
      return new NetnsDomains(vms, holders);
    } catch (err) {
      for (const h of holders) h.child.kill('SIGKILL');
      throw explain(err as NodeJS.ErrnoException);
    } finally {
      clearTimeout(timer);
    }
  }

  vm(domain: number): VmNetwork {
    const vm = this.vms.find((v) => v.domain === domain);
    if (vm === undefined) throw new Error(`no VM for domain ${domain}`);
    return vm;
  }

  /** Lets the namespaces go: each disappears as soon as its last rank has exited too. */
  close(): void {
    for (const h of this.holders) {
      h.child.stdin?.end();
      h.child.kill('SIGKILL');
    }
  }
}

function explain(err: NodeJS.ErrnoException): IsolationError {
  if (err instanceof IsolationError) return err;
  if (err.code === 'ENOENT') {
    return new IsolationError(`--isolation netns needs ${err.path ?? 'a program'} (util-linux's unshare/nsenter and iproute2's ip): install them (apt-get install util-linux iproute2)`);
  }
  const msg = err.message;
  if (/Operation not permitted|Permission denied/.test(msg)) {
    return new IsolationError(
      `--isolation netns cannot create network namespaces here (${msg}): it needs CAP_SYS_ADMIN and CAP_NET_ADMIN; run ivrun as root, or use --isolation none (domains without a network of their own)`,
    );
  }
  return new IsolationError(`--isolation netns: setting up the VMs' network failed: ${msg}`);
}
