#!/usr/bin/env node
// `npm run bench`: how fast a sandbox starts and dies on the local engine.
//
// Measures, in one run and side by side:
//   • sandbank (raw HTTP): POST /sandboxes → envd Process/Start `/bin/bash -l -c true` → end event
//     (the time until the first command has exited), then DELETE /sandboxes/{id} (kill time), for a
//     loopback-only sandbox and for one with internet access (pasta; what the SDKs ask for), and
//     for a loopback-only sandbox of a second server started with `--no-userns` (interleaved run by
//     run with the first, to show what the user namespace costs);
//   • sandbank (novita-sandbox SDK): Sandbox.create() + commands.run('true'), then kill();
//   • the floor: `unshare -m -p -f -u -i -n --mount-proc true` spawned from Node, and a plain
//     `true` spawned the same way (the harness's own process-spawn cost).
// Writes the numbers and the method to docs/BENCHMARKS.md.
//
// Usage: node bench/start.mjs [--runs 100] [--warmup 5] [--out docs/BENCHMARKS.md] [--no-write]
// Needs root (the floor's unshare makes mount/PID namespaces without a user namespace).
import { spawn, spawnSync } from 'node:child_process'
import os from 'node:os'
import { join } from 'node:path'
import { Sandbox } from 'novita-sandbox'
import { packageRoot, removeDataDir, startLocalServer } from '../scripts/local-server.mjs'
import { upsertSection } from './report.mjs'
import { arg } from './common.mjs'

const RUNS = Number(arg('runs', 100))
const WARMUP = Number(arg('warmup', 5))
const OUT = arg('out', join(packageRoot, 'docs', 'BENCHMARKS.md'))
const WRITE = !process.argv.includes('--no-write')
const TARGET_P50_MS = 25

// ── statistics ──
function stats(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] // nearest rank
  return { n: s.length, p50: q(50), p99: q(99), mean: s.reduce((a, b) => a + b, 0) / s.length, min: s[0], max: s.at(-1) }
}
const f = (ms) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(2))

// ── the floor ──
function spawnTime(cmd, args) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const p = spawn(cmd, args, { stdio: 'ignore' })
    p.on('error', reject)
    p.on('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))))
  })
}

// ── envd over the server, as the SDKs speak it (Connect protocol, JSON) ──
function envelope(obj) {
  const body = Buffer.from(JSON.stringify(obj))
  const head = Buffer.alloc(5)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}

async function runCommand(server, created, cmd) {
  const headers = {
    'content-type': 'application/connect+json',
    'connect-protocol-version': '1',
    'keepalive-ping-interval': '50',
    'novita-sandbox-id': created.sandboxID,
    'novita-sandbox-port': '49983',
  }
  if (created.envdAccessToken) headers['x-access-token'] = created.envdAccessToken
  const res = await fetch(`${server.url}/process.Process/Start`, {
    method: 'POST',
    headers,
    body: envelope({ process: { cmd: '/bin/bash', args: ['-l', '-c', cmd], envs: {} }, stdin: false }),
  })
  const buf = Buffer.from(await res.arrayBuffer())
  if (res.status !== 200) throw new Error(`Process/Start → ${res.status}: ${buf}`)
  let end
  for (let off = 0; off + 5 <= buf.length; ) {
    const flags = buf[off]
    const len = buf.readUInt32BE(off + 1)
    const msg = JSON.parse(buf.subarray(off + 5, off + 5 + len).toString() || '{}')
    off += 5 + len
    if (flags & 2) {
      if (msg.error) throw new Error(`Process/Start: ${msg.error.code}: ${msg.error.message}`)
    } else if (msg.event?.end) end = msg.event.end
  }
  if (!end) throw new Error('Process/Start: no end event')
  return end.exitCode ?? 0
}

