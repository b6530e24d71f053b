/** `ferry ui`: the web dashboard (webui/), loaded only when this command runs. */
import type { Command } from 'commander';
import type { CliContext } from './context';
import { CliExit, EXIT } from './output';

export function registerUiCommand(program: Command, ctx: CliContext): void {
  program
    .command('ui')
    .description('web dashboard: hosts, VMs, live migrations, evacuations, history (127.0.0.1 unless --listen; then a token is required)')
    .option('--port <n>', 'TCP port', '8780')
    .option('--listen <addr>', 'address to bind; beyond the loopback a token is required (FERRY_UI_TOKEN or a generated one)', '127.0.0.1')
    .option('--temporal-ui <url>', "the Temporal Web UI, for links to each workflow (FERRY_TEMPORAL_UI)", process.env['FERRY_TEMPORAL_UI'] ?? 'http://localhost:8233')
    .action(async (o: { port: string; listen: string; temporalUi: string }) => {
      const port = Number(o.port);
      if (!/^\d+$/.test(o.port) || port < 1 || port > 65535) throw new CliExit(EXIT.badInput, `--port must be a TCP port 1-65535 (got ${o.port})`);
      const { uiToken } = require('../webui/security') as typeof import('../webui/security');
      const { startUiServer } = require('../webui/server') as typeof import('../webui/server');
      let token: string | null;
      try {
        token = uiToken(o.listen);
      } catch (err) {
        throw new CliExit(EXIT.badInput, (err as Error).message);
      }
      const ui = await startUiServer({ inventory: await ctx.inventory(), ferry: await ctx.client(), listen: o.listen, port, token, temporalUi: o.temporalUi });
      process.stdout.write(`ferry ui on ${ui.url}/${token ? `?token=${token}` : ''}\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await ui.close();
    });
}
