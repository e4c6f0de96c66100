#!/usr/bin/env node
// Entry point of the `flashserve` bin: runs the CLI and, for `serve`, keeps the process alive until
// a signal drains the server.

import { runCli } from './run.js';
import { exitOnSignals } from './serve.js';

const io = {
  stdout: (text: string) => process.stdout.write(text),
  stderr: (text: string) => process.stderr.write(text),
};

runCli(process.argv.slice(2), process.env, io).then(
  (result) => {
    if ('server' in result) exitOnSignals(result.server);
    else process.exitCode = result.exitCode;
  },
  (err: unknown) => {
    io.stderr(`flashserve: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
