#!/usr/bin/env node
// `npm run bench` (after bench/start.mjs): snapshots on the local engine.
//
//   (a) start from a snapshot → first command exited, for snapshots holding 1 MB and 1 GB of new
//       data (and `base` beside them), interleaved run by run;
//   (b) snapshot time against the size of the new data (1 MB, 100 MB, 1 GB), beside `cp -a` of
//       the same directory (the sandbox's upper layer) on the same disk, and `cp -a` + `sync -f`
//       (a snapshot ends with syncfs);
//   (c) 100 sandboxes started from one snapshot, concurrently, wall time.
// Writes its own section of docs/BENCHMARKS.md (between `<!-- BEGIN bench/snapshot.mjs -->`
// markers; bench/start.mjs owns its own section) and removes every byte it made.
//
// Usage: node bench/snapshot.mjs [--runs 40] [--out docs/BENCHMARKS.md] [--no-write]
import { spawnSync } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { packageRoot, removeDataDir, startLocalServer } from '../scripts/local-server.mjs'
import { upsertSection } from './report.mjs'
import { arg } from './common.mjs'

const RUNS = Number(arg('runs', 40))
const OUT = arg('out', join(packageRoot, 'docs', 'BENCHMARKS.md'))
const WRITE = !process.argv.includes('--no-write')
const MB = 1 << 20
const SIZES = [
  { label: '1 MB', bytes: MB, reps: 10 },
  { label: '100 MB', bytes: 100 * MB, reps: 6 },
  { label: '1 GB', bytes: 1024 * MB, reps: 4 },
]
const FLEET = 100
const FLEET_CONCURRENCY = [8, 100]

// ── statistics ──
function stats(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] // nearest rank
  return { n: s.length, p50: q(50), p99: q(99), mean: s.reduce((a, b) => a + b, 0) / s.length, min: s[0], max: s.at(-1) }
}
const f = (ms) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(2))

// ── the API, raw ──
let server
async function api(method, path, body) {
  const r = await server.fetch(path, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : null }
}
function envelope(obj) {
  const body = Buffer.from(JSON.stringify(obj))
  const head = Buffer.alloc(5)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}
