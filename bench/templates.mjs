#!/usr/bin/env node
// `npm run bench:templates`: template builds through e2b's `Template` (issue 16), one server.
// A template of STEPS steps, each writing a file and running a short python: (a) the whole build
// (`skipCache`), (b) a rebuild with only the last step changed (the others come from the cache),
// (c) a rebuild with nothing changed, rounds interleaved; and Sandbox.create → first command of the
// built template against `base`. Reports p50s and the ratios, writes its section of
// docs/BENCHMARKS.md and removes what it made.
//
// Usage: node bench/templates.mjs [--runs 5] [--steps 6] [--out docs/BENCHMARKS.md] [--no-write]
import { join } from 'node:path'
import { Sandbox, Template } from 'e2b'
import { packageRoot, removeDataDir, startLocalServer } from '../scripts/local-server.mjs'
import { upsertSection } from './report.mjs'
import { arg, percentile as p } from './common.mjs'

const RUNS = Number(arg('runs', 5))
const STEPS = Number(arg('steps', 6))
const OUT = arg('out', join(packageRoot, 'docs', 'BENCHMARKS.md'))
const WRITE = !process.argv.includes('--no-write')

/** The template, its last step's file named `last`. */
function template(last, { skipCache = false } = {}) {
  let t = Template()
  if (skipCache) t = t.skipCache()
  t = t.fromBaseImage()
  for (let i = 1; i < STEPS; i++) t = t.runCmd(`python3 -c "print(sum(range(10**6)))" > /home/user/step${i}`)
  return t.runCmd(`python3 -c "print(sum(range(10**6)))" > /home/user/${last}`)
}

const server = await startLocalServer({ tmpPrefix: 'sandbank-bench-templates-' })
const opts = server.sdkOpts({ requestTimeoutMs: 120_000 })
const timed = async (f) => {
  const t0 = performance.now()
  await f()
  return performance.now() - t0
}
/** The build's own time, from the server's log line `Template built in S s` (the SDK's wall time
 * also holds its status polls, every 200 ms). */
async function built(template) {
  let seconds
  await Template.build(template, 'bench-tpl', {
    ...opts,
    onBuildLogs: (l) => {
      const m = /^Template built in ([0-9.]+) s$/.exec(l.message)
      if (m) seconds = Number(m[1])
    },
  })
  if (seconds === undefined) throw new Error('no "Template built in" line in the build log')
  return seconds * 1000
}
const firstCommand = async (name) =>
  timed(async () => {
    const sbx = await Sandbox.create(name, opts)
    await sbx.commands.run('true')
    await sbx.kill()
  })

const whole = []
const lastChanged = []
const unchanged = []
const fromTemplate = []
const fromBase = []
try {
  for (let r = 0; r < RUNS; r++) {
    whole.push(await built(template('last-0', { skipCache: true })))
    lastChanged.push(await built(template(`last-${r + 1}`)))
    unchanged.push(await built(template(`last-${r + 1}`)))
    for (let i = 0; i < 3; i++) {
      fromTemplate.push(await firstCommand('bench-tpl'))
      fromBase.push(await firstCommand('base'))
    }
    console.error(`round ${r + 1}/${RUNS}: whole ${whole.at(-1).toFixed(0)} ms, last step changed ${lastChanged.at(-1).toFixed(0)} ms, nothing changed ${unchanged.at(-1).toFixed(0)} ms`)
  }
} finally {
  await server.stop()
  removeDataDir(server.dataDir)
}

const f = (x) => x.toFixed(0)
const lines = [
  '## Template builds (issue 16)',
  '',
  `Template builds through e2b's \`Template\` (\`node bench/templates.mjs --runs ${RUNS} --steps ${STEPS}\`; ${new Date().toISOString().slice(0, 10)}; one server, rounds interleaved; p50 of ${RUNS} runs). A template of ${STEPS} \`runCmd\` steps, each a short python writing a file. The time is the server's, from the build's start to its end (its log's \`Template built in\` line; the SDK adds up to 200 ms of status polling):`,
  '',
  '| | p50 | vs whole build |',
  '|---|---|---|',
  `| whole build (\`skipCache\`) | ${f(p(whole, 50))} ms | 1.00× |`,
  `| rebuild, only the last step changed | ${f(p(lastChanged, 50))} ms | ${(p(lastChanged, 50) / p(whole, 50)).toFixed(2)}× |`,
  `| rebuild, nothing changed | ${f(p(unchanged, 50))} ms | ${(p(unchanged, 50) / p(whole, 50)).toFixed(2)}× |`,
  '',
  `Sandbox.create → first command exited, p50 of ${fromTemplate.length}: from the built template ${f(p(fromTemplate, 50))} ms, from \`base\` ${f(p(fromBase, 50))} ms (${(p(fromTemplate, 50) / p(fromBase, 50)).toFixed(2)}×: a template is a snapshot chain of its steps' layers over the base).`,
]
console.log(lines.join('\n'))
if (WRITE) upsertSection(OUT, 'bench/templates.mjs', lines.join('\n'))
