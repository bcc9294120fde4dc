// Starting an agent over ssh: the system's client, so the user's ssh config (keys, ports, jump
// hosts, ControlMaster) applies as it does for every other tool.

import { parse, quote } from 'shell-quote';

/** Extra options for every ssh call: `--ssh-args`, else this variable (as OMPI_MCA_plm_rsh_args). */
export const SSH_ARGS_ENV = 'IVCOM_SSH_ARGS';
/** Bounds the wait for a host that drops packets; the user's own ConnectTimeout wins (first value counts in ssh). */
const CONNECT_TIMEOUT_S = 10;

/** Splits `--ssh-args '-p 2222 -F "my config"'` the way a shell would; operators are refused. */
export function parseSshArgs(text: string | undefined): string[] {
  if (text === undefined || text.trim() === '') return [];
  const words = parse(text);
  const bad = words.find((w) => typeof w !== 'string');
  if (bad !== undefined) throw new Error(`ssh arguments '${text}' contain shell syntax (${JSON.stringify(bad)}); give plain options such as '-p 2222 -i ~/.ssh/key'`);
  return words as string[];
}

/** argv that runs `agent` on `host`: BatchMode, so a missing key fails at once instead of prompting. */
export function sshLauncher(host: string, sshArgs: string[], agent: string[]): string[] {
  return ['ssh', ...sshArgs, '-o', 'BatchMode=yes', '-o', `ConnectTimeout=${CONNECT_TIMEOUT_S}`, '-T', host, '--', `exec ${quote(agent)}`];
}
