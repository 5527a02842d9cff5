#!/usr/bin/env node
// `npm run bench:fork`: snapshots with memory, and fork, on the local engine (issue 14), beside
// the same steps with files only, interleaved round by round, on one server. The origin runs a
// Python process holding ~100 MB resident (and a counter on loopback, which every copy must answer
// with the origin's count: the numbers are of copies that work).
//
//   (a) createSnapshot, `mode: "full"` and `"filesystem"`: the whole call, and how long the origin
//       was frozen (the server's `frozen_ms`);
//   (b) Sandbox.create(snapshot) → first command exited, from each kind;
//   (c) sandbox.fork({ count: 10 }) → all ten running (the call returns once they are).
// Writes its section of docs/BENCHMARKS.md and removes what it made.
//
// Usage: node bench/fork.mjs [--runs 10] [--out docs/BENCHMARKS.md] [--no-write]
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { Sandbox } from 'e2b'
import { packageRoot, removeDataDir, startLocalServer } from '../scripts/local-server.mjs'
import { upsertSection } from './report.mjs'
import { arg, frozenMsIn, percentile as p } from './common.mjs'

const RUNS = Number(arg('runs', 10))
const OUT = arg('out', join(packageRoot, 'docs', 'BENCHMARKS.md'))
const WRITE = !process.argv.includes('--no-write')
const FORKS = 10

const f = (ms) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1))

const PROGRAM = readFileSync(join(packageRoot, '__test__', 'fixtures', 'counter.py'), 'utf8')
const FETCH = `python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8000").read().decode())'`

const frozen = []
const server = await startLocalServer({
  tmpPrefix: 'sandbank-bench-fork-',
  onStderr: (d) => frozen.push(...frozenMsIn(d)),
})
const opts = server.sdkOpts({ requestTimeoutMs: 120_000 })
const results = { fullSnap: [], fsSnap: [], fullFrozen: [], fsFrozen: [], fromFull: [], fromFs: [], fork: [] }
let origin
try {
  origin = await Sandbox.create({ ...opts, timeoutMs: 3_600_000 })
  await origin.files.write('/home/user/ballast.py', PROGRAM)
  await origin.commands.run('BALLAST_MB=100 nohup python3 /home/user/ballast.py >/dev/null 2>&1 &')
  for (let i = 0; ; i++) {
    const r = await origin.commands.run(`${FETCH} 2>/dev/null || true`)
    if (r.stdout.trim()) break
    if (i > 100) throw new Error('the ballast server did not come up')
    await new Promise((r) => setTimeout(r, 100))
  }
  const snapshot = async (mode) => {
    const before = frozen.length
    const t = performance.now()
    const r = await server.fetch(`/sandboxes/${origin.sandboxId}/snapshots`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ mode }),
    })
    const ms = performance.now() - t
    const body = await r.json()
    if (r.status !== 201) throw new Error(`snapshot ${mode}: ${r.status} ${JSON.stringify(body)}`)
    await new Promise((r) => setTimeout(r, 20)) // the log line
    return { ms, frozen: frozen.length > before ? frozen.at(-1) : NaN, id: body.snapshotID }
  }
  // With `counter`, the copy must answer with the origin's counter (a full snapshot's).
  const startFrom = async (id, counter) => {
    const t = performance.now()
    const s = await Sandbox.create(id, opts)
    await s.commands.run('true')
    const ms = performance.now() - t
    const count = counter ? Number((await s.commands.run(FETCH)).stdout.trim()) : NaN
    await s.kill()
    return { ms, count }
  }
  for (let round = 0; round < RUNS; round++) {
    const order = round % 2 ? ['filesystem', 'full'] : ['full', 'filesystem']
    const snaps = {}
    for (const mode of order) {
      const s = await snapshot(mode)
      snaps[mode] = s.id
      results[mode === 'full' ? 'fullSnap' : 'fsSnap'].push(s.ms)
      results[mode === 'full' ? 'fullFrozen' : 'fsFrozen'].push(s.frozen)
    }
    const full = await startFrom(snaps.full, true)
    if (!(full.count > 0)) throw new Error('a copy from the full snapshot has no counter')
    results.fromFull.push(full.ms)
    results.fromFs.push((await startFrom(snaps.filesystem, false)).ms)
    const t = performance.now()
    const forks = await origin.fork({ count: FORKS, timeoutMs: 120_000 })
    results.fork.push(performance.now() - t)
    const failed = forks.filter((x) => x instanceof Error)
    if (failed.length) throw new Error(`fork: ${failed.map(String).join('; ')}`)
    await Promise.all(forks.map((x) => x.kill()))
    for (const id of Object.values(snaps)) await server.fetch(`/templates/${encodeURIComponent(id)}`, { method: 'DELETE' })
    process.stderr.write('.')
  }
} finally {
  if (origin) await origin.kill().catch(() => {})
  await server.stop()
  removeDataDir(server.dataDir)
}
process.stderr.write('\n')

const row = (label, full, fs, target) => {
  const ratio = fs ? p(full, 50) / p(fs, 50) : NaN
  return `| ${label} | ${f(p(full, 50))} | ${f(p(full, 99))} | ${fs ? f(p(fs, 50)) : '–'} | ${fs ? `${ratio.toFixed(2)}×` : '–'} | ${target} |`
}
const t = (value, max) => (value <= max ? `≤ ${max}: met` : `≤ ${max}: **not met**`)
const commit = execFileSync('git', ['log', '-1', '--format=%h'], { cwd: packageRoot }).toString().trim()
const section = `## Snapshots with memory and fork (\`npm run bench:fork\`)

Generated by \`bench/fork.mjs\` on ${new Date().toISOString().slice(0, 10)}, commit \`${commit}\`; ${os.cpus().length} cores,
Node ${process.version}, load average ${os.loadavg()[0].toFixed(2)} at the end. ${RUNS} rounds, each with both kinds in turn
(the order alternating); milliseconds.

| step | full p50 | full p99 | files only p50 | full ÷ files | target (p50) |
|---|---:|---:|---:|---:|---|
${row('createSnapshot, whole call', results.fullSnap, results.fsSnap, t(p(results.fullSnap, 50), 500))}
${row('origin frozen', results.fullFrozen, results.fsFrozen, t(p(results.fullFrozen, 50), 250))}
${row('create from it → first command', results.fromFull, results.fromFs, t(p(results.fromFull, 50), 200))}
${row(`fork({count: ${FORKS}}) → all running`, results.fork, null, t(p(results.fork, 50), 2000))}

Method: one \`sandbank serve\` (release build, fresh data directory); the origin runs a Python HTTP server holding a
100 MB bytearray (resident) and a counter in memory; the client is the published \`e2b\` SDK. A round takes a full
and a files-only snapshot of the origin (\`POST /sandboxes/{id}/snapshots\` with \`mode\`), starts a sandbox from each
(\`Sandbox.create(id)\`, then \`commands.run('true')\`; the copy from the full snapshot is checked to answer with the
origin's counter), forks the origin ${FORKS} times at once, then kills the copies and deletes the snapshots. "Origin
frozen" is the server's \`frozen_ms\` (the cgroup frozen for the dump and the copy of the upper layer).
`
console.log(section)
if (WRITE) upsertSection(OUT, 'bench/fork.mjs', section)
