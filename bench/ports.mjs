#!/usr/bin/env node
// `npm run bench:ports`: HTTP to a sandbox port through the server (issue 17), against the same
// server program run directly on the host. One tiny Node HTTP server (answers "ok"), three ways,
// rounds interleaved, keep-alive connections (as browsers and fetch use them):
//   direct      the program on the host, 127.0.0.1:<port>
//   published   the program in a sandbox, through sandbank's getHost (a loopback port the server
//               carries to the sandbox through envd)
//   by name     the same, through the API port with Host `<port>-<id>.localhost:<api port>`
// Reports p50/p99 of a request's round trip and what each adds over direct; writes its section of
// docs/BENCHMARKS.md.
//
// Usage: node bench/ports.mjs [--requests 2000] [--out docs/BENCHMARKS.md] [--no-write]
import { spawn } from 'node:child_process'
import { Agent, request } from 'node:http'
import { join } from 'node:path'
import { Sandbox } from 'sandbank'
import { packageRoot, removeDataDir, startLocalServer } from '../scripts/local-server.mjs'
import { upsertSection } from './report.mjs'
import { arg, percentile as p } from './common.mjs'

const REQUESTS = Number(arg('requests', 2000))
const OUT = arg('out', join(packageRoot, 'docs', 'BENCHMARKS.md'))
const WRITE = !process.argv.includes('--no-write')
const PORT = 8000
/** Answers "ok"; listens on argv[1] (0: a free port) and prints the port it got. */
const PROGRAM = `const s = require('http').createServer((q, r) => r.end('ok')); s.listen(Number(process.argv[1]), () => console.log(s.address().port))`

/** One GET over `agent` to host:port with `hostHeader`; resolves with its time in ms. */
function get(agent, host, port, hostHeader) {
  const t0 = performance.now()
  return new Promise((resolve, reject) => {
    const req = request({ agent, host, port, path: '/', headers: { host: hostHeader } }, (res) => {
      res.resume()
      res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`status ${res.statusCode}`))))
    })
    req.on('error', reject)
    req.end()
  })
}

const server = await startLocalServer({ tmpPrefix: 'sandbank-bench-ports-' })
const apiPort = Number(new URL(server.url).port)
const direct = spawn(process.execPath, ['-e', PROGRAM, '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
let sandbox
const times = { direct: [], published: [], name: [] }
try {
  const directPort = Number(await new Promise((resolve) => direct.stdout.once('data', (d) => resolve(String(d).trim()))))
  sandbox = await Sandbox.create(server.sdkOpts())
  await sandbox.files.write('/home/user/srv.js', PROGRAM)
  await sandbox.commands.run(`node -e "$(cat /home/user/srv.js)" ${PORT}`, { background: true })
  const [pubHost, pubPort] = sandbox.getHost(PORT).split(':')
  const name = `${PORT}-${sandbox.sandboxId}.localhost:${apiPort}`
  const ways = {
    direct: [new Agent({ keepAlive: true, maxSockets: 1 }), '127.0.0.1', directPort, `127.0.0.1:${directPort}`],
    published: [new Agent({ keepAlive: true, maxSockets: 1 }), pubHost, Number(pubPort), `${pubHost}:${pubPort}`],
    name: [new Agent({ keepAlive: true, maxSockets: 1 }), '127.0.0.1', apiPort, name],
  }
  // Until the sandbox's server answers, then a warm-up of each way.
  for (let i = 0; ; i++) {
    try {
      await get(...ways.published)
      break
    } catch (e) {
      if (i > 100) throw e
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  for (const way of Object.values(ways)) for (let i = 0; i < 50; i++) await get(...way)
  for (let i = 0; i < REQUESTS; i++) {
    for (const [key, way] of Object.entries(ways)) times[key].push(await get(...way))
  }
} finally {
  direct.kill()
  if (sandbox) await sandbox.kill().catch(() => {})
  await server.stop()
  removeDataDir(server.dataDir)
}

const ms = (x) => `${x.toFixed(3)} ms`
const row = (label, key) => {
  const added = p(times[key], 50) - p(times.direct, 50)
  return `| ${label} | ${ms(p(times[key], 50))} | ${ms(p(times[key], 99))} | ${key === 'direct' ? '-' : `+${ms(added)}`} |`
}
const lines = [
  '## Sandbox ports (issue 17)',
  '',
  `HTTP round trips to a sandbox port (\`node bench/ports.mjs --requests ${REQUESTS}\`; ${new Date().toISOString().slice(0, 10)}; one server; ${REQUESTS} requests each way, interleaved, over one keep-alive connection per way). The same Node program (answers \`ok\`) runs on the host (direct) and in a sandbox:`,
  '',
  '| way | p50 | p99 | added p50 over direct |',
  '|---|---|---|---|',
  row('direct (the program on the host)', 'direct'),
  row('published: sandbank\'s `getHost` (`127.0.0.1:<n>`, carried through envd)', 'published'),
  row('by name: `<port>-<id>.localhost:<api port>` through the API server', 'name'),
]
console.log(lines.join('\n'))
if (WRITE) upsertSection(OUT, 'bench/ports.mjs', lines.join('\n'))
