#!/usr/bin/env node
// A stand-in for `virsh -c <uri>` in interactive mode, for test/unit/virsh-session.test.ts: reads one line
// at a time, prints the banner, the prompt and the line as real virsh does ("virsh # <line>"), then runs each
// ';'-separated command: `echo X` prints X, `echo --err X` prints "error: X" on stderr, `fail` prints an error,
// `sleep` never answers, anything else prints "ok <words>". FAKE_VIRSH_PIDS (a file) collects the pids;
// FAKE_VIRSH_HANG=1 makes it never answer at all.
'use strict';
const fs = require('node:fs');
if (process.env.FAKE_VIRSH_PIDS) fs.appendFileSync(process.env.FAKE_VIRSH_PIDS, `${process.pid}\n`);
const unquote = (t) => t.replace(/'/g, ''); // '@@a''b@@' -> @@ab@@, as virsh's tokenizer joins them
let buf = '';
process.stdout.write("Welcome to virsh, the virtualization interactive terminal.\n\nType:  'help' for help with commands\n       'quit' to quit\n\nvirsh # ");
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  if (process.env.FAKE_VIRSH_HANG === '1') return;
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    // readline on a dumb terminal: a line wider than the screen is redrawn scrolled, showing its end after "\r<"
    process.stdout.write(`${line.length > 70 ? `${line.slice(0, 70)}\r<${line.slice(-70)}` : line}\n`);
    for (const cmd of line.split(' ; ')) {
      const words = cmd.trim().split(/\s+/).map(unquote);
      if (words[0] === 'echo' && words[1] === '--err') process.stderr.write(`error: ${words[2]}\n`);
      else if (words[0] === 'echo') process.stdout.write(`${words[1]}`);
      else if (words[0] === 'fail') process.stderr.write('error: failed to get domain \'x\'\n');
      else if (words[0] === 'sleep') return;
      else process.stdout.write(`ok ${words.join(' ')}\n`);
    }
    process.stdout.write('virsh # ');
  }
});
process.stdin.on('end', () => process.exit(0));
