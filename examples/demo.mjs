#!/usr/bin/env node
// `npm run demo`: the snapshot walkthrough of the Novita docs, on the local engine.
// It starts `sandbank serve` on a temporary data dir, drives it with the published
// `novita-sandbox` SDK exactly as the docs do, prints each step with its time, and stops the server.
// Snapshot steps run when the server offers /snapshots; until then they are skipped with a note.
import { Sandbox } from 'novita-sandbox'
import { removeDataDir, startLocalServer } from '../lib/server.mjs'

const t00 = performance.now()
let stepNo = 0
async function step(title, fn) {
  stepNo++
  const t0 = performance.now()
  try {
    const detail = await fn()
    const ms = performance.now() - t0
    console.log(`${String(stepNo).padStart(2)}. ${title.padEnd(44)} ${ms.toFixed(1).padStart(8)} ms${detail ? `  ${detail}` : ''}`)
  } catch (e) {
    console.log(`${String(stepNo).padStart(2)}. ${title.padEnd(44)}   FAILED: ${String(e.message).split('\n')[0]}`)
    throw e
  }
}
const skip = (title, why) => console.log(`    ${title.padEnd(44)}  skipped: ${why}`)

let server
const live = new Set() // sandboxes to kill if the demo stops half-way
let failed = false
try {
  await step('start `sandbank serve`', async () => {
    server = await startLocalServer({ tmpPrefix: 'sandbank-demo-' })
    return `${server.url} (data dir ${server.dataDir})`
  })
  const opts = server.sdkOpts()

  let sandbox
  await step('Sandbox.create()', async () => {
    sandbox = await Sandbox.create(opts)
    live.add(sandbox)
    return `sandbox ${sandbox.sandboxId}`
  })

  await step("commands.run('echo ready > /tmp/status.txt')", async () => {
    const r = await sandbox.commands.run('echo ready > /tmp/status.txt')
    return `exit code ${r.exitCode}`
  })

  await step("files.read('/tmp/status.txt')", async () => {
    const text = await sandbox.files.read('/tmp/status.txt')
    if (text !== 'ready\n') throw new Error(`read ${JSON.stringify(text)}, expected "ready\\n"`)
    return JSON.stringify(text)
  })

  await step("files.write('/home/user/notes.txt')", async () => {
    const info = await sandbox.files.write('/home/user/notes.txt', 'written by the demo\n')
    return info.path
  })

  await step("commands.run('cat /home/user/notes.txt')", async () => {
    const r = await sandbox.commands.run('cat /home/user/notes.txt; whoami')
    if (!r.stdout.startsWith('written by the demo\n')) throw new Error(`unexpected output ${JSON.stringify(r.stdout)}`)
    return JSON.stringify(r.stdout)
  })

  // ── Snapshots (the docs' flow): createSnapshot → create from it → list → delete ──
  const probe = await server.fetch('/snapshots?limit=1')
  await probe.arrayBuffer()
  if (probe.status === 404) {
    for (const title of ['sandbox.createSnapshot()', 'Sandbox.create(snapshotId)', "  → cat /tmp/status.txt", 'sandbox.listSnapshots()', 'Sandbox.deleteSnapshot(snapshotId)']) {
      skip(title, 'this server has no /snapshots yet (404)')
    }
  } else {
    let snapshot
    await step('sandbox.createSnapshot()', async () => {
      snapshot = await sandbox.createSnapshot(opts)
      return `snapshot ${snapshot.snapshotId}`
    })
    let copy
    await step('Sandbox.create(snapshotId)', async () => {
      copy = await Sandbox.create(snapshot.snapshotId, opts)
      live.add(copy)
      return `sandbox ${copy.sandboxId}`
    })
    await step('  → cat /tmp/status.txt', async () => {
      const r = await copy.commands.run('cat /tmp/status.txt')
      if (r.stdout !== 'ready\n') throw new Error(`the new sandbox has ${JSON.stringify(r.stdout)}`)
      return JSON.stringify(r.stdout)
    })
    await step('sandbox.listSnapshots()', async () => {
      const pager = sandbox.listSnapshots({ ...opts, limit: 20 })
      const ids = []
      while (pager.hasNext) ids.push(...(await pager.nextItems()).map((s) => s.snapshotId))
      if (!ids.includes(snapshot.snapshotId)) throw new Error(`${snapshot.snapshotId} missing from ${ids}`)
      return ids.join(', ')
    })
    await step('kill the new sandbox', async () => {
      await copy.kill()
      live.delete(copy)
    })
    await step('Sandbox.deleteSnapshot(snapshotId)', async () => {
      const ok = await Sandbox.deleteSnapshot(snapshot.snapshotId, opts)
      if (!ok) throw new Error('deleteSnapshot returned false')
      return 'deleted'
    })
  }

  await step('sandbox.kill()', async () => {
    await sandbox.kill()
    live.delete(sandbox)
  })
} catch (e) {
  failed = true
  console.error(`\ndemo failed: ${e.stack ?? e}`)
  if (server?.stderr) console.error(`\nserver stderr (last lines):\n${server.stderr.split('\n').slice(-20).join('\n')}`)
} finally {
  for (const s of live) await s.kill().catch(() => {})
  if (server) {
    await step('stop the server (SIGTERM)', async () => {
      const r = await server.stop()
      if (r.code !== 0) throw new Error(`exited with ${r.code ?? r.signal}`)
      removeDataDir(server.dataDir)
      return `exited 0 in ${r.elapsedMs.toFixed(0)} ms`
    }).catch(() => (failed = true))
  }
  console.log(`\ndemo ${failed ? 'FAILED' : 'done'} in ${((performance.now() - t00) / 1000).toFixed(2)} s`)
  process.exitCode = failed ? 1 : 0
}
