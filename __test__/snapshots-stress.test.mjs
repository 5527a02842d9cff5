// Snapshots under load, over raw HTTP (to see every status code): concurrent mixed snapshot /
// create-from-snapshot / delete / list calls on shared snapshots, and disk space that comes back
// after the last snapshot and sandbox go.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox } from 'novita-sandbox'
import { layersRoot, startServer, stopAndCheck } from './helpers.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

const json = { 'content-type': 'application/json' }
async function api(method, path, body) {
  const r = await server.fetch(path, { method, headers: json, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : null, next: r.headers.get('x-next-token') }
}
async function createSandbox(templateID) {
  const r = await api('POST', '/sandboxes', { templateID })
  if (r.status === 201) server.sandboxIds.add(r.body.sandboxID)
  return r
}
async function listAll(limit = 100) {
  const out = []
  let token = null
  for (;;) {
    const r = await api('GET', `/snapshots?limit=${limit}${token ? `&nextToken=${encodeURIComponent(token)}` : ''}`)
    assert.equal(r.status, 200)
    out.push(...r.body.map((s) => s.snapshotID))
    if (!r.next) return out
    token = r.next
  }
}
const layerDirs = () => readdirSync(join(layersRoot(server), 'layers')).filter((n) => !n.startsWith('.'))
const staging = () => {
  const st = join(layersRoot(server), 'layers', '.staging')
  return existsSync(st) ? readdirSync(st) : []
}
const duBytes = (p) => Number(execFileSync('du', ['-s', '-B1', p], { encoding: 'utf8' }).split('\t')[0])
const pick = (arr, i) => arr[i % arr.length]

describe('snapshots under load', () => {
  test('20 concurrent mixed snapshot / create-from-snapshot / delete / list calls, 3 rounds', async () => {
    const novita = server.novita()
    // Two origins with a few MB each, so that copies take long enough to overlap.
    const origins = []
    for (let i = 0; i < 2; i++) {
      const sbx = await Sandbox.create(novita)
      server.sandboxIds.add(sbx.sandboxId)
      await sbx.commands.run(`for j in $(seq 1 20); do head -c 262144 /dev/urandom > /home/user/f$j; done; echo origin${i} > /home/user/who`)
      origins.push(sbx.sandboxId)
    }
    const live = new Set() // snapshot IDs that must be listed
    const made = [] // every snapshot ID ever answered with 201
    const sandboxes = [...origins]
    const children = [] // { id, from }
    for (const o of origins) {
      const r = await api('POST', `/sandboxes/${o}/snapshots`, {})
      assert.equal(r.status, 201)
      live.add(r.body.snapshotID)
      made.push(r.body.snapshotID)
    }
    const statuses = {}
    for (let round = 0; round < 3; round++) {
      // Deletes aim at the older half (racing the creates from them, or meeting the sandboxes
      // of earlier rounds); creates pick from all of them.
      const shared = [...live]
      const doomed = shared.slice(0, Math.ceil(shared.length / 2))
      const ops = Array.from({ length: 20 }, (_, i) => async () => {
        const kind = ['snapshot', 'create', 'delete', 'create', 'list'][i % 5]
        if (kind === 'snapshot') {
          const target = pick(sandboxes, i + round)
          const r = await api('POST', `/sandboxes/${target}/snapshots`, {})
          return { kind, r, target }
        }
        if (kind === 'create') {
          const from = pick(shared, i + round)
          return { kind, r: await createSandbox(from), from }
        }
        if (kind === 'delete') {
          const id = pick(doomed, i + round)
          return { kind, r: await api('DELETE', `/templates/${encodeURIComponent(id)}`), id }
        }
        // Page through with limit 2 while everything changes: never an item twice.
        const seen = []
        let token = null
        for (;;) {
          const r = await api('GET', `/snapshots?limit=2${token ? `&nextToken=${encodeURIComponent(token)}` : ''}`)
          if (r.status !== 200) return { kind, r }
          seen.push(...r.body.map((s) => s.snapshotID))
          if (!r.next) break
          token = r.next
        }
        assert.equal(new Set(seen).size, seen.length, `a listing repeated an item: ${seen}`)
        return { kind, r: { status: 200 } }
      })
      const results = await Promise.all(ops.map((op) => op()))
      for (const { kind, r, from, id } of results) {
        const key = `${kind} ${r.status}`
        statuses[key] = (statuses[key] ?? 0) + 1
        assert.ok(r.status < 500, `${kind}: ${r.status} ${JSON.stringify(r.body)}`)
        if (kind === 'snapshot') {
          assert.equal(r.status, 201, JSON.stringify(r.body))
          live.add(r.body.snapshotID)
          made.push(r.body.snapshotID)
        } else if (kind === 'create') {
          // 404 only when a delete in the same round won the race.
          assert.ok([201, 404].includes(r.status), JSON.stringify(r.body))
          if (r.status === 201) {
            children.push({ id: r.body.sandboxID, from })
            sandboxes.push(r.body.sandboxID)
            assert.equal(r.body.templateID, from.replace(/:default$/, ''))
          }
        } else if (kind === 'delete') {
          assert.ok([204, 400, 404].includes(r.status), JSON.stringify(r.body))
          if (r.status === 204) live.delete(id)
          if (r.status === 400) assert.match(r.body.message, /running sandboxes using it/)
        }
      }
      // A sandbox's snapshot can never have been deleted under it.
      for (const c of children) assert.ok(live.has(c.from), `snapshot ${c.from} was deleted while ${c.id} ran from it`)
      assert.equal(new Set(made).size, made.length, 'duplicate snapshot IDs')
      const listed = await listAll(3)
      assert.equal(new Set(listed).size, listed.length, 'a snapshot listed twice')
      assert.deepEqual([...listed].sort(), [...live].sort(), `round ${round}: listed snapshots differ from the created minus the deleted`)
      assert.deepEqual(staging(), [])
      // Every sandbox made here answers.
      const check = await Promise.all(children.slice(-4).map((c) => Sandbox.connect(c.id, novita).then((s) => s.commands.run('cat /home/user/who'))))
      for (const r of check) assert.match(r.stdout, /^origin[01]\n$/)
    }
    console.log(`concurrency: ${made.length} snapshots made, ${children.length} sandboxes started from them; statuses ${JSON.stringify(statuses)}`)
    assert.ok(statuses['delete 400'] >= 1, 'some deletes met sandboxes using the snapshot')

    // Cleanup: every sandbox, then every snapshot; no layer may remain.
    await Promise.all(sandboxes.map((id) => api('DELETE', `/sandboxes/${id}`).then((r) => assert.equal(r.status, 204))))
    await Promise.all([...live].map((id) => api('DELETE', `/templates/${id}`).then((r) => assert.equal(r.status, 204))))
    assert.deepEqual(await listAll(), [])
    assert.deepEqual(layerDirs(), [], 'layer directories left after every snapshot was deleted')
    assert.deepEqual(staging(), [])
  })

  test('disk space returns: 100 MB + a 20 MB child layer, then nothing after the deletes', async () => {
    const novita = server.novita()
    const layers = join(layersRoot(server), 'layers')
    const empty = duBytes(layers)
    const origin = await Sandbox.create(novita)
    server.sandboxIds.add(origin.sandboxId)
    await origin.commands.run('mkdir /home/user/big && for j in $(seq 1 10); do head -c 10485760 /dev/urandom > /home/user/big/f$j; done', { timeoutMs: 60_000 })
    const s1 = await origin.createSnapshot()
    const afterFirst = duBytes(layers)
    const child = await Sandbox.create(s1.snapshotId, novita)
    server.sandboxIds.add(child.sandboxId)
    await child.commands.run('head -c 20971520 /dev/urandom > /home/user/more', { timeoutMs: 60_000 })
    const s2 = await child.createSnapshot()
    const grandchild = await Sandbox.create(s2.snapshotId, novita)
    server.sandboxIds.add(grandchild.sandboxId)
    assert.equal((await grandchild.commands.run('cat /home/user/big/* | wc -c; wc -c < /home/user/more')).stdout, '104857600\n20971520\n')
    const full = duBytes(layers)
    const MB = 1 << 20
    assert.ok(afterFirst > 100 * MB && afterFirst < 104 * MB, `after the first snapshot: ${afterFirst} bytes`)
    assert.ok(full > 120 * MB && full < 124 * MB, `with the chain: ${full} bytes (the child layer holds only its own 20 MB)`)

    for (const s of [origin, child, grandchild]) await s.kill()
    assert.equal(await Sandbox.deleteSnapshot(s1.snapshotId, novita), true)
    assert.ok(duBytes(layers) > 120 * MB, 'the parent layer stays while its child snapshot needs it')
    assert.equal(await Sandbox.deleteSnapshot(s2.snapshotId, novita), true)
    const end = duBytes(layers)
    console.log(`disk: layers dir ${empty} B empty, ${afterFirst} B with 100 MB, ${full} B with the chain, ${end} B after the deletes`)
    assert.ok(end <= empty + 64 * 1024, `layers take ${end} bytes after every snapshot went (empty: ${empty})`)
    assert.deepEqual(layerDirs(), [])
    assert.deepEqual(readdirSync(join(layersRoot(server), 'sandboxes')), [])
  })
})
