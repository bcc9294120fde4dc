// What the cluster global setup (cluster-setup.ts) hands to tests as inject('cluster'): two
// "real hosts" (network namespaces, each with its own sshd and slurmd) and a Slurm cluster
// spanning them, built by cluster.sh. Or, when it could not be built, why not.

export interface ClusterHost {
  /** Hostname inside the host, ssh Host alias and Slurm NodeName (ivt-h1, ivt-h2). */
  name: string;
  /** Its only address besides 127.0.0.1 (on the bridge). */
  addr: string;
}

export interface ClusterUp {
  ok: true;
  /** State directory: keys, configs, pid files, logs (DIR/logs). */
  dir: string;
  hosts: ClusterHost[];
  /** This machine's address on the bridge: what the hosts reach the root namespace by. */
  bridgeAddr: string;
  /** CPUs Slurm believes each host has (so -N2 -n8 fits). */
  cpusPerHost: number;
  /** Put before the host name: `ssh ...sshArgs ivt-h1 cmd`. */
  sshArgs: string[];
  /** Add to the environment of srun/salloc/sinfo/...: see clusterEnv(). */
  slurmEnv: Record<string, string>;
  /** How long `cluster.sh up` took. */
  startupMs: number;
}

export interface ClusterUnavailable {
  ok: false;
  /** Why `cluster.sh up` failed: the tail of its stderr. */
  reason: string;
}

export type ClusterInfo = ClusterUp | ClusterUnavailable;

declare module 'vitest' {
  export interface ProvidedContext {
    cluster: ClusterInfo;
  }
}

/** The cluster, or throw why there is none (call it inside a test so that test fails with it). */
export function requireCluster(info: ClusterInfo | undefined): ClusterUp {
  if (info === undefined) {
    throw new Error("no cluster: add 'test/helpers/cluster-setup.ts' to globalSetup in vitest.config.ts");
  }
  if (!info.ok) throw new Error(`the test cluster could not be started:\n${info.reason}`);
  return info;
}

/**
 * An environment for Slurm commands: `base` without SLURM_* variables it may have inherited
 * (from a job the test runner itself runs in), plus the cluster's.
 */
export function clusterEnv(c: ClusterUp, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('SLURM_')) env[k] = v;
  return { ...env, ...c.slurmEnv };
}
