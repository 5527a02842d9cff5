#!/usr/bin/env node
// `npm run bench:store`: the two layer stores side by side (issue 15), one server each, rounds
// interleaved. In each store, an empty sandbox and one holding 1 GB (one file) and 10,000 small
// files, as a modest node_modules would:
//
//   (a) createSnapshot (files only: what the store changes) of each: the whole call, and how long
//       the origin was frozen (the server's `frozen_ms`);
//   (b) Sandbox.create → first command exited, fresh and from a snapshot of the loaded sandbox;
//   (c) for reference, `cp -a` of the same data on the host (the data directories' filesystem);
//   (d) once, after the rounds: 100 sandboxes from one snapshot of the loaded sandbox, all running.
// Writes its section of docs/BENCHMARKS.md and removes what it made.
//
// Usage: node bench/store.mjs [--runs 5] [--many 100] [--out docs/BENCHMARKS.md] [--no-write]
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { Sandbox } from 'e2b'
import { packageRoot, removeDataDir, startLocalServer } from '../scripts/local-server.mjs'
import { upsertSection } from './report.mjs'
import { arg, frozenMsIn, percentile as p } from './common.mjs'

const RUNS = Number(arg('runs', 5))
const MANY = Number(arg('many', 100))
const OUT = arg('out', join(packageRoot, 'docs', 'BENCHMARKS.md'))
const WRITE = !process.argv.includes('--no-write')
const STORES = ['copy', 'btrfs']
/** The loaded sandbox's data, written into `dir`: a 1 GB file and 10,000 small ones. */
const load = (dir) => `mkdir -p ${dir}/node_modules && head -c 1073741824 /dev/urandom > ${dir}/big && cd ${dir}/node_modules && for i in $(seq 1 10000); do echo "module $i" > m$i.js; done`

const f = (ms) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1))

/** A server on `store`, with the `frozen_ms` its log says after each snapshot. */
async function serverOn(store) {
  const frozen = []
  const server = await startLocalServer({
    tmpPrefix: `sandbank-bench-store-${store}-`,
    extraArgs: ['--store', store],
    onStderr: (d) => frozen.push(...frozenMsIn(d)),
  })
  return { store, server, frozen, opts: server.sdkOpts({ requestTimeoutMs: 300_000 }) }
}

const results = Object.fromEntries(STORES.map((s) => [s, { empty: [], loaded: [], emptyFrozen: [], loadedFrozen: [], start: [], fromSnap: [], many: [] }]))
const cpA = []
const sides = []
// The same data on the host, for `cp -a` (in the temporary directory the data directories are in).
const hostData = mkdtempSync(join(os.tmpdir(), 'sandbank-bench-store-cp-'))
try {
  execFileSync('sh', ['-c', load(`${hostData}/src`)])
  execFileSync('sync')
  for (const store of STORES) sides.push(await serverOn(store))
  for (const side of sides) {
    side.empty = await Sandbox.create({ ...side.opts, timeoutMs: 3_600_000 })
    side.loaded = await Sandbox.create({ ...side.opts, timeoutMs: 3_600_000 })
    await side.loaded.commands.run(load('/home/user'), { timeoutMs: 600_000 })
    await side.loaded.commands.run('sync')
  }
  const snapshot = async (side, sbx) => {
    const before = side.frozen.length
    const t = performance.now()
    const r = await side.server.fetch(`/sandboxes/${sbx.sandboxId}/snapshots`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"mode":"filesystem"}',
    })
    const ms = performance.now() - t
    const body = await r.json()
    if (r.status !== 201) throw new Error(`snapshot on ${side.store}: ${r.status} ${JSON.stringify(body)}`)
    await new Promise((r) => setTimeout(r, 20)) // the log line
    return { ms, frozen: side.frozen.length > before ? side.frozen.at(-1) : NaN, id: body.snapshotID }
  }
  const firstCommand = async (side, template) => {
    const t = performance.now()
    const s = template ? await Sandbox.create(template, side.opts) : await Sandbox.create(side.opts)
    await s.commands.run('true')
    const ms = performance.now() - t
    await s.kill()
    return ms
  }
  for (let round = 0; round < RUNS; round++) {
    const order = round % 2 ? [...sides].reverse() : sides
    for (const side of order) {
      const r = results[side.store]
      const e = await snapshot(side, side.empty)
      const l = await snapshot(side, side.loaded)
      r.empty.push(e.ms)
      r.emptyFrozen.push(e.frozen)
      r.loaded.push(l.ms)
      r.loadedFrozen.push(l.frozen)
      r.start.push(await firstCommand(side, null))
      r.fromSnap.push(await firstCommand(side, l.id))
      for (const id of [e.id, l.id]) await side.server.fetch(`/templates/${encodeURIComponent(id)}`, { method: 'DELETE' })
    }
    const t = performance.now()
    execFileSync('cp', ['-a', `${hostData}/src`, `${hostData}/dst`])
    cpA.push(performance.now() - t)
    rmSync(`${hostData}/dst`, { recursive: true })
    process.stderr.write('.')
  }
  // (d) Many sandboxes from one snapshot, all running at once; four starts in flight.
  for (const side of sides) {
    const { id } = await snapshot(side, side.loaded)
    const running = []
    const t = performance.now()
    let next = 0
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < MANY) {
          next++
          const s0 = performance.now()
          const s = await Sandbox.create(id, { ...side.opts, timeoutMs: 600_000 })
          running.push(s)
          await s.commands.run('true')
          results[side.store].many.push(performance.now() - s0)
        }
      }),
    )
    results[side.store].manyTotal = performance.now() - t
    for (const s of running) await s.kill()
    await side.server.fetch(`/templates/${encodeURIComponent(id)}`, { method: 'DELETE' })
  }
} finally {
  rmSync(hostData, { recursive: true, force: true })
  for (const side of sides) {
    for (const s of [side.empty, side.loaded]) if (s) await s.kill().catch(() => {})
    await side.server.stop()
    removeDataDir(side.server.dataDir)
  }
}
process.stderr.write('\n')

