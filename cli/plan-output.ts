/** `ferry migrate --dry-run`: the plan, in words (or JSON), and its exit code (0 would go, 2 would not). */
import type { MigrationPlan } from '../common/migration';
import { EXIT, mib, printJson } from './output';

export function printPlan(plan: MigrationPlan, json: boolean): void {
  if (json) printJson(plan);
  else process.stdout.write(`${planLines(plan).join('\n')}\n`);
  process.exitCode = plan.wouldMigrate ? EXIT.ok : EXIT.badInput;
}

export function planLines(p: MigrationPlan): string[] {
  const lines = [
    p.wouldMigrate
      ? `dry run: ${p.vm.name} (${p.vm.state ?? '?'}) would migrate ${p.mode} ${p.source} → ${p.target}; nothing was changed`
      : `dry run: ${p.vm.name} (${p.vm.state ?? '?'}) would NOT migrate from ${p.source}: ${p.reason ?? 'no target'}`,
  ];
  for (const c of p.candidates) {
    lines.push(`  target ${c.host}: ${c.chosen ? 'chosen' : 'refused'}`);
    for (const k of c.checks) lines.push(`    ${k.ok ? 'ok  ' : 'FAIL'} ${k.check}: ${k.detail}`);
    if (c.storageRefusal) lines.push(`    FAIL storage: ${c.storageRefusal}`);
    else if (c.chosen) lines.push('    ok   storage: the plan below');
  }
  for (const r of p.placementRejected) lines.push(`  placement: ${r.host} ${r.reason}`);
  for (const d of p.disks) lines.push(`  disk ${d.target} ${d.path} (${mib(d.sizeBytes)}): ${d.layout === 'shared' ? 'shared storage, not copied' : d.flattened ? 'copied (backing chain flattened)' : 'copied'}`);
  if (p.wouldMigrate) lines.push(`  would create on ${p.target}: ${p.creates.length ? '' : 'nothing'}`, ...p.creates.map((c) => `    ${c}`));
  const e = p.estimate;
  if (e) {
    const rate = e.bandwidthMiBps === null ? 'unknown bandwidth' : `${e.bandwidthMiBps} MiB/s (${e.bandwidthFrom === 'request' ? '--bandwidth' : 'recent migrations'})`;
    lines.push(`  estimate: ${mib(e.copyBytes)} to copy at ${rate}: ${e.copySeconds === null ? '?' : `${e.copySeconds} s`}`);
    lines.push(`  convergence: ${e.note}`);
  }
  return lines;
}