async function rawCycle(server, internet = false) {
  const t0 = performance.now()
  const res = await server.fetch('/sandboxes', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ templateID: 'base', timeout: 60, allow_internet_access: internet }),
  })
  const created = await res.json()
  if (res.status !== 201) throw new Error(`POST /sandboxes → ${res.status}: ${JSON.stringify(created)}`)
  const tCreated = performance.now()
  const code = await runCommand(server, created, 'true')
  const tFirst = performance.now()
  if (code !== 0) throw new Error(`first command exited ${code}`)
  const code2 = await runCommand(server, created, 'true')
  const tSecond = performance.now()
  if (code2 !== 0) throw new Error(`second command exited ${code2}`)
  const del = await server.fetch(`/sandboxes/${created.sandboxID}`, { method: 'DELETE' })
  await del.arrayBuffer()
  const tKilled = performance.now()
  if (del.status !== 204) throw new Error(`DELETE → ${del.status}`)
  return { create: tCreated - t0, firstExit: tFirst - t0, second: tSecond - tFirst, kill: tKilled - tSecond }
}

async function sdkCycle(opts) {
  const t0 = performance.now()
  const sbx = await Sandbox.create({ ...opts, timeoutMs: 60_000 })
  await sbx.commands.run('true')
  const tFirst = performance.now()
  await sbx.kill()
  return { firstExit: tFirst - t0, kill: performance.now() - tFirst }
}

async function series(label, n, fn) {
  const out = []
  process.stderr.write(`${label}: `)
  for (let i = 0; i < n; i++) {
    out.push(await fn())
    if ((i + 1) % 10 === 0) process.stderr.write('.')
  }
  process.stderr.write('\n')
  return out
}

// ── run ──
if (process.getuid?.() !== 0) console.error('warning: not root; the unshare floor will fail')
const loadAtStart = os.loadavg()[0]
let server
let plainServer
let results
try {
  server = await startLocalServer({ tmpPrefix: 'sandbank-bench-' })
  console.error(`server ${server.url} ready in ${server.startMs.toFixed(0)} ms`)
  plainServer = await startLocalServer({ tmpPrefix: 'sandbank-bench-', extraArgs: ['--no-userns'] })
  const cold = await rawCycle(server) // the first sandbox after the server started
  await series('warm-up', WARMUP, async () => (await rawCycle(server), await rawCycle(plainServer)))
  // Each series runs back to back so they see the same machine state; the user-namespace
  // comparison is interleaved run by run.
  const raw = []
  const plain = []
  await series('sandbank raw HTTP, with and without a user namespace', RUNS, async () => {
    raw.push(await rawCycle(server))
    plain.push(await rawCycle(plainServer))
  })
  const net = await series('sandbank raw HTTP, internet access', RUNS, () => rawCycle(server, true))
  // With a pause before each (the network made ahead of time is ready every time, and the
  // machine idles in between): loopback and internet access interleaved.
  const pausedRaw = []
  const netPaused = []
  await series('sandbank raw HTTP, 200 ms apart, without and with internet access', RUNS, async () => {
    await new Promise((r) => setTimeout(r, 200))
    pausedRaw.push(await rawCycle(server))
    await new Promise((r) => setTimeout(r, 200))
    netPaused.push(await rawCycle(server, true))
  })
  const sdk = await series('sandbank via novita-sandbox', RUNS, () => sdkCycle(server.sdkOpts()))
  const unshare = await series('unshare floor', RUNS, () => spawnTime('unshare', ['-m', '-p', '-f', '-u', '-i', '-n', '--mount-proc', 'true']))
  const trueT = await series('spawn true', RUNS, () => spawnTime('true', []))
  results = {
    cold,
    rawFirst: stats(raw.map((r) => r.firstExit)),
    rawCreate: stats(raw.map((r) => r.create)),
    rawSecond: stats(raw.map((r) => r.second)),
    rawKill: stats(raw.map((r) => r.kill)),
    plainFirst: stats(plain.map((r) => r.firstExit)),
    plainKill: stats(plain.map((r) => r.kill)),
    netFirst: stats(net.map((r) => r.firstExit)),
    netKill: stats(net.map((r) => r.kill)),
    netPausedFirst: stats(netPaused.map((r) => r.firstExit)),
    pausedFirst: stats(pausedRaw.map((r) => r.firstExit)),
    sdkFirst: stats(sdk.map((r) => r.firstExit)),
    sdkKill: stats(sdk.map((r) => r.kill)),
    unshare: stats(unshare),
    spawnTrue: stats(trueT),
  }
} catch (e) {
  console.error(`\nbench failed: ${e.message}`)
  if (server?.stderr) console.error(`server stderr (last lines):\n${server.stderr.split('\n').slice(-20).join('\n')}`)
  process.exitCode = 1
} finally {
  for (const s of [server, plainServer].filter(Boolean)) {
    const r = await s.stop()
    if (r.code === 0) removeDataDir(s.dataDir)
  }
}
if (!results) process.exit(1)

