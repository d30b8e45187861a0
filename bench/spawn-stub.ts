/**
 * `node --import tsx bench/spawn-stub.ts <answer>`: figure 6b's client ceiling. A registry
 * that does nothing: every request is answered at once with `answer` (a real
 * executions.spawn answer, as JSON), over bare node:http. The 50 SDK callers of #6b against
 * it show how many spawns per second the callers themselves can make on this machine,
 * whatever the registry and the database do. Prints `READY <url>`.
 */
import http from 'node:http';

const answer = process.argv[2];
if (!answer) {
  console.error('usage: spawn-stub.ts <answer JSON>');
  process.exit(64);
}
const body = Buffer.from(answer);
const server = http.createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    response.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(`READY http://127.0.0.1:${port}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('close', stop);
