// Copies of a running sandbox with its memory (issue 14): E2B's `fork` through the published
// `e2b` SDK, Novita's `clone` through `novita-sandbox`, on one `sandbank serve`. A Python server
// holds a counter in memory only and serves it on loopback: every copy answers with the origin's
// count and goes on by itself, while the origin goes on too.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { Sandbox as E2bSandbox, SandboxNotFoundError } from 'e2b'
import { Sandbox as NovitaSandbox } from 'novita-sandbox'
import { startServer, stopAndCheck, rejectsWith } from './helpers.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

const COUNTER = readFileSync(new URL('./fixtures/counter.py', import.meta.url), 'utf8')
const FETCH = `python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8000").read().decode())'`

/** The next number of the sandbox's counter server. */
async function next(sbx) {
  return (await sbx.commands.run(FETCH)).stdout.trim()
}

/** A sandbox (through `Sdk`) running the counter server, started by a command that has ended. */
async function origin(t, Sdk) {
  const sbx = await Sdk.create({ ...server.e2b(), timeoutMs: 300_000 })
  server.sandboxIds.add(sbx.sandboxId)
  t.after(() => sbx.kill().catch(() => {}))
  await sbx.files.write('/home/user/counter.py', COUNTER)
  await sbx.commands.run('nohup python3 /home/user/counter.py >/dev/null 2>&1 &')
  for (let i = 0; i < 50; i++) {
    const r = await sbx.commands.run(`${FETCH} 2>/dev/null || true`)
    if (r.stdout.trim() === '1') return sbx
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.fail('the counter server did not come up')
}

function own(t, sbx) {
  server.sandboxIds.add(sbx.sandboxId)
  t.after(() => sbx.kill().catch(() => {}))
  return sbx
}

describe('e2b: fork', () => {
  test('every fork has the origin memory and goes on by itself; so does the origin', async (t) => {
    const sbx = await origin(t, E2bSandbox)
    assert.equal(await next(sbx), '2')
    await sbx.files.write('/home/user/note.txt', 'before the fork')
    const forks = await sbx.fork({ count: 2, timeoutMs: 120_000 })
    assert.equal(forks.length, 2)
    for (const f of forks) {
      assert.ok(!(f instanceof Error), String(f))
      own(t, f)
    }
    assert.notEqual(forks[0].sandboxId, forks[1].sandboxId)
    for (const f of forks) {
      assert.equal(await next(f), '3', 'the fork goes on from the origin count')
      assert.equal(await f.files.read('/home/user/note.txt'), 'before the fork')
      assert.equal((await f.commands.run('hostname')).stdout.trim(), f.sandboxId)
    }
    assert.equal(await next(forks[0]), '4')
    assert.equal(await next(forks[1]), '4', 'the forks are apart')
    assert.equal(await next(sbx), '3', 'the origin goes on by itself')
    await forks[0].files.write('/home/user/note.txt', 'changed in a fork')
    assert.equal(await forks[1].files.read('/home/user/note.txt'), 'before the fork')
    assert.equal(await sbx.files.read('/home/user/note.txt'), 'before the fork')
    // The forks outlive their origin.
    await sbx.kill()
    assert.equal(await next(forks[0]), '5')
  })

  test('the static form; an unknown sandbox is SandboxNotFoundError', async (t) => {
    const sbx = await origin(t, E2bSandbox)
    const [f] = await E2bSandbox.fork(sbx.sandboxId, { ...server.e2b(), count: 1 })
    own(t, f)
    assert.equal(await next(f), '2')
    await rejectsWith(E2bSandbox.fork('abcdefghij0123456789', server.e2b()), SandboxNotFoundError)
  })

  test('a command stream still followed: a clear error, and the origin runs on', async (t) => {
    const sbx = await origin(t, E2bSandbox)
    const handle = await sbx.commands.run('sleep 600', { background: true })
    await assert.rejects(sbx.fork({ count: 1 }), /disconnect it/)
    await handle.kill()
    assert.equal(await next(sbx), '2')
  })
})

describe('without CRIU', () => {
  test('fork and a full snapshot say what is missing; a files snapshot works', async (t) => {
    const bare = await startServer({ env: { SANDBANK_CRIU: '/nonexistent/criu' } })
    t.after(() => stopAndCheck(bare))
    const sbx = await E2bSandbox.create(bare.e2b())
    bare.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill().catch(() => {}))
    await assert.rejects(sbx.fork({ count: 1 }), (e) => e.message.startsWith('501: ') && e.message.includes('/nonexistent/criu'))
    const full = await bare.fetch(`/sandboxes/${sbx.sandboxId}/snapshots`, { method: 'POST', body: '{"mode":"full"}', headers: { 'content-type': 'application/json' } })
    assert.equal(full.status, 501)
    assert.match((await full.json()).message, /CRIU/)
    const files = await sbx.createSnapshot()
    assert.ok(files.snapshotId)
  })
})

describe('novita: clone', () => {
  test('clones have the origin memory; the snapshot they started from is named', async (t) => {
    const sbx = await origin(t, NovitaSandbox)
    const result = await NovitaSandbox.clone(sbx.sandboxId, { ...server.novita(), count: 2, strict: true })
    assert.equal(result.count, 2)
    assert.match(result.snapshotTemplateId, /^[a-z0-9]{20}:default$/)
    for (const c of result.sandboxes) own(t, c)
    for (const c of result.sandboxes) assert.equal(await next(c), '2')
    assert.equal(await next(result.sandboxes[0]), '3')
    assert.equal(await next(sbx), '2')
    // The snapshot is a full one, listed with the origin's.
    const snaps = await NovitaSandbox.listSnapshots({ ...server.novita(), sandboxId: sbx.sandboxId }).nextItems()
    assert.deepEqual(snaps.map((s) => s.snapshotId), [result.snapshotTemplateId])
    // And starts more copies like any snapshot.
    const more = own(t, await NovitaSandbox.create(result.snapshotTemplateId, server.novita()))
    assert.equal(await next(more), '2')
  })
})
