import { describe, expect, it } from 'vitest';
import { allowedCpus, cpuPerRank } from '../../launcher/binding.js';
import { rewriteHabits } from '../../launcher/habits.js';

describe('rewriteHabits', () => {
  it("rewrites mpirun's and mpiexec's single-dash long names, up to the command only", () => {
    expect(rewriteHabits(['-np', '4', 'node', 'app.js', '-np', '2'])).toEqual(['--np', '4', 'node', 'app.js', '-np', '2']);
    expect(rewriteHabits(['-npernode', '2', '-wdir', '/tmp', 'x'])).toEqual(['--npernode', '2', '--wdir', '/tmp', 'x']);
    expect(rewriteHabits(['-genv', 'A', 'B C', '-env', 'D', '-1', 'x'])).toEqual(['-x', 'A=B C', '-x', 'D=-1', 'x']);
    expect(rewriteHabits(['-machinefile', 'hf', 'x'])).toEqual(['--hostfile', 'hf', 'x']);
  });

  it('copies option values as they are, whatever they look like', () => {
    expect(rewriteHabits(['--ssh-args', '-p 2222', '-n', '2', 'x'])).toEqual(['--ssh-args=-p 2222', '-n', '2', 'x']);
    expect(rewriteHabits(['--wdir', '-np', 'x'])).toEqual(['--wdir', '-np', 'x']);
    expect(rewriteHabits(['-l', '--oversubscribe', '-n4', 'x', '-l'])).toEqual(['-l', '--oversubscribe', '-n4', 'x', '-l']);
    expect(rewriteHabits(['--timeout=5', '-np=3', 'x'])).toEqual(['--timeout=5', '--np=3', 'x']);
  });

  it('refuses an -env pair without its value', () => {
    expect(() => rewriteHabits(['-env', 'A'])).toThrow(/-env needs a name and a value/);
  });
});

describe('binding', () => {
  it("reads the kernel's list of allowed CPUs", () => {
    expect(allowedCpus('Name:\tnode\nCpus_allowed_list:\t0-2,5,7-8\n')).toEqual([0, 1, 2, 5, 7, 8]);
    expect(allowedCpus().length).toBeGreaterThan(0);
  });

  it('gives each rank a CPU, refusing more ranks than CPUs unless oversubscribed', () => {
    expect(cpuPerRank([4, 6], 2, false)).toEqual([4, 6]);
    expect(cpuPerRank([4, 6], 3, true)).toEqual([4, 6, 4]);
    expect(() => cpuPerRank([4, 6], 3, false, 'h1')).toThrow(/3 ranks on h1, .* 2 CPUs \(4,6\)/);
  });
});