const [c, b] = STORES.map((s) => results[s])
const row = (label, key, target = '') =>
  `| ${label} | ${f(p(c[key], 50))} | ${f(p(b[key], 50))} | ${f(p(b[key], 99))} | ${(p(b[key], 50) / p(c[key], 50)).toFixed(2)}× | ${target} |`
const met = (ok) => (ok ? 'met' : '**not met**')
const loadedOverEmpty = p(b.loaded, 50) / p(b.empty, 50)
const commit = execFileSync('git', ['log', '-1', '--format=%h'], { cwd: packageRoot }).toString().trim()
const section = `## Layer stores: copy and btrfs (\`npm run bench\`, \`npm run bench:store\`)

Generated by \`bench/store.mjs\` on ${new Date().toISOString().slice(0, 10)}, commit \`${commit}\`; ${os.cpus().length} cores,
Node ${process.version}, load average ${os.loadavg()[0].toFixed(2)} at the end. ${RUNS} rounds, the two servers in turn (the
order alternating); milliseconds.

| step | copy p50 | btrfs p50 | btrfs p99 | btrfs ÷ copy | target (issue 15) |
|---|---:|---:|---:|---:|---|
${row('createSnapshot, empty sandbox', 'empty')}
${row('createSnapshot, 1 GB + 10,000 files', 'loaded', `btrfs ≤ 4× its empty one: ${loadedOverEmpty.toFixed(2)}×, ${met(loadedOverEmpty <= 4)}`)}
${row('origin frozen, empty', 'emptyFrozen')}
${row('origin frozen, 1 GB + 10,000 files', 'loadedFrozen', `≤ 20 ms: ${met(p(b.loadedFrozen, 50) <= 20)}`)}
${row('create → first command', 'start', 'no worse than copy')}
${row('create from the loaded snapshot → first command', 'fromSnap', 'no worse than copy')}
| \`cp -a\` of the same data on the host (reference) | ${f(p(cpA, 50))} | | | | |
${row(`${MANY} sandboxes from one snapshot, all running: create → first command, 4 at a time`, 'many', 'no worse than copy')}
| the same: all ${MANY} running, from the first create | ${f(c.manyTotal)} | ${f(b.manyTotal)} | | ${(b.manyTotal / c.manyTotal).toFixed(2)}× | no worse than copy |

Method: two \`sandbank serve\` (release build, fresh data directories), one with \`--store copy\`, one with \`--store
btrfs\` (here the data directory is ext4: the store is a sparse image on a loop device; every sandbox has the default
10 GB disk limit, a quota group); the client is the published
\`e2b\` SDK. In each, one sandbox stays empty and one holds a 1 GB file of random bytes and 10,000 small files (written
once, then \`sync\`). A round takes a files-only snapshot (\`POST /sandboxes/{id}/snapshots\` with \`mode: "filesystem"\`)
of each, starts a sandbox (\`Sandbox.create\`, then \`commands.run('true')\`) fresh and from the loaded snapshot, and
deletes the snapshots, then times \`cp -a\` of the same data on the host. "Origin frozen" is the server's \`frozen_ms\`.
After the rounds, each server starts ${MANY} sandboxes from a snapshot of the loaded sandbox, four starts in flight,
each running \`true\` and staying up until all ${MANY} run; then they are killed.
`
console.log(section)
if (WRITE) upsertSection(OUT, 'bench/store.mjs', section)