// ── report ──
const floor = results.unshare.p50
const row = (name, s, ratio = true) =>
  `| ${name} | ${f(s.p50)} | ${f(s.p99)} | ${f(s.mean)} | ${f(s.min)} | ${f(s.max)} | ${ratio ? `${(s.p50 / floor).toFixed(1)}×` : '–'} |`
const gitRev = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: packageRoot, encoding: 'utf8' }).stdout.trim()
const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src', 'crates', 'Cargo.toml'], { cwd: packageRoot, encoding: 'utf8' }).stdout.trim() ? ' (with uncommitted changes)' : ''
const met = results.rawFirst.p50 <= TARGET_P50_MS
const md = `## Sandbox start and kill

Generated by \`npm run bench\` (\`bench/start.mjs\`) on ${new Date().toISOString().slice(0, 10)}, commit \`${gitRev}\`${dirty}.
Machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB,
Linux ${os.release()}, Node ${process.version}; load average ${loadAtStart.toFixed(2)} when the run began. ${RUNS} measured runs per row after ${WARMUP} warm-up sandboxes;
times in milliseconds; p99 is the nearest-rank percentile (with 100 runs: the second-slowest).

### Sandbox start: \`POST /sandboxes\` → first command exited

| what | p50 | p99 | mean | min | max | p50 ÷ floor |
|---|---:|---:|---:|---:|---:|---:|
${row('**sandbank, raw HTTP**: `POST /sandboxes` → `Process/Start` `bash -l -c true` → end event', results.rawFirst)}
${row('… of which `POST /sandboxes` (201 received)', results.rawCreate)}
${row('… then a second `bash -l -c true` in the same sandbox (not part of the start time)', results.rawSecond)}
${row('sandbank, raw HTTP, without a user namespace (a second server with `--no-userns`, interleaved with the first row)', results.plainFirst)}
${row('sandbank, raw HTTP, with internet access (`allow_internet_access: true`: pasta set up before ready), back to back', results.netFirst)}
${row('sandbank, raw HTTP, loopback only, 200 ms apart (interleaved with the next row)', results.pausedFirst)}
${row('sandbank, raw HTTP, with internet access, 200 ms apart (the network made ahead of time is ready each time)', results.netPausedFirst)}
${row('sandbank via `novita-sandbox`: `Sandbox.create()` + `commands.run(\'true\')`', results.sdkFirst)}
${row('floor: `unshare -m -p -f -u -i -n --mount-proc true`', results.unshare)}
${row('harness: spawn `true` from Node', results.spawnTrue)}

Cold start (the first sandbox after the server came up, not in the rows above): ${f(results.cold.firstExit)} ms to the first
command's exit (${f(results.cold.create)} ms for \`POST /sandboxes\`), kill ${f(results.cold.kill)} ms.

