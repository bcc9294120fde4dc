// `ivrun --agent`: ivrun on another host, started by the head through ssh or srun. Its stdin and
// stdout carry the agent protocol; when stdin closes before the job has finished (the head died,
// the ssh link dropped), every rank of this host is killed and the agent leaves.

import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { readMessages, writeMessage } from '../transport/bootstrap/protocol.js';
import type { AgentMessage, HeadMessage } from './agent-protocol.js';
import { HostAgent } from './agent.js';
import type { Where } from './hosts/remote.js';

/** The local address on the route to `ip`: the one its peers can reach this host at. */
function routeTo(ip: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(ip.includes(':') ? 'udp6' : 'udp4');
    s.on('error', reject);
    // connect() on UDP sends nothing: it only asks the kernel for a route (the discard port).
    s.connect(9, ip, () => {
      const a = s.address().address;
      s.close();
      resolve(a);
    });
  });
}

async function whereAmI(env: NodeJS.ProcessEnv): Promise<Where> {
  // "client_ip client_port server_ip server_port": the address the head reached us at, and the
  // head's own address on that path.
  const ssh = env.SSH_CONNECTION?.trim().split(/\s+/);
  if (ssh?.length === 4) return { address: ssh[2]!, head: ssh[0]! };
  const launch = env.SLURM_LAUNCH_NODE_IPADDR;
  if (launch !== undefined && launch !== '') return { address: await routeTo(launch), head: launch };
  return { address: '127.0.0.1' };
}

export async function serveAgent(): Promise<void> {
  const say = (m: AgentMessage) => writeMessage<AgentMessage>(process.stdout, m);
  let agent: HostAgent | undefined;
  let finishing = false;
  let killed: NodeJS.Signals | undefined;
  process.stdout.on('error', () => {});
  const where = await whereAmI(process.env);
  say({ op: 'ready', address: where.address, head: where.head });

  const onMessage = async (m: HeadMessage): Promise<void> => {
    switch (m.op) {
      case 'spawn': {
        let cwd = m.spec.cwd;
        if (cwd !== undefined && !existsSync(cwd)) {
          process.stderr.write(`ivrun agent: ${cwd} does not exist on ${hostname()}; ranks start in ${process.cwd()}\n`);
          cwd = undefined;
        }
        try {
          agent = await HostAgent.start(
            { ...m.spec, cwd, env: { ...(process.env as Record<string, string>), ...m.spec.env }, address: where.address, stdin: false },
            {
              message: (rank, msg) => say({ op: 'from-rank', rank, msg }),
              exit: (rank, code, signal) => say({ op: 'exit', rank, code, signal }),
              line: (rank, fd, text) => say({ op: 'line', rank, fd, text }),
              failed: (rank, why, code) => say({ op: 'rank-failed', rank, why, code }),
            },
          );
          if (killed !== undefined) agent.kill(killed);
        } catch (err) {
          say({ op: 'failed', why: (err as Error).message });
        }
        return;
      }
      case 'to-rank':
        agent?.send(m.rank, m.msg);
        return;
      case 'kill':
        killed = m.signal;
        agent?.kill(m.signal, m.spare);
        return;
      case 'finish':
        finishing = true;
        await agent?.finish();
        say({ op: 'finished' });
        process.stdout.end();
        return;
    }
  };
  readMessages<HeadMessage>(
    process.stdin,
    (m) => void onMessage(m),
    (line) => process.stderr.write(`ivrun agent: the head sent a malformed line: ${line.slice(0, 80)}\n`),
  );
  process.stdin.on('end', () => {
    if (finishing) return;
    // The head is gone: nothing of this job may go on here.
    agent?.kill('SIGKILL');
    process.exit(1);
  });
}
