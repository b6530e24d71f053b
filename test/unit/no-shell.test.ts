/**
 * Ferry never runs a shell: every external program is started with execFile/spawn and an argument array.
 * This test fails the build when a shell-spawning API or a shell invocation appears in the source.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(__dirname, '..', '..');
const SOURCE_DIRS = ['common', 'workflows', 'activities', 'worker', 'client', 'cli', 'cluster', 'hypervisor', 'inventory', 'lab', 'bench', 'bin', 'test'];
/** The only modules allowed to start processes at all (each with an argument array). */
const PROCESS_STARTERS = new Set([
  'hypervisor/exec.ts',
  'hypervisor/processes.ts',
  'lab/daemons.ts',
  'test/unit/inventory-concurrency.test.ts',
  'test/support/fault-harness.ts',
  'test/lab/cluster.lab.test.ts',
]);

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    if (!fs.existsSync(dir)) return;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|js|cjs|mjs)$/.test(e.name)) out.push(p);
    }
  };
  for (const d of SOURCE_DIRS) walk(path.join(REPO, d));
  return out.map((p) => path.relative(REPO, p));
}

const FORBIDDEN: [RegExp, string][] = [
  [/\bimport\s*\{[^}]*\b(exec|execSync)\b[^}]*\}\s*from\s*['"](node:)?child_process['"]/, 'child_process.exec/execSync run a shell'],
  [/child_process['"]?\)?\.(exec|execSync)\b/, 'child_process.exec/execSync run a shell'],
  [/\bexecSync\s*\(/, 'execSync runs a shell'],
  [/\bspawnSync\s*\([^)]*shell/, 'spawnSync with a shell'],
  [/\bshell\s*:\s*(true|['"`])/, 'a shell: option'],
  [/['"`](\/bin\/)?(ba|z|da)?sh['"`]\s*,\s*\[\s*['"`]-c/, 'sh -c'],
  [/['"`]-c['"`]\s*,\s*['"`][^'"`]*[;&|]/, 'a shell command line'],
  [/\b(spawn|execFile|execFileSync|fork|run|tryRun)\s*\(\s*['"`](\/usr)?(\/bin\/)?(ba|z|da|k|c|tc|fi)?sh['"`]/, 'a shell started as the program'],
  [/\b(spawn|execFile|run|tryRun)\s*\(\s*['"`](\/usr)?(\/s?bin\/)?(env|nsenter|sudo|su|xargs)['"`]\s*,\s*\[[^\]]*['"`](\/usr)?(\/bin\/)?(ba|z|da)?sh['"`]/, 'a shell started through another program'],
];

describe('no shell anywhere', () => {
  const files = sourceFiles().filter((f) => f !== 'test/unit/no-shell.test.ts');

  it('finds the source', () => {
    expect(files.length).toBeGreaterThan(20);
  });

  it.each(files)('%s spawns no shell', (file) => {
    const text = fs.readFileSync(path.join(REPO, file), 'utf8');
    for (const [re, why] of FORBIDDEN) {
      const line = text.split('\n').findIndex((l) => re.test(l) && !/^\s*(\/\/|\*)/.test(l));
      expect(line, `${file}:${line + 1}: ${why}`).toBe(-1);
    }
    if (/child_process/.test(text)) expect(PROCESS_STARTERS.has(file), `${file} imports child_process`).toBe(true);
  });

  it('the patterns catch what they are meant to catch', () => {
    const caught = (line: string) => FORBIDDEN.some(([re]) => re.test(line));
    for (const bad of [
      "import { exec } from 'node:child_process';",
      "execSync('ls')",
      "spawn('sh', ['-c', 'ls'])",
      "spawn('/bin/bash', ['x.sh'])",
      "execFile('zsh', [])",
      "run('sh', ['script'])",
      "spawn(cmd, args, { shell: true })",
      "run('nsenter', ['--mount=/x', 'sh', '-c', 'ls'])",
      "run('env', ['bash', 'x'])",
    ]) {
      expect(caught(bad), bad).toBe(true);
    }
    for (const good of ["run('virsh', ['-c', uri, 'list'])", "spawn('nsenter', ['--net=/x', '--', LIBVIRTD])", "fork(WORKER_CHILD, [], {})", "run('ssh-keygen', [])"]) {
      expect(caught(good), good).toBe(false);
    }
  });
});
