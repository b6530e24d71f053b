#!/usr/bin/env node
// Bundles the `ferry ui` page (webui/page) with esbuild into dist/webui/assets: app.js (uPlot included),
// index.html, style.css and uPlot's CSS. Run by `npm run build`; nothing is fetched at run time.
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const repo = path.join(__dirname, '..');
const out = path.join(repo, 'dist', 'webui', 'assets');
fs.mkdirSync(out, { recursive: true });
esbuild.buildSync({
  entryPoints: [path.join(repo, 'webui', 'page', 'app.ts')],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  legalComments: 'none',
  outfile: path.join(out, 'app.js'),
  logLevel: 'warning',
});
for (const f of ['index.html', 'style.css']) fs.copyFileSync(path.join(repo, 'webui', 'page', f), path.join(out, f));
fs.copyFileSync(require.resolve('uplot/dist/uPlot.min.css'), path.join(out, 'uPlot.min.css'));