Target p50 ≤ ${TARGET_P50_MS} ms: **${met ? 'met' : 'not met'}** for a loopback-only sandbox (${f(results.rawFirst.p50)} ms);
with internet access (the SDKs' default) the p50 is ${f(results.netFirst.p50)} ms back to back: **${results.netFirst.p50 <= TARGET_P50_MS ? 'met' : 'not met'}**, and
${f(results.netPausedFirst.p50)} ms with 200 ms between sandboxes: **${results.netPausedFirst.p50 <= TARGET_P50_MS ? 'met' : 'not met'}** (loopback only, the same way: ${f(results.pausedFirst.p50)} ms;
a start after an idle spell pays for waking the machine up). A sandbox with internet access joins a network
made ahead of time (its namespaces with pasta already attached: pasta's own start, about 19 ms, is off the
path; \`crates/engine/src/netpool.rs\`), and the next one is made once it has started. Back to back on two
cores, making that next network and killing the previous sandbox's pasta share the CPU with the start.

The user namespace (root inside = host uid 100000, layers through idmapped mounts; the default where the machine
supports it) against none, run for run: p50 ${f(results.rawFirst.p50)} against ${f(results.plainFirst.p50)} ms
(**${(results.rawFirst.p50 / results.plainFirst.p50).toFixed(2)}×**), kill ${f(results.rawKill.p50)} against ${f(results.plainKill.p50)} ms.

### Kill: \`DELETE /sandboxes/{id}\` → 204

| what | p50 | p99 | mean | min | max | p50 ÷ floor |
|---|---:|---:|---:|---:|---:|---:|
${row('sandbank, raw HTTP `DELETE`', results.rawKill)}
${row('sandbank, raw HTTP `DELETE`, without a user namespace', results.plainKill)}
${row('sandbank, raw HTTP `DELETE`, with internet access (pasta stopped and reaped too)', results.netKill)}
${row('sandbank via `novita-sandbox`: `sandbox.kill()`', results.sdkKill)}

A kill returns once the sandbox's processes are dead and its mounts, cgroup and directories are gone,
and, with internet access, once its pasta has been killed and reaped: that is where the extra time of that
row goes (signalling pasta earlier, in parallel with the rest of the cleanup, did not shorten it).

### Method

- One \`sandbank serve\` (the release build in \`native/sandbank\`) on \`127.0.0.1:0\` with a fresh temporary data dir;
  the client is the benchmark process itself, over HTTP/1.1 keep-alive (Node's \`fetch\`).
- **Raw HTTP rows**: the clock starts before \`POST /sandboxes {"templateID":"base","allow_internet_access":false}\`
  (or \`true\`) and stops when the
  \`Process/Start\` stream (Connect protocol, JSON, routed by the \`Novita-Sandbox-Id\` header) has delivered the
  command's \`end\` event and the end-of-stream — the same request the SDKs send for \`commands.run('true')\`:
  \`/bin/bash -l -c true\` as the default user, so the time includes a login shell. Then \`DELETE\` is timed
  separately (kill row). Sandboxes run one at a time: create, run, run again, kill, repeat. The second
  command's time is shown apart: the start time minus it is roughly what making the sandbox costs.
- **SDK row**: the same cycle through the published \`novita-sandbox\` client (its own request building and
  stream handling on top).
- **Floor**: \`unshare -m -p -f -u -i -n --mount-proc true\` (mount, PID, UTS, IPC and network namespaces and a
  fresh \`/proc\`, no filesystem work) spawned from Node with the same harness; spawning plain \`true\` shows
  the harness's own cost, which is included in every row. The ratio column divides each p50 by the floor's p50.
- ${WARMUP} warm-up sandboxes are made and thrown away before measuring; the very first sandbox is reported
  separately as the cold start. The series run back to back in one process, so they see the same machine
  state; the load average above tells whether other work shared the cores (rerun on a quiet machine to compare).
- Reproduce: \`npm run build && npm run bench\` (as root; \`node bench/start.mjs --runs 100 --no-write\` prints only).
`
console.log(md)
if (WRITE) {
  upsertSection(OUT, 'bench/start.mjs', md)
  console.error(`wrote the start/kill section of ${OUT}`)
}
