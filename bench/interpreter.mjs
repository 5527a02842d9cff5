#!/usr/bin/env node
// `npm run bench:interpreter`: the code interpreter (issue 17) on the local engine, through
// sandbank/code-interpreter and, side by side on the same server, the published
// @e2b/code-interpreter:
//   cold      Sandbox.create() -> first runCode('1+1') answered (the template's snapshot brings
//             the server and its default kernel up, so no kernel starts here)
//   snapshot  Sandbox.create(<snapshot of an interpreter that set x>) -> runCode('x+1') answered
//   warm      runCode('x+1') on a running interpreter, round trip
// Rounds alternate between the SDKs. The template is built first if it is not (not timed), on
// the data dir the tests keep it in (scripts/interpreter-template.mjs). Writes its section of
// docs/BENCHMARKS.md.
//
// Usage: node bench/interpreter.mjs [--rounds 20] [--runs 300] [--out docs/BENCHMARKS.md] [--no-write]
import { join } from 'node:path'
import * as e2bci from '@e2b/code-interpreter'
import { Sandbox } from 'sandbank/code-interpreter'
import { packageRoot, startLocalServer } from '../scripts/local-server.mjs'
import { interpreterDataDir, prepare } from '../scripts/interpreter-template.mjs'
import { upsertSection } from './report.mjs'
import { arg, percentile as p } from './common.mjs'

const ROUNDS = Number(arg('rounds', 20))
const RUNS = Number(arg('runs', 300))
const OUT = arg('out', join(packageRoot, 'docs', 'BENCHMARKS.md'))
const WRITE = !process.argv.includes('--no-write')

await prepare()
const server = await startLocalServer({ dataDir: interpreterDataDir() })
const opts = server.sdkOpts()
const sdks = { sandbank: Sandbox, e2b: e2bci.Sandbox }
const times = Object.fromEntries(Object.keys(sdks).map((k) => [k, { cold: [], snapshot: [], warm: [] }]))
const alive = new Set()

async function timed(fn) {
  const t0 = performance.now()
  const value = await fn()
  return [performance.now() - t0, value]
}

/** Creates from `template` and runs `code`, which must print `expected`; the time of both. */
async function startAndRun(Cls, template, code, expected) {
  const [ms, sbx] = await timed(async () => {
    const sbx = template ? await Cls.create(template, opts) : await Cls.create(opts)
    alive.add(sbx)
    const e = await sbx.runCode(code)
    if (e.text !== expected) throw new Error(`${code} gave ${JSON.stringify(e.text)} (${JSON.stringify(e.error)}), not ${expected}`)
    return sbx
  })
  await sbx.kill()
  alive.delete(sbx)
  return ms
}

let snapshotId
try {
  // The snapshot: an interpreter whose kernel holds x.
  const origin = await Sandbox.create(opts)
  alive.add(origin)
  await origin.runCode('x = 41')
  snapshotId = (await origin.createSnapshot()).snapshotId
  // Warm-up: one of each, not counted.
  for (const Cls of Object.values(sdks)) {
    await startAndRun(Cls, undefined, '1+1', '2')
    await startAndRun(Cls, snapshotId, 'x+1', '42')
  }
  for (let i = 0; i < ROUNDS; i++) {
    for (const [name, Cls] of Object.entries(sdks)) {
      times[name].cold.push(await startAndRun(Cls, undefined, '1+1', '2'))
      times[name].snapshot.push(await startAndRun(Cls, snapshotId, 'x+1', '42'))
    }
  }
  const warm = { sandbank: origin, e2b: await e2bci.Sandbox.connect(origin.sandboxId, opts) }
  for (const sbx of Object.values(warm)) for (let i = 0; i < 20; i++) await sbx.runCode('x+1')
  for (let i = 0; i < RUNS; i++) {
    for (const [name, sbx] of Object.entries(warm)) {
      const [ms, e] = await timed(() => sbx.runCode('x+1'))
      if (e.text !== '42') throw new Error(`x+1 gave ${JSON.stringify(e.text)}`)
      times[name].warm.push(ms)
    }
  }
} finally {
  for (const sbx of alive) await sbx.kill().catch(() => {})
  if (snapshotId) await Sandbox.deleteSnapshot(snapshotId, opts).catch(() => {})
  await server.stop()
}

const ms = (x) => `${x < 10 ? x.toFixed(2) : x.toFixed(0)} ms`
const row = (label, key, target) => {
  const [s, e] = [times.sandbank[key], times.e2b[key]]
  return `| ${label} | ${ms(p(s, 50))} / ${ms(p(s, 99))} | ${ms(p(e, 50))} / ${ms(p(e, 99))} | ${(p(s, 50) / p(e, 50)).toFixed(2)} | ${target} |`
}
const lines = [
  '## Code interpreter (issue 17)',
  '',
  `\`node bench/interpreter.mjs --rounds ${ROUNDS} --runs ${RUNS}\` (${new Date().toISOString().slice(0, 10)}; one server; the built-in template \`code-interpreter-v1\` built beforehand, its sandboxes started from its memory snapshot). sandbank/code-interpreter and the published @e2b/code-interpreter take turns on the same server; cold and snapshot are ${ROUNDS} rounds each, warm ${RUNS} calls each.`,
  '',
  '| | sandbank p50 / p99 | @e2b/code-interpreter p50 / p99 | sandbank ÷ e2b (p50) | target (p50) |',
  '|---|---|---|---|---|',
  row("`Sandbox.create()` → first `runCode('1+1')` answered", 'cold', '≤ 1 s'),
  row("`Sandbox.create(snapshot of a warm interpreter)` → `runCode('x+1')`", 'snapshot', '≤ 300 ms'),
  row("`runCode('x+1')` on a warm kernel", 'warm', '≤ 15 ms'),
  '',
  'HTTP through the port forwarder is measured by `bench/ports.mjs` (its own section).',
]
console.log(lines.join('\n'))
if (WRITE) upsertSection(OUT, 'bench/interpreter.mjs', lines.join('\n'))
