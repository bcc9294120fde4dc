// What ivrun's command line looks like to people who come from mpirun and mpiexec, rewritten
// into the one spelling the option parser knows, before it sees them. yargs reads `-np` as the
// flags -n -p, and `-genv A B` as five one-letter flags; Open MPI and MPICH accept these
// single-dash long names, so ivrun does too. Only ivrun's own options are rewritten: the scan
// stops at the command, whose arguments are the program's.

/** Single-dash long names of Open MPI and MPICH, and the option each one is here. */
const SINGLE_DASH: Readonly<Record<string, string>> = {
  '-np': '--np',
  '-npernode': '--npernode',
  '-wdir': '--wdir',
  '-host': '--host',
  '-hostfile': '--hostfile',
  '-machinefile': '--hostfile',
  '-oversubscribe': '--oversubscribe',
  '-timeout': '--timeout',
};

/** MPICH's `-genv NAME VALUE` / `-env NAME VALUE`: two words, here one `-x NAME=VALUE`. */
const ENV_PAIR = new Set(['-genv', '--genv', '-env', '--env']);

/** ivrun's options that take no value: every other option's next word is its value. */
const FLAGS = new Set([
  '--tag-output',
  '--prepend-rank',
  '-l',
  '--oversubscribe',
  '--allow-run-as-root',
  '--help',
  '-h',
  '--version',
  '-V',
]);

/**
 * Rewrites mpirun habits into ivrun's spelling, up to the command. Also joins `--ssh-args X`
 * into `--ssh-args=X`: its value starts with a dash and would otherwise be read as options.
 * Throws a RangeError for an -env pair that lacks its value.
 */
export function rewriteHabits(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const w = args[i]!;
    if (!w.startsWith('-') || w === '-' || w === '--') {
      out.push(...args.slice(i)); // the command and its arguments, untouched
      break;
    }
    if (ENV_PAIR.has(w)) {
      const name = args[i + 1];
      const value = args[i + 2];
      if (name === undefined || value === undefined) {
        throw new RangeError(`${w} needs a name and a value (${w} NAME VALUE), as in mpiexec; or use -x NAME=VALUE`);
      }
      out.push('-x', `${name}=${value}`);
      i += 2;
      continue;
    }
    const eq = w.indexOf('=');
    const bare = eq < 0 ? w : w.slice(0, eq);
    const name = SINGLE_DASH[bare] ?? bare;
    if (name === '--ssh-args' && eq < 0 && i + 1 < args.length) {
      out.push(`--ssh-args=${args[++i]}`);
      continue;
    }
    out.push(eq < 0 ? name : `${name}${w.slice(eq)}`);
    // `-n4`, `-xNAME=V`: a one-letter option with its value attached carries no next word.
    if (/^-[A-Za-z]./.test(name)) continue;
    // Its value, which may look like anything (a negative number, a path): copied as is.
    if (eq < 0 && !FLAGS.has(name) && !name.startsWith('--no-') && i + 1 < args.length) out.push(args[++i]!);
  }
  return out;
}
