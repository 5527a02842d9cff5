#!/usr/bin/env node
// `npm run bench:snapshot-list`: listing snapshots with a metadata filter over 10,000 of them
// (issue 18: p50 ≤ 20 ms per page). The snapshots are real: taken of running sandboxes through
// `POST /sandboxes/{id}/snapshots` (files only, with labels), one layer each, on a fresh
// `sandbank serve`. Then pages of 100 are listed through the `sandbank` SDK's paginator and
// through the raw API, with filters that match many, few, one, and none of them.
// Writes its section of docs/BENCHMARKS.md and removes what it made.
//
// Usage: node bench/snapshot-list.mjs [--snapshots 10000] [--sandboxes 8] [--runs 200]
//                                     [--store auto|btrfs|copy] [--out docs/BENCHMARKS.md] [--no-write]
import { execFileSync } from 'node:child_process'
import os from 'node:os'
import { join } from 'node:path'
import { Sandbox } from 'sandbank'
import { packageRoot, removeDataDir, startLocalServer } from '../scripts/local-server.mjs'
import { upsertSection } from './report.mjs'
import { arg, percentile as p } from './common.mjs'

const N = Number(arg('snapshots', 10_000))
const SANDBOXES = Number(arg('sandboxes', 8))
const RUNS = Number(arg('runs', 200))
const STORE = arg('store', 'auto')
const OUT = arg('out', join(packageRoot, 'docs', 'BENCHMARKS.md'))
const WRITE = !process.argv.includes('--no-write')
const f = (ms) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1))

/** Snapshot `i`'s labels: `team` one of 10 (1,000 each), `env` one of 4, `shard` one of 100
 * (100 each), a `tag` only on every 1,000th, and its own `n`. */
const labels = (i) => ({
  team: `team-${i % 10}`,
  env: ['prod', 'staging', 'dev', 'test'][i % 4],
  shard: `s${i % 100}`,
  n: String(i),
  ...(i % 1000 === 7 ? { tag: 'rare' } : {}),
})

