#!/usr/bin/env node
// `npm run demo`: the snapshot walkthrough of the Novita docs, through `sandbank` itself on its
// local default: no API key, no URL — the first call finds the local `sandbank serve` daemon
// (through its daemon.json) or starts one in the background, which stops by itself after 5 idle
// minutes. The code is the docs' code with the import swapped (`novita-sandbox/code-interpreter`
// → `sandbank/code-interpreter`: its sandboxes run a Python interpreter, built into the local
// template `code-interpreter-v1` the first time, in under a minute); each step prints its time. A
// counter held in memory and an interpreter variable show that a snapshot keeps the running
// processes (`npm run demo` first has scripts/criu.sh provide CRIU, which the engine needs).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox } from 'sandbank/code-interpreter'
import binding from '../binding.js'

// The counter server (each GET gets the next number), the one the tests use.
const COUNTER = readFileSync(new URL('../__test__/fixtures/counter.py', import.meta.url), 'utf8')
const COUNT = `python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8000").read().decode())'`

const t00 = performance.now()
let stepNo = 0
async function step(title, fn) {
  stepNo++
  const t0 = performance.now()
  try {
    const detail = await fn()
    const ms = performance.now() - t0
    console.log(`${String(stepNo).padStart(2)}. ${title.padEnd(52)} ${ms.toFixed(1).padStart(8)} ms${detail ? `  ${detail}` : ''}`)
  } catch (e) {
    console.log(`${String(stepNo).padStart(2)}. ${title.padEnd(52)}   FAILED: ${String(e.message).split('\n')[0]}`)
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

  await step("runCode('x = 41')", async () => {
    const execution = await sandbox.runCode('x = 41\nprint("x is", x)')
    if (execution.error) throw new Error(`${execution.error.name}: ${execution.error.value}`)
    return JSON.stringify(execution.logs.stdout.join(''))
  })

  // A process whose only state is in memory: a counter served on loopback. A snapshot with memory
  // (the default where the engine has CRIU) takes it along.
  const next = async (sbx) => (await sbx.commands.run(COUNT)).stdout.trim()
  await step("files.write + commands.run('python3 counter.py &')", async () => {
    await sandbox.files.write('/tmp/counter.py', COUNTER)
    await sandbox.commands.run('nohup python3 /tmp/counter.py >/dev/null 2>&1 &')
    for (let i = 0; i < 50; i++) {
      const n = (await sandbox.commands.run(`${COUNT} 2>/dev/null || true`)).stdout.trim()
      if (n) return `counter at ${n}, in memory only`
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error('the counter server did not come up')
  })

  // ── Snapshots (the docs' flow): createSnapshot → create from it → list → delete ──
  {
    let snapshot
    await step('sandbox.createSnapshot()', async () => {
      snapshot = await sandbox.createSnapshot()
      const what = snapshot.mode === 'full' ? 'files, processes and memory' : 'files only: the engine has no CRIU'
      return `snapshot ${snapshot.snapshotId} (${snapshot.mode}: ${what})`
    })
    let copy
    await step('Sandbox.create(snapshotId)', async () => {
      copy = await Sandbox.create(snapshot.snapshotId)
      live.add(copy)
      return `sandbox ${copy.sandboxId}`
    })
    if (snapshot.mode === 'full') {
      await step('  → the counter goes on in the new sandbox', async () => {
        const [inCopy, inOrigin] = [await next(copy), await next(sandbox)]
        if (inCopy !== '2' || inOrigin !== '2') throw new Error(`counter at ${inCopy} in the copy, ${inOrigin} in the origin; expected 2 in both`)
        return `2 in the copy, 2 in the origin: each goes on by itself`
      })
    }
    if (snapshot.mode === 'full') {
      await step("  → runCode('x + 1') in the new sandbox", async () => {
        const execution = await copy.runCode('x + 1')
        if (execution.text !== '42') throw new Error(`x + 1 is ${execution.text ?? execution.error?.name} in the copy, expected 42`)
        return `${execution.text}: the interpreter's variables came along`
      })
    }
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
