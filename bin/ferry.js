#!/usr/bin/env node
'use strict';
// Thin launcher: the CLI is TypeScript compiled to dist/ by `npm run build` (run by `npm ci` through `prepare`).
const path = require('node:path');
const fs = require('node:fs');
const main = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
if (!fs.existsSync(main)) {
  process.stderr.write('ferry: dist/ is missing; run `npm ci` (or `npm run build`) in ' + path.dirname(__dirname) + '\n');
  process.exit(1);
}
require(main).main(process.argv).catch((err) => {
  process.stderr.write(`ferry: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