/** Each sandbox's envd access token, from its create response. */
const tokens = new Map()
/** Runs `bash -l -c cmd` as the SDKs do (Process/Start, Connect JSON); returns {exitCode, stdout}. */
async function runCommand(sandboxID, cmd, user) {
  const res = await fetch(`${server.url}/process.Process/Start`, {
    method: 'POST',
    headers: {
      'content-type': 'application/connect+json',
      'connect-protocol-version': '1',
      'novita-sandbox-id': sandboxID,
      'x-access-token': tokens.get(sandboxID),
      'novita-sandbox-port': '49983',
      ...(user ? { authorization: `Basic ${Buffer.from(`${user}:`).toString('base64')}` } : {}),
    },
    body: envelope({ process: { cmd: '/bin/bash', args: ['-l', '-c', cmd], envs: {} }, stdin: false }),
  })
  const buf = Buffer.from(await res.arrayBuffer())
  if (res.status !== 200) throw new Error(`Process/Start → ${res.status}: ${buf}`)
  let end
  let stdout = ''
  for (let off = 0; off + 5 <= buf.length; ) {
    const flags = buf[off]
    const len = buf.readUInt32BE(off + 1)
    const msg = JSON.parse(buf.subarray(off + 5, off + 5 + len).toString() || '{}')
    off += 5 + len
    if (flags & 2) {
      if (msg.error) throw new Error(`Process/Start: ${msg.error.code}: ${msg.error.message}`)
    } else if (msg.event?.data?.stdout) stdout += Buffer.from(msg.event.data.stdout, 'base64').toString()
    else if (msg.event?.end) end = msg.event.end
  }
  if (!end) throw new Error('Process/Start: no end event')
  return { exitCode: end.exitCode ?? 0, stdout }
}
async function create(templateID) {
  // Loopback only: this measures layers, not the network helper (bench/start.mjs has both).
  const r = await api('POST', '/sandboxes', { templateID, timeout: 600, allow_internet_access: false })
  if (r.status !== 201) throw new Error(`POST /sandboxes ${templateID} → ${r.status}: ${JSON.stringify(r.body)}`)
  tokens.set(r.body.sandboxID, r.body.envdAccessToken)
  return r.body.sandboxID
}
async function kill(id) {
  const r = await api('DELETE', `/sandboxes/${id}`)
  if (r.status !== 204) throw new Error(`DELETE /sandboxes/${id} → ${r.status}`)
}
// Files only: these are the numbers of the files' copy (bench/fork.mjs measures memory snapshots).
async function snapshot(id) {
  const r = await api('POST', `/sandboxes/${id}/snapshots`, { mode: 'filesystem' })
  if (r.status !== 201) throw new Error(`snapshot of ${id} → ${r.status}: ${JSON.stringify(r.body)}`)
  return r.body
}
async function deleteSnapshot(id) {
  const r = await api('DELETE', `/templates/${encodeURIComponent(id)}`)
  if (r.status !== 204) throw new Error(`DELETE /templates/${id} → ${r.status}: ${JSON.stringify(r.body)}`)
}
/** A sandbox holding `bytes` of new data in /home/user/data/blob (one file of random bytes). */
async function originWith(bytes) {
  const id = await create('base')
  const r = await runCommand(id, `mkdir -p /home/user/data && head -c ${bytes} /dev/urandom > /home/user/data/blob && stat -c %s /home/user/data/blob`)
  if (r.exitCode !== 0 || Number(r.stdout) !== bytes) throw new Error(`writing ${bytes} bytes: exit ${r.exitCode}, ${r.stdout}`)
  return id
}
/** Start → first command exited; the kill after it is not timed. */
async function startCycle(templateID) {
  const t0 = performance.now()
  const id = await create(templateID)
  const tCreated = performance.now()
  const r = await runCommand(id, 'true')
  const t1 = performance.now()
  if (r.exitCode !== 0) throw new Error(`first command exited ${r.exitCode}`)
  await kill(id)
  return { first: t1 - t0, create: tCreated - t0 }
}
const sh = (cmd) => {
  const r = spawnSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] })
  if (r.status !== 0) throw new Error(`${cmd} exited ${r.status}`)
}
const timed = (fn) => {
  const t0 = performance.now()
  fn()
  return performance.now() - t0
}
const progress = (s) => process.stderr.write(s)
/** How long the server says the origin was frozen for snapshot `id` (its log line). */
function frozenMs(snapshotID) {
  const id = snapshotID.replace(/:default$/, '')
  // eslint-disable-next-line no-control-regex
  const log = server.stderr.replace(/\x1b\[[0-9;]*m/g, '')
  const m = new RegExp(`snapshot="?${id}"?\\s+frozen_ms=([0-9.]+)`).exec(log)
  return m ? Number(m[1]) : NaN
}

// ── run ──
const loadAtStart = os.loadavg()[0]
const results = {}
const snapshotsMade = new Set()
const cpDirs = []
try {
  server = await startLocalServer({ tmpPrefix: 'sandbank-bench-snap-' })
  progress(`server ${server.url} ready in ${server.startMs.toFixed(0)} ms\n`)

  // (a) start from a 1 MB and a 1 GB snapshot.
  progress('(a) preparing the 1 MB and 1 GB snapshots\n')
  const small = await originWith(MB)
  const big = await originWith(1024 * MB)
  const sSmall = await snapshot(small)
  snapshotsMade.add(sSmall.snapshotID)
  const sBig = await snapshot(big)
  snapshotsMade.add(sBig.snapshotID)
  await kill(small)
  await kill(big)
  {
    // The data is really there.
    const id = await create(sBig.snapshotID)
    const r = await runCommand(id, 'stat -c %s /home/user/data/blob')
    if (Number(r.stdout) !== 1024 * MB) throw new Error(`the 1 GB snapshot holds ${r.stdout}`)
    await kill(id)
  }
  const cold = { small: await startCycle(sSmall.snapshotID), big: await startCycle(sBig.snapshotID) }
  for (let i = 0; i < 5; i++) for (const t of [sSmall.snapshotID, sBig.snapshotID, 'base']) await startCycle(t)
  const runs = { small: [], big: [], base: [] }
  progress(`(a) ${RUNS} runs each, interleaved: `)
  for (let i = 0; i < RUNS; i++) {
    runs.small.push(await startCycle(sSmall.snapshotID))
    runs.big.push(await startCycle(sBig.snapshotID))
    runs.base.push(await startCycle('base'))
    if ((i + 1) % 10 === 0) progress('.')
  }
  progress('\n')
  results.a = {
    cold,
    small: stats(runs.small.map((r) => r.first)),
    big: stats(runs.big.map((r) => r.first)),
    base: stats(runs.base.map((r) => r.first)),
    smallCreate: stats(runs.small.map((r) => r.create)),
    bigCreate: stats(runs.big.map((r) => r.create)),
  }

  // (c) 100 sandboxes from the 1 GB snapshot.
  results.c = []
  for (const conc of FLEET_CONCURRENCY) {
    for (let rep = 0; rep < 2; rep++) {
      progress(`(c) ${FLEET} sandboxes from one snapshot, concurrency ${conc}, rep ${rep + 1}\n`)
      const ids = []
      const firstDone = []
      let next = 0
      const t0 = performance.now()
      let tCreated = 0
      const worker = async () => {
        while (next < FLEET) {
          next++
          const id = await create(sBig.snapshotID)
          ids.push(id)
          tCreated = Math.max(tCreated, performance.now())
          const r = await runCommand(id, 'test -s /home/user/data/blob')
          if (r.exitCode !== 0) throw new Error(`sandbox ${id}: the snapshot's data is missing`)
          firstDone.push(performance.now())
        }
      }
      await Promise.all(Array.from({ length: conc }, worker))
      const tAll = performance.now()
      let k = 0
      const killer = async () => {
        while (k < ids.length) await kill(ids[k++])
      }
      await Promise.all(Array.from({ length: Math.min(conc, 16) }, killer))
      const tKilled = performance.now()
      results.c.push({ conc, created: tCreated - t0, firstCommand: tAll - t0, kill: tKilled - tAll })
    }
  }

  // Done with (a)/(c): their snapshots go before (b) writes more.
  for (const id of [...snapshotsMade]) {
    await deleteSnapshot(id)
    snapshotsMade.delete(id)
  }

  // (b) snapshot time against new-data size, beside cp -a of the same upper layer.
  results.b = []
  for (const size of SIZES) {
    progress(`(b) ${size.label}: `)
    const origin = await originWith(size.bytes)
    const layer = join(server.dataDir, 'sandboxes', origin, 'layer')
    const rows = []
    for (let rep = 0; rep < size.reps; rep++) {
      // Flush everything first, so each measured operation syncs only its own writes.
      sh('sync')
      const t0 = performance.now()
      const s = await snapshot(origin)
      const snapMs = performance.now() - t0
      snapshotsMade.add(s.snapshotID)
      const sizeBytes = s.sizeBytes
      await deleteSnapshot(s.snapshotID)
      snapshotsMade.delete(s.snapshotID)

      const dst = join(server.dataDir, `bench-cp-${rep}`)
      cpDirs.push(dst)
      sh('sync')
      const cpMs = timed(() => sh(`cp -a '${layer}' '${dst}'`))
      rmSync(dst, { recursive: true, force: true })
      sh('sync')
      const cpSyncMs = timed(() => sh(`cp -a '${layer}' '${dst}' && sync -f '${dst}'`))
      rmSync(dst, { recursive: true, force: true })
      rows.push({ snapMs, cpMs, cpSyncMs, sizeBytes, frozenMs: frozenMs(s.snapshotID) })
      progress('.')
    }
    progress('\n')
    await kill(origin)
    const warm = rows.slice(1)
    const med = (k) => stats(warm.map((r) => r[k])).p50
    results.b.push({
      ...size,
      sizeBytes: rows[0].sizeBytes,
      cold: rows[0],
      warm: { snapMs: med('snapMs'), cpMs: med('cpMs'), cpSyncMs: med('cpSyncMs'), frozenMs: med('frozenMs'), n: warm.length },
    })
  }
} catch (e) {
  console.error(`\nbench failed: ${e.stack ?? e.message}`)
  if (server?.stderr) console.error(`server stderr (last lines):\n${server.stderr.split('\n').slice(-20).join('\n')}`)
  process.exitCode = 1
} finally {
  if (server) {
    for (const id of snapshotsMade) await deleteSnapshot(id).catch(() => {})
    for (const d of cpDirs) rmSync(d, { recursive: true, force: true })
    const r = await server.stop()
    if (r.code === 0) removeDataDir(server.dataDir)
    if (existsSync(server.dataDir)) console.error(`warning: ${server.dataDir} was not removed`)
  }
}
if (process.exitCode) process.exit(1)

// ── report ──
const { a, b, c } = results
const row = (name, s) => `| ${name} | ${f(s.p50)} | ${f(s.p99)} | ${f(s.mean)} | ${f(s.min)} | ${f(s.max)} |`
const flatRatio = a.big.p50 / a.small.p50
const flatMet = flatRatio <= 1.25 && a.big.p50 <= 25 && a.small.p50 <= 25
const bestFleet = Math.min(...c.map((r) => r.created))
const gitRev = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: packageRoot, encoding: 'utf8' }).stdout.trim()
const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src', 'crates', 'Cargo.toml'], { cwd: packageRoot, encoding: 'utf8' }).stdout.trim() ? ' (with uncommitted changes)' : ''
const ratio = (x, y) => `${(x / y).toFixed(2)}×`
const md = `## Snapshots

Generated by \`npm run bench\` (\`bench/snapshot.mjs\`) on ${new Date().toISOString().slice(0, 10)}, commit \`${gitRev}\`${dirty}.
Same machine (${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}); load average ${loadAtStart.toFixed(2)} when the run began.
Data directory on \`${spawnSync('df', ['--output=source,fstype', os.tmpdir()], { encoding: 'utf8' }).stdout.trim().split('\n').at(-1)}\`. Times in milliseconds.

### (a) Start from a snapshot → first command exited

${RUNS} runs per row, interleaved (1 MB, 1 GB, base, 1 MB, …) after 5 warm-up rounds; a new sandbox each time (killed after, not timed).

| what | p50 | p99 | mean | min | max |
|---|---:|---:|---:|---:|---:|
${row('from a snapshot holding **1 MB** of new data', a.small)}
${row('from a snapshot holding **1 GB** of new data', a.big)}
${row('from \`base\` (no snapshot), for reference', a.base)}
${row('… of which \`POST /sandboxes\`, 1 MB snapshot', a.smallCreate)}
${row('… of which \`POST /sandboxes\`, 1 GB snapshot', a.bigCreate)}

Cold (the first start from each snapshot, before the warm-up): 1 MB ${f(a.cold.small.first)} ms, 1 GB ${f(a.cold.big.first)} ms.
1 GB ÷ 1 MB at p50: **${ratio(a.big.p50, a.small.p50)}**. Target (1 GB within 1.25× of 1 MB, p50 ≤ 25 ms): **${flatMet ? 'met' : 'not met'}**.
A snapshot is a read-only overlay lower layer: starting from it mounts it, copies nothing.

### (b) Taking a snapshot, against the size of the new data

The origin holds one file of random bytes of the given size (written with \`head -c … /dev/urandom\`), plus the few
files a fresh sandbox has. Each rep: \`sync\`, snapshot (\`POST /sandboxes/{id}/snapshots\` with \`mode: "filesystem"\`, to the 201), delete it;
\`sync\`, \`cp -a\` of the same upper-layer directory (\`<data>/sandboxes/<id>/layer\`) to a new directory in the data
dir (same filesystem); \`sync\`, \`cp -a\` again followed by \`sync -f\` (syncfs: what a snapshot does before it
publishes). Cold = the first rep; warm = the median of the other reps.

| new data | snapshot cold | cp -a cold | cp -a + sync cold | snapshot warm | cp -a warm | cp -a + sync warm | snapshot ÷ cp -a (warm) | snapshot ÷ (cp -a + sync) (warm) | origin frozen (warm) |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${b.map((r) => `| ${r.label} | ${f(r.cold.snapMs)} | ${f(r.cold.cpMs)} | ${f(r.cold.cpSyncMs)} | ${f(r.warm.snapMs)} | ${f(r.warm.cpMs)} | ${f(r.warm.cpSyncMs)} | ${ratio(r.warm.snapMs, r.warm.cpMs)} | ${ratio(r.warm.snapMs, r.warm.cpSyncMs)} | ${f(r.warm.frozenMs)} |`).join('\n')}

Reps: ${b.map((r) => `${r.label} ${r.reps}`).join(', ')}. In the first rep the snapshot runs first and pays for touching fresh
memory (on these VMs a first-time 1 GB copy runs at ~360 MB/s); the \`cp -a\` runs after it reuse those pages.

Target: within 1.3× of \`cp -a\` (warm): ${b.map((r) => `${r.label} **${r.warm.snapMs <= 1.3 * r.warm.cpMs ? 'met' : 'not met'}**`).join(', ')}; against
\`cp -a\` + sync: ${b.map((r) => `${r.label} **${r.warm.snapMs <= 1.3 * r.warm.cpSyncMs ? 'met' : 'not met'}**`).join(', ')}. A snapshot copies with \`copy_file_range\` (no reflinks on ext4) and makes the
copy durable (syncfs, then an atomic rename and one SQLite transaction), so its fair floor is \`cp -a\` + sync; against
plain \`cp -a\` (which leaves the data dirty in the page cache) it pays the disk write-back as well. The origin is
frozen only during the copy (the server logs \`frozen_ms\`); the sync runs after it is thawed.

### (c) ${FLEET} sandboxes started from one snapshot

From the 1 GB snapshot; ${FLEET} \`POST /sandboxes\` with the given number in flight at once, each followed by one
command (\`test -s /home/user/data/blob\`) in that sandbox; then all killed (at most 16 kills in flight).

| in flight | all ${FLEET} created (201) | all ${FLEET} ran their first command | kill all ${FLEET} |
|---:|---:|---:|---:|
${c.map((r) => `| ${r.conc} | ${f(r.created)} | ${f(r.firstCommand)} | ${f(r.kill)} |`).join('\n')}

Target ≤ 2000 ms for ${FLEET} sandboxes: **${bestFleet <= 2000 ? 'met' : 'not met'}** (best: ${f(bestFleet)} ms to all created).

### Method (snapshots)

- One \`sandbank serve\` (\`native/sandbank\`, release) on a fresh temporary data dir; raw HTTP/1.1 from the
  benchmark process (Node's \`fetch\`, keep-alive); commands through \`Process/Start\` as the SDKs send them
  (\`bash -l -c …\`). Everything it makes — sandboxes, snapshots, the \`cp -a\` copies, the data dir — is removed at
  the end.
- The 2 cores are shared with whatever else runs (see the load average); the series of (a) are interleaved so that
  each sees the same conditions. Reproduce: \`npm run build && node bench/snapshot.mjs\` (\`--no-write\` prints only,
  \`--runs N\`).
`
console.log(md)
if (WRITE) {
  upsertSection(OUT, 'bench/snapshot.mjs', md)
  console.error(`wrote the snapshot section of ${OUT}`)
}
