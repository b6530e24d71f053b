/**
 * The CLI loads only what a command uses (cli/main.ts COMMAND_MODULES): each module registers exactly the
 * commands listed for it, and `ferry hosts list` / `ferry vms list --json` never load the Temporal SDK, the
 * lab, the worker, virsh's parsers or node-postgres. Run in child processes (the CLI's lazy `require`s load
 * the TypeScript sources through test/support/register-ts.cjs there). The wall time is bench/'s `startup` suite.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../hypervisor/exec';

const REPO = path.join(__dirname, '..', '..');
const REGISTER_TS = path.join(REPO, 'test', 'support', 'register-ts.cjs');

async function node(script: string, args: string[] = [], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, ['-r', REGISTER_TS, '-e', script, 'ferry', ...args], { cwd: REPO, env, timeoutMs: 60_000 });
}

describe('ferry start-up: load only what a command uses', () => {
  it('each command module registers exactly the commands COMMAND_MODULES lists, all of them without a command', async () => {
    const script = `
      const { buildProgram, COMMAND_MODULES } = require('./cli/main.ts');
      const { CliContext } = require('./cli/context.ts');
      (async () => {
        const out = { groups: [], all: [] };
        for (const m of COMMAND_MODULES) {
          const p = await buildProgram(new CliContext(), ['node', 'ferry', m.commands[0]]);
          out.groups.push({ listed: m.commands, registered: p.commands.map((c) => c.name()) });
        }
        out.all = (await buildProgram(new CliContext(), ['node', 'ferry'])).commands.map((c) => c.name());
        process.stdout.write(JSON.stringify(out));
      })();`;
    const { groups, all } = JSON.parse((await node(script)).stdout) as { groups: { listed: string[]; registered: string[] }[]; all: string[] };
    for (const g of groups) expect(g.registered).toEqual(g.listed);
    expect(all).toEqual(groups.flatMap((g) => g.listed));
    expect(new Set(all).size).toBe(all.length);
  }, 60_000);

  it.each([['hosts', 'list'], ['vms', 'list', '--json']])('`ferry %s %s` loads no Temporal SDK, lab, worker, virsh parser or pg', async (...args) => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cli-startup-'));
    try {
      const script = `
        process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify(Object.keys(require.cache))));
        require('./cli/main.ts').main(process.argv);`;
      const { stderr } = await node(script, args, { FERRY_HOME: home, FERRY_INVENTORY: path.join(home, 'inventory.db') });
      const loaded = JSON.parse(stderr.slice(stderr.indexOf('LOADED ') + 7)) as string[];
      expect(loaded.some((f) => f.includes(`${path.sep}cli${path.sep}inventory-commands.ts`))).toBe(true);
      for (const heavy of ['@temporalio', `${path.sep}lab${path.sep}`, `${path.sep}worker${path.sep}`, `${path.sep}hypervisor${path.sep}virsh`, `${path.sep}node_modules${path.sep}pg${path.sep}`, 'fast-xml-parser']) {
        expect(loaded.filter((f) => f.includes(heavy)), heavy).toEqual([]);
      }
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  }, 60_000);
});
