#!/usr/bin/env node
// `npm run demo`: the snapshot walkthrough of the Novita docs, through `sandbank` itself on its
// local default: no API key, no URL — the first call finds the local `sandbank serve` daemon
// (through its daemon.json) or starts one in the background, which stops by itself after 5 idle
// minutes. The code is the docs' code with the import swapped; each step prints its time.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox } from 'sandbank'
import binding from '../binding.js'

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

const live = new Set() // sandboxes to kill if the demo stops half-way
let failed = false
const daemon = () => {
  try {
    return JSON.parse(readFileSync(join(binding.localDataDir(), 'daemon.json'), 'utf8'))
  } catch {
    return null
  }
}
try {
  const before = daemon()
  let sandbox
  await step('Sandbox.create()', async () => {
    sandbox = await Sandbox.create()
    live.add(sandbox)
    const d = daemon()
    const how = before && d && before.pid === d.pid ? 'reused the running local daemon' : 'started the local daemon'
    return `sandbox ${sandbox.sandboxId} (${how}: ${d?.url}, pid ${d?.pid})`
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
  {
    let snapshot
    await step('sandbox.createSnapshot()', async () => {
      snapshot = await sandbox.createSnapshot()
      return `snapshot ${snapshot.snapshotId}`
    })
    let copy
    await step('Sandbox.create(snapshotId)', async () => {
      copy = await Sandbox.create(snapshot.snapshotId)
      live.add(copy)
      return `sandbox ${copy.sandboxId}`
    })
    await step('  → cat /tmp/status.txt', async () => {
      const r = await copy.commands.run('cat /tmp/status.txt')
      if (r.stdout !== 'ready\n') throw new Error(`the new sandbox has ${JSON.stringify(r.stdout)}`)
      return JSON.stringify(r.stdout)
    })
    await step('sandbox.listSnapshots()', async () => {
      const ids = []
      for await (const s of sandbox.listSnapshots({ limit: 20 })) ids.push(s.snapshotId)
      if (!ids.includes(snapshot.snapshotId)) throw new Error(`${snapshot.snapshotId} missing from ${ids}`)
      return ids.join(', ')
    })
    await step('kill the new sandbox', async () => {
      await copy.kill()
      live.delete(copy)
    })
    await step('Sandbox.deleteSnapshot(snapshotId)', async () => {
      const ok = await Sandbox.deleteSnapshot(snapshot.snapshotId)
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
  console.error(`\nthe local daemon's log: ${join(binding.localDataDir(), 'daemon.log')}`)
} finally {
  for (const s of live) await s.kill().catch(() => {})
  console.log(`\ndemo ${failed ? 'FAILED' : 'done'} in ${((performance.now() - t00) / 1000).toFixed(2)} s`)
  process.exitCode = failed ? 1 : 0
}
