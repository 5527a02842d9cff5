#!/usr/bin/env node
// `npm run bench:snapshot-archive`: snapshot export and import (issue 18) against the tools
// themselves. A filesystem snapshot holding ~1 GB written over the base (768 MB of random bytes and
// 256 MB of base64 text); per round, side by side on the same machine:
//   export:   `Sandbox.exportSnapshot(id, file)` (through the server's REST route, into a file)
//             vs `tar -c <the layer> | zstd -3 > file` (the same tar options the server uses)
//   import:   `Sandbox.importSnapshot(file)` (upload, digest, unpack into staging, publish)
//             vs `zstd -d < file | tar -x` into a directory on the same filesystem as the layers.
// The claim to check: export within 1.5× of `tar | zstd`, import within 1.5× of unpacking.
// Writes its section of docs/BENCHMARKS.md and removes what it made.
//
// Usage: node bench/snapshot-archive.mjs [--rounds 3] [--store btrfs|copy] [--out docs/BENCHMARKS.md] [--no-write]
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Sandbox } from 'sandbank'
import { packageRoot, removeDataDir, startLocalServer } from '../scripts/local-server.mjs'
import { upsertSection } from './report.mjs'
import { arg, percentile as p } from './common.mjs'

const ROUNDS = Number(arg('rounds', 3))
const STORE = arg('store', 'btrfs')
const OUT = arg('out', join(packageRoot, 'docs', 'BENCHMARKS.md'))
const WRITE = !process.argv.includes('--no-write')
const TAR_OPTS = ['--format=posix', '--numeric-owner', '--sparse', '--xattrs', '--xattrs-include=trusted.*', '--xattrs-include=user.*', '--xattrs-include=security.capability']

const sh = (cmd) => {
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', cmd], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`)
}
const timed = async (fn) => {
  const t0 = performance.now()
  await fn()
  return (performance.now() - t0) / 1000
}

const server = await startLocalServer({ tmpPrefix: 'sandbank-bench-archive-', extraArgs: ['--store', STORE] })
const opts = server.sdkOpts({ requestTimeoutMs: 600_000 })
const scratch = mkdtempSync(join(tmpdir(), 'sandbank-bench-archive-'))
const times = { ours: { export: [], import: [] }, tools: { export: [], import: [] } }
let sizes = {}
let sbx
let snapshotId
try {
  sbx = await Sandbox.create(opts)
  await sbx.commands.run('head -c 768M /dev/urandom > /home/user/random.bin && head -c 192M /dev/urandom | base64 > /home/user/text.b64 && sync', { timeoutMs: 600_000 })
  const res = await server.fetch(`/sandboxes/${sbx.sandboxId}/snapshots`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ mode: 'filesystem' }),
  })
  if (!res.ok) throw new Error(`snapshot: ${res.status} ${await res.text()}`)
  snapshotId = (await res.json()).snapshotID
  const bare = snapshotId.replace(/:default$/, '')
  // The layer as the server has it (the btrfs store is mounted in the server's mount namespace).
  const store = `/proc/${server.proc.pid}/root${server.dataDir}/cow`
  const layersRoot = existsSync(join(store, 'layers')) ? store : server.dataDir
  const layer = join(layersRoot, 'layers', bare)
  const layerBytes = Number(execFileSync('du', ['-sb', '--exclude=./work', layer], { encoding: 'utf8' }).split('\t')[0])

  const ours = join(scratch, 'ours.sbsnap')
  const tools = join(scratch, 'tools.tar.zst')
  const round = async (record) => {
    rmSync(ours, { force: true })
    rmSync(tools, { force: true })
    const e1 = await timed(() => Sandbox.exportSnapshot(snapshotId, ours, opts))
    const e2 = await timed(() => sh(`tar --create --file=- ${TAR_OPTS.map((o) => `'${o}'`).join(' ')} --anchored --exclude=./work --directory '${layer}' . | zstd -3 -T1 -q -c > '${tools}'`))
    const i1 = await timed(async () => {
      const snap = await Sandbox.importSnapshot(ours, opts)
      // Not timed: its deletion. Done after the clock stops below.
      round.imported = snap.snapshotId
    })
    await Sandbox.deleteSnapshot(round.imported, opts)
    const unpackTo = join(layersRoot, 'layers', '.bench-unpack')
    rmSync(unpackTo, { recursive: true, force: true })
    const i2 = await timed(() => sh(`mkdir '${unpackTo}' && zstd -d -q -c '${tools}' | tar --extract --file=- ${TAR_OPTS.map((o) => `'${o}'`).join(' ')} --same-owner --same-permissions --directory '${unpackTo}' && sync -f '${unpackTo}'`))
    rmSync(unpackTo, { recursive: true, force: true })
    sizes = { layer: layerBytes, ours: statSync(ours).size, tools: statSync(tools).size }
    if (record) {
      times.ours.export.push(e1)
      times.tools.export.push(e2)
      times.ours.import.push(i1)
      times.tools.import.push(i2)
    }
    console.error(`export ${e1.toFixed(2)} s vs ${e2.toFixed(2)} s; import ${i1.toFixed(2)} s vs ${i2.toFixed(2)} s`)
  }
  await round(false)
  for (let i = 0; i < ROUNDS; i++) await round(true)
} finally {
  if (sbx) await sbx.kill().catch(() => {})
  if (snapshotId) await Sandbox.deleteSnapshot(snapshotId, opts).catch(() => {})
  await server.stop()
  removeDataDir(server.dataDir)
  rmSync(scratch, { recursive: true, force: true })
}