const server = await startLocalServer({ tmpPrefix: 'sandbank-bench-snaplist-', extraArgs: ['--store', STORE] })
const conn = server.sdkOpts({ requestTimeoutMs: 120_000 })
const sandboxes = []
const createMs = []
let store = STORE
const results = []
try {
  // What `auto` chose: it says so when the btrfs store cannot be used.
  if (STORE === 'auto') store = /btrfs layer store cannot be used/.test(server.stderr) ? 'copy' : 'btrfs'
  for (let i = 0; i < SANDBOXES; i++) sandboxes.push(await Sandbox.create({ ...conn, timeoutMs: 3_600_000 }))
  // Each sandbox wrote a little, so that each snapshot is a layer of its own with a file in it.
  await Promise.all(sandboxes.map((s, i) => s.commands.run(`echo ${i} > /home/user/who`)))
  const t0 = performance.now()
  let next = 0
  await Promise.all(
    sandboxes.map(async (sbx) => {
      while (next < N) {
        const i = next++
        const t = performance.now()
        const r = await server.fetch(`/sandboxes/${sbx.sandboxId}/snapshots`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ mode: 'filesystem', metadata: labels(i) }),
        })
        if (r.status !== 201) throw new Error(`snapshot ${i}: ${r.status} ${await r.text()}`)
        await r.arrayBuffer()
        createMs.push(performance.now() - t)
        if (i % 500 === 0) process.stderr.write(`${i} `)
      }
    }),
  )
  const createTotal = performance.now() - t0
  process.stderr.write('\n')

  /** Times `RUNS` first pages (and, when there are more, the following ones in turn). */
  const cases = [
    ['no filter', {}],
    ['`team=team-3` (1 in 10)', { team: 'team-3' }],
    ['`team=team-3` + `env=staging` (1 in 20)', { team: 'team-3', env: 'staging' }],
    ['`shard=s42` (1 in 100)', { shard: 's42' }],
    ['`tag=rare` (1 in 1,000)', { tag: 'rare' }],
    ['`n=4321` (one)', { n: String(Math.min(4321, N - 1)) }],
    ['`team=team-3` + `shard=s42` (none)', { team: 'team-3', shard: 's42' }],
  ].map(([label, metadata]) => {
    // What should be listed: every snapshot whose labels have all the pairs.
    const expect = Array.from({ length: N }, (_, i) => labels(i)).filter((l) => Object.entries(metadata).every(([k, v]) => l[k] === v)).length
    return [label, metadata, expect]
  })
  for (const [label, metadata, expect] of cases) {
    const sdkFirst = []
    const sdkNext = []
    const raw = []
    let count = 0
    // Warm-up: one full pass, counting what matches.
    for (const pg = Sandbox.listSnapshots({ ...conn, metadata, limit: 100 }); pg.hasNext; ) count += (await pg.nextItems()).length
    if (count !== expect) throw new Error(`${label}: ${count} listed, expected ${expect}`)
    for (let r = 0; r < RUNS; r++) {
      const pg = Sandbox.listSnapshots({ ...conn, metadata, limit: 100 })
      let t = performance.now()
      await pg.nextItems()
      sdkFirst.push(performance.now() - t)
      if (pg.hasNext && r < 50) {
        // Further pages, a few per run: the keyset cursor.
        for (let k = 0; k < 3 && pg.hasNext; k++) {
          t = performance.now()
          await pg.nextItems()
          sdkNext.push(performance.now() - t)
        }
      }
      const q = Object.entries(metadata).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')
      t = performance.now()
      const res = await server.fetch(`/snapshots?limit=100${q ? `&metadata=${encodeURIComponent(q)}` : ''}`)
      await res.json()
      raw.push(performance.now() - t)
    }
    results.push({ label, count, sdkFirst, sdkNext, raw })
    process.stderr.write('.')
  }
  process.stderr.write('\n')

  const commit = execFileSync('git', ['log', '-1', '--format=%h'], { cwd: packageRoot }).toString().trim()
  const rows = results.map(
    (r) =>
      `| ${r.label} | ${r.count} | ${f(p(r.sdkFirst, 50))} | ${f(p(r.sdkFirst, 99))} | ${r.sdkNext.length ? f(p(r.sdkNext, 50)) : '–'} | ${f(p(r.raw, 50))} | ${f(p(r.raw, 99))} |`,
  )
  const worst = Math.max(...results.map((r) => p(r.sdkFirst, 50)), ...results.filter((r) => r.sdkNext.length).map((r) => p(r.sdkNext, 50)))
  const section = `## Listing snapshots with a metadata filter (issue 18, \`npm run bench:snapshot-list\`)

Generated by \`bench/snapshot-list.mjs\` on ${new Date().toISOString().slice(0, 10)}, commit \`${commit}\`; ${os.cpus().length} cores,
Node ${process.version}, load average ${os.loadavg()[0].toFixed(2)} at the end; the ${store} layer store. ${N.toLocaleString('en')} real
snapshots; milliseconds per page of 100.

| filter | listed | SDK first page p50 | p99 | SDK next pages p50 | raw API p50 | p99 |
|---|---:|---:|---:|---:|---:|---:|
${rows.join('\n')}

Target: p50 ≤ 20 ms per page — worst p50 here ${f(worst)} ms: ${worst <= 20 ? 'met' : '**not met**'}.

Method: one \`sandbank serve\` (release build, fresh data directory, \`--store ${STORE}\`). ${SANDBOXES} sandboxes (each wrote one
small file) are snapshotted ${N.toLocaleString('en')} times in all, ${SANDBOXES} requests in flight, each a real files-only snapshot
(\`POST /sandboxes/{id}/snapshots\`, \`mode: "filesystem"\`: a layer published and a catalog row committed) with labels:
\`team\` one of 10, \`env\` one of 4, \`shard\` one of 100, \`n\` its own number, and \`tag=rare\` on every 1,000th. Taking them
took ${f(createTotal / 1000)} s (one: p50 ${f(p(createMs, 50))} ms, p99 ${f(p(createMs, 99))} ms, with ${SANDBOXES} in flight). Each filter is then
listed once in full (the count checked), and ${RUNS} times: the first page through the \`sandbank\` SDK
(\`Sandbox.listSnapshots({ metadata, limit: 100 }).nextItems()\`, a new paginator each time), in the first 50 runs up to
three following pages through the same paginator (the \`nextToken\` cursor), and the first page through the raw API
(\`GET /snapshots?limit=100&metadata=…\` with \`fetch\`). How the server finds them (\`crates/engine/src/store.rs\`): the labels
are a table of their own, one row per pair, indexed by key, value and snapshot; pages are newest first by a keyset
cursor. The rarest pair of the filter is counted from that index: when it is rare, the snapshots that have it are read
through it and sorted; when it is common, the snapshots are walked newest first (the time index), each checked with an
index probe per pair, until the page is full.
`
  console.log(section)
  if (WRITE) upsertSection(OUT, 'bench/snapshot-list.mjs', section)
} finally {
  for (const s of sandboxes) await s.kill().catch(() => {})
  await server.stop()
  removeDataDir(server.dataDir)
}
