#!/usr/bin/env node
// `node bench/ab.mjs OLD_BIN [NEW_BIN]`: one build of `sandbank` against another, side by side.
//
// Starts a server from each binary (NEW_BIN defaults to this checkout's native/sandbank) and
// times, through novita-sandbox, `Sandbox.create()` + `commands.run('true')` (start) and then
// `kill()`, alternating A B A B … so that the machine's drift hits both alike. For loopback-only
// sandboxes and for sandboxes with internet access. Reports each side's p50 and the p50 of the
// pair-by-pair ratios new/old, and writes them to docs/BENCHMARKS.md (section "ab").
//
// Usage: node bench/ab.mjs OLD_BIN [NEW_BIN] [--runs 60] [--warmup 3] [--old-label TEXT] [--new-label TEXT] [--no-write]
import { join } from 'node:path'
import { Sandbox } from 'novita-sandbox'
import { packageRoot, removeDataDir, startLocalServer } from '../scripts/local-server.mjs'
import { upsertSection } from './report.mjs'
import { arg } from './common.mjs'

const positional = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !all[i - 1]?.startsWith('--'))
const [oldBin, newBin = join(packageRoot, 'native', 'sandbank')] = positional
if (!oldBin) {
  console.error('usage: node bench/ab.mjs OLD_BIN [NEW_BIN] [--runs 60] [--warmup 3] [--old-label TEXT] [--new-label TEXT] [--no-write]')
  process.exit(2)
}
const RUNS = Number(arg('runs', 60))
const WARMUP = Number(arg('warmup', 3))
const WRITE = !process.argv.includes('--no-write')
// What the report calls each side (default: the binary's path).
const OLD_LABEL = arg('old-label', oldBin)
const NEW_LABEL = arg('new-label', newBin)

const p50 = (xs) => [...xs].sort((a, b) => a - b)[Math.ceil(xs.length / 2) - 1]
const f = (x) => x.toFixed(2)

async function serverOf(bin) {
  process.env.SANDBANK_BIN = bin
  return startLocalServer({ tmpPrefix: 'sandbank-ab-' })
}

/** Start (create + first command) and kill times of one sandbox, in ms. */
async function once(server, internet) {
  const t0 = performance.now()
  const sbx = await Sandbox.create({ ...server.sdkOpts(), allowInternetAccess: internet })
  await sbx.commands.run('true')
  const t1 = performance.now()
  await sbx.kill()
  return { start: t1 - t0, kill: performance.now() - t1 }
}

const servers = { old: await serverOf(oldBin), new: await serverOf(newBin) }
const rows = []
try {
  for (const internet of [false, true]) {
    for (let i = 0; i < WARMUP; i++) {
      await once(servers.old, internet)
      await once(servers.new, internet)
    }
    const old = [], now = []
    for (let i = 0; i < RUNS; i++) {
      old.push(await once(servers.old, internet))
      now.push(await once(servers.new, internet))
    }
    for (const what of ['start', 'kill']) {
      const a = old.map((r) => r[what]), b = now.map((r) => r[what])
      const row = { sandbox: internet ? 'with internet access' : 'loopback only', what, old: p50(a), new: p50(b), ratio: p50(b.map((x, i) => x / a[i])) }
      rows.push(row)
      console.log(`${row.sandbox}, ${what}: p50 old ${f(row.old)} ms, new ${f(row.new)} ms, new/old p50 ${f(row.ratio)} (${RUNS} pairs)`)
    }
  }
} finally {
  for (const s of Object.values(servers)) {
    await s.stop()
    removeDataDir(s.dataDir)
  }
}

if (WRITE) {
  const table = rows.map((r) => `| ${r.sandbox} | ${r.what} | ${f(r.old)} | ${f(r.new)} | ${f(r.ratio)} |`).join('\n')
  upsertSection(
    join(packageRoot, 'docs', 'BENCHMARKS.md'),
    'ab',
    `## One build against another (\`node bench/ab.mjs OLD_BIN\`)

Old: ${OLD_LABEL}. New: ${NEW_LABEL}. ${RUNS} pairs after ${WARMUP} warm-up pairs per kind, A B A B …
on one machine (${new Date().toISOString().slice(0, 10)}); start is \`Sandbox.create()\` + \`commands.run('true')\`
through novita-sandbox, kill is \`kill()\`. The ratio is the median of the pair-by-pair ratios new/old.

| sandbox | | old p50 (ms) | new p50 (ms) | new/old (p50 of pairs) |
|---|---|---|---|---|
${table}`,
  )
}
