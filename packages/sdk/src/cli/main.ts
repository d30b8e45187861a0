#!/usr/bin/env node
/** The `swarm` process: runs one command line from program.ts with this process's streams. */
import { buildProgram, type CliIo, exitStatusOf } from './program.js';

const io: CliIo = { stdout: process.stdout, stderr: process.stderr };
try {
  await buildProgram(io).parseAsync(process.argv);
  if (io.exitCode !== undefined) process.exitCode = io.exitCode;
} catch (err) {
  // At once: a failed command may leave a connection or a timer open.
  process.exit(exitStatusOf(err, process.stderr));
}