const s = (x) => `${x.toFixed(2)} s`
const mb = (b) => `${(b / 1e6).toFixed(0)} MB`
const ratio = (a, b) => (p(a, 50) / p(b, 50)).toFixed(2)
const lines = [
  `## Snapshot export and import (issue 18, ${STORE} store)`,
  '',
  `\`node bench/snapshot-archive.mjs --rounds ${ROUNDS} --store ${STORE}\` (${new Date().toISOString().slice(0, 10)}; one server, ${STORE} layer store). A filesystem snapshot of ${mb(sizes.layer)} over the base (768 MB of random bytes, 256 MB of base64 text). Each round, side by side: \`Sandbox.exportSnapshot(id, file)\` (REST, streamed into a file) vs \`tar -c <layer> | zstd -3 -T1 > file\` with the server's tar options; \`Sandbox.importSnapshot(file)\` (upload, digest checked, unpacked into staging, published) vs \`zstd -d < file | tar -x\` into a directory beside the layers, then \`sync -f\`. One warm-up round, then ${ROUNDS}; the medians.`,
  '',
  '| | sandbank p50 | the tools p50 | ratio (target ≤ 1.5) |',
  '|---|---|---|---|',
  `| export | ${s(p(times.ours.export, 50))} | ${s(p(times.tools.export, 50))} (\`tar \\| zstd\`) | ${ratio(times.ours.export, times.tools.export)} |`,
  `| import | ${s(p(times.ours.import, 50))} | ${s(p(times.tools.import, 50))} (\`zstd -d \\| tar -x\`) | ${ratio(times.ours.import, times.tools.import)} |`,
  '',
  `Archive sizes: sandbank's ${mb(sizes.ours)}, \`tar | zstd\`'s ${mb(sizes.tools)} (the same zstd level; sandbank's adds a manifest, chunk framing and the digest). sandbank's export also hashes everything (SHA-256) and goes through HTTP; its import checks the frame's checksum and the digest, and syncs the layer before publishing it.`,
]
console.log(lines.join('\n'))
if (WRITE) upsertSection(OUT, `bench/snapshot-archive.mjs --store ${STORE}`, lines.join('\n'))
