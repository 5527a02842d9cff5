// Snapshots people can manage, through `sandbank` (the SDK and the CLI) on a real `sandbank
// serve`: names (unique among live snapshots, a start reference), labels filtered by the server
// through the paginator, expiry (`ttlMs`) while a sandbox started from the snapshot still runs,
// the server's `--snapshot-ttl` and `--keep-last`, and `sandbank snapshots ls` (table and JSON).
// Every sandbox and snapshot a test creates is killed / deleted by it; each server is checked for
// leftovers when it stops.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox, SandboxError, InvalidArgumentError } from 'sandbank'
import { eventually, layersRoot, sandbankBinary, startServer, stopAndCheck, tracker } from './helpers.mjs'

const bare = (id) => id.replace(/:default$/, '')
const unique = (prefix) => `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`

async function allPages(paginator) {
  const out = []
  while (paginator.hasNext) out.push(...(await paginator.nextItems()))
  return out
}

async function run(sbx, cmd) {
  const r = await sbx.commands.run(cmd, { timeoutMs: 60_000 })
  assert.equal(r.exitCode, 0, `${cmd}: ${r.stderr}`)
  return r.stdout
}

/** `sandbank <args>` against `server`: {status, stdout, stderr}. */
function cli(server, args) {
  const env = { ...process.env, SANDBANK_URL: server.url, SANDBANK_API_KEY: server.apiKey }
  const r = spawnSync(sandbankBinary(), args, { env, encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

// One default server for the suites below but the last.
let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

describe('snapshots: names, labels, expiry (default server)', () => {

  test('a name is unique among live snapshots, starts sandboxes, and is free again once deleted', async (t) => {
    const k = tracker(t, server, Sandbox)
    const sbx = await k.create()
    await run(sbx, 'echo one > /home/user/v.txt')
    const name = unique('named')
    const snap = k.snap(await sbx.createSnapshot({ name, metadata: { stage: 'one' } }))
    assert.deepEqual(snap.names, [name])
    assert.deepEqual(snap.metadata, { stage: 'one' })
    assert.equal(snap.expiresAt, undefined, 'no ttl, no server default: never expires')

    // The name as the start reference, with or without a tag.
    const children = []
    for (const ref of [name, `${name}:default`]) {
      const child = await k.create(ref)
      children.push(child)
      assert.equal(await run(child, 'cat /home/user/v.txt'), 'one\n')
      assert.equal((await child.getInfo()).templateId, bare(snap.snapshotId))
    }

    // The clash: from the same sandbox or another, instance or static; nothing is made.
    const other = await k.create()
    for (const attempt of [() => sbx.createSnapshot({ name }), () => Sandbox.createSnapshot(other.sandboxId, { ...k.opts(), name })]) {
      await assert.rejects(attempt(), (e) => {
        assert.ok(e instanceof SandboxError, `${e?.name}: ${e?.message}`)
        assert.match(e.message, /^409: /)
        assert.ok(e.message.includes(`"${name}"`) && /exists already/.test(e.message), e.message)
        return true
      })
    }
    const byName = await allPages(Sandbox.listSnapshots({ ...k.opts(), name }))
    assert.deepEqual(byName.map((s) => s.snapshotId), [snap.snapshotId], 'one snapshot has the name')

    // Bad labels are named: by the SDK (not strings), by the server (sizes, empty keys).
    await assert.rejects(sbx.createSnapshot({ metadata: { n: 5 } }), (e) => e instanceof InvalidArgumentError && e.message.includes('"n"'))
    await assert.rejects(sbx.createSnapshot({ metadata: { '': 'v' } }), (e) => /^400: /.test(e.message) && e.message.includes('key ""'))
    await assert.rejects(sbx.createSnapshot({ metadata: { big: 'x'.repeat(2000) } }), (e) => /^400: /.test(e.message) && e.message.includes('"big"'))
    await assert.rejects(sbx.createSnapshot({ ttlMs: -1 }), (e) => e instanceof InvalidArgumentError && /ttlMs/.test(e.message))

    // Deleted (once nothing started from it runs), the name is free.
    await assert.rejects(Sandbox.deleteSnapshot(name, k.opts()), (e) => /running sandboxes/.test(e.message))
    for (const child of children) await child.kill()
    assert.equal(await Sandbox.deleteSnapshot(name, k.opts()), true)
    await run(sbx, 'echo two > /home/user/v.txt')
    k.snap(await sbx.createSnapshot({ name }))
    const again = await k.create(name)
    assert.equal(await run(again, 'cat /home/user/v.txt'), 'two\n')
  })

  test('labels: filtered by the server, all pairs, through the paginator page by page', async (t) => {
    const k = tracker(t, server, Sandbox)
    const [a, b] = await Promise.all([k.create(), k.create()])
    const run1 = unique('run')
    const made = []
    // Six snapshots: env alternates, all share the run label; one has a key and value the query
    // string must escape.
    for (let i = 0; i < 6; i++) {
      const sbx = i % 2 ? b : a
      const metadata = { run: run1, env: i % 2 ? 'dev' : 'prod', n: String(i) }
      if (i === 4) metadata['a b&c'] = 'd=e%f'
      made.push(k.snap(await sbx.createSnapshot({ metadata })))
    }
    const ids = (items) => items.map((s) => s.snapshotId)
    const newestFirst = (pick) => made.filter(pick).map((s) => s.snapshotId).reverse()

    const prod = Sandbox.listSnapshots({ ...k.opts(), metadata: { run: run1, env: 'prod' }, limit: 2 })
    const first = await prod.nextItems()
    assert.equal(first.length, 2)
    assert.equal(prod.hasNext, true)
    assert.deepEqual(ids([...first, ...(await allPages(prod))]), newestFirst((_, i) => i % 2 === 0))
    for (const s of first) assert.equal(s.metadata.env, 'prod')

    assert.deepEqual(ids(await allPages(Sandbox.listSnapshots({ ...k.opts(), metadata: { run: run1 }, limit: 4 }))), newestFirst(() => true))
    assert.deepEqual(ids(await allPages(Sandbox.listSnapshots({ ...k.opts(), metadata: { run: run1, 'a b&c': 'd=e%f' } }))), [made[4].snapshotId])
    assert.deepEqual(ids(await allPages(Sandbox.listSnapshots({ ...k.opts(), metadata: { run: run1, env: 'prod', n: '1' } }))), [])
    // With the sandbox filter, and through the instance's own listing.
    assert.deepEqual(ids(await allPages(Sandbox.listSnapshots({ ...k.opts(), sandboxId: b.sandboxId, metadata: { run: run1 } }))), newestFirst((_, i) => i % 2 === 1))
    assert.deepEqual(ids(await allPages(b.listSnapshots({ metadata: { env: 'dev' }, limit: 1 }))), newestFirst((_, i) => i % 2 === 1))
    assert.deepEqual(ids(await allPages(a.listSnapshots({ metadata: { env: 'dev' } }))), [])
    const [four] = await allPages(Sandbox.listSnapshots({ ...k.opts(), metadata: { n: '4', run: run1 } }))
    assert.deepEqual(four.metadata, { run: run1, env: 'prod', n: '4', 'a b&c': 'd=e%f' })
    assert.ok(four.createdAt instanceof Date)
  })

  test('ttlMs: expired while a sandbox started from it runs: it runs on, the snapshot is gone, then deleted', async (t) => {
    const k = tracker(t, server, Sandbox)
    const sbx = await k.create()
    await run(sbx, 'echo kept > /home/user/kept.txt')
    const name = unique('short')
    const t0 = Date.now()
    const snap = k.snap(await Sandbox.createSnapshot(sbx.sandboxId, { ...k.opts(), name, ttlMs: 2000 }))
    assert.ok(snap.expiresAt instanceof Date, 'expiresAt is a Date')
    const ttl = snap.expiresAt.getTime() - t0
    assert.ok(ttl >= 1500 && ttl <= 4000, `expires in ${ttl} ms`)
    const child = await k.create(snap.snapshotId)
    const layer = join(layersRoot(server), 'layers', bare(snap.snapshotId))
    assert.ok(existsSync(layer), 'its layer is on disk')

    // Expired: not listed, not found by ID or name, not deletable (404, as a deleted one).
    await eventually(async () => {
      const listed = await allPages(Sandbox.listSnapshots({ ...k.opts(), sandboxId: sbx.sandboxId }))
      assert.deepEqual(listed.map((s) => s.snapshotId), [])
    }, { timeoutMs: 10_000, intervalMs: 200 })
    assert.deepEqual(await allPages(Sandbox.listSnapshots({ ...k.opts(), name })), [])
    for (const ref of [snap.snapshotId, name]) {
      await assert.rejects(Sandbox.create(ref, k.opts()), (e) => /not found/i.test(e.message), ref)
    }
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, k.opts()), false)

    // The sandbox started from it runs on, on its files; the layer stays while it does (the
    // sweep runs every 2 s: give it two rounds).
    assert.equal(await run(child, 'cat /home/user/kept.txt'), 'kept\n')
    await new Promise((r) => setTimeout(r, 4500))
    assert.equal(await run(child, 'cat /home/user/kept.txt; echo more > /home/user/more.txt; cat /home/user/more.txt'), 'kept\nmore\n')
    assert.ok(existsSync(layer), 'the layer of a snapshot in use stays')
    // Its name is free already.
    const reused = k.snap(await sbx.createSnapshot({ name }))
    assert.deepEqual(reused.names, [name])

    // Once the sandbox is gone, the sweep deletes the snapshot and its layer.
    await Sandbox.kill(child.sandboxId, k.opts())
    await eventually(() => assert.ok(!existsSync(layer), 'the expired layer is deleted'), { timeoutMs: 15_000, intervalMs: 250 })
    // ttlMs 0: never.
    const forever = k.snap(await sbx.createSnapshot({ ttlMs: 0 }))
    assert.equal(forever.expiresAt, undefined)
  })

  test('CLI: snapshots ls shows names, labels and expiry; --json carries them; --name and --metadata filter', async (t) => {
    const k = tracker(t, server, Sandbox)
    const sbx = await k.create()
    const name = unique('cli')
    const label = unique('lbl')
    const named = k.snap(await sbx.createSnapshot({ name, metadata: { team: label, tier: 'gold' }, ttlMs: 3_600_000 }))
    const plain = k.snap(await sbx.createSnapshot({ metadata: { team: label } }))

    const json = cli(server, ['snapshots', 'ls', '--sandbox', sbx.sandboxId, '--json'])
    assert.equal(json.status, 0, json.stderr)
    const items = JSON.parse(json.stdout)
    assert.deepEqual(items.map((s) => s.snapshotID), [plain.snapshotId, named.snapshotId])
    assert.deepEqual(items[1].names, [name])
    assert.deepEqual(items[1].metadata, { team: label, tier: 'gold' })
    assert.equal(Date.parse(items[1].expiresAt), named.expiresAt.getTime())
    assert.equal(items[0].expiresAt, null)
    assert.deepEqual(items[0].metadata, { team: label })

    const table = cli(server, ['snapshots', 'ls', '--sandbox', sbx.sandboxId])
    assert.equal(table.status, 0, table.stderr)
    const [head, ...rows] = table.stdout.trimEnd().split('\n')
    for (const col of ['SNAPSHOT ID', 'NAME', 'EXPIRES', 'LABELS']) assert.ok(head.includes(col), head)
    const row = rows.find((r) => r.startsWith(named.snapshotId))
    assert.ok(row, table.stdout)
    assert.ok(row.includes(` ${name} `), row)
    assert.ok(row.includes(`team=${label},tier=gold`), row)
    assert.ok(row.includes(named.expiresAt.toISOString().slice(0, 16).replace('T', ' ')), row)
    assert.ok(rows.find((r) => r.startsWith(plain.snapshotId)).includes(' never '), table.stdout)

    const filtered = cli(server, ['snapshots', 'ls', '--metadata', `team=${label}`, '--metadata', 'tier=gold', '--json'])
    assert.equal(filtered.status, 0, filtered.stderr)
    assert.deepEqual(JSON.parse(filtered.stdout).map((s) => s.snapshotID), [named.snapshotId])
    const byName = cli(server, ['snapshots', 'ls', '--name', name, '--json'])
    assert.deepEqual(JSON.parse(byName.stdout).map((s) => s.snapshotID), [named.snapshotId])
    const bad = cli(server, ['snapshots', 'ls', '--metadata', 'novalue'])
    assert.notEqual(bad.status, 0)
    assert.match(bad.stderr, /KEY=VALUE/)

    // `sandbank snapshot` takes them too.
    const made = cli(server, ['snapshot', sbx.sandboxId, '--name', `${name}-2`, '--metadata', `team=${label}`, '--ttl', '1h', '--json'])
    assert.equal(made.status, 0, made.stderr)
    const info = k.snap({ snapshotId: JSON.parse(made.stdout).snapshotID })
    const parsed = JSON.parse(made.stdout)
    assert.deepEqual(parsed.names, [`${name}-2`])
    assert.ok(Math.abs(Date.parse(parsed.expiresAt) - Date.now() - 3_600_000) < 60_000, parsed.expiresAt)
    assert.ok(info.snapshotId)
    const clash = cli(server, ['snapshot', sbx.sandboxId, '--name', name])
    assert.notEqual(clash.status, 0)
    assert.match(clash.stderr, /409.*exists already/)
  })
})

describe('restore in place (default server)', () => {

  test('back to a snapshot after files were written and deleted: same ID, token, timeout and metadata', async (t) => {
    const k = tracker(t, server, Sandbox)
    const sbx = await k.create(undefined, { metadata: { who: 'restore' }, timeoutMs: 600_000 })
    await run(sbx, 'mkdir -p /home/user/d && echo kept > /home/user/d/a.txt && echo gone > /home/user/b.txt')
    const snap = k.snap(await sbx.createSnapshot())
    const before = await sbx.getInfo()
    await run(sbx, 'rm -rf /home/user/d && echo changed > /home/user/b.txt && echo new > /home/user/c.txt')

    await sbx.restore(snap.snapshotId)
    // The same sandbox object goes on working: same ID and access token.
    assert.equal(await run(sbx, 'cat /home/user/d/a.txt /home/user/b.txt'), 'kept\ngone\n')
    assert.equal(await run(sbx, 'test -e /home/user/c.txt && echo present || echo absent'), 'absent\n')
    assert.equal(await sbx.files.read('/home/user/d/a.txt'), 'kept\n')
    const info = await sbx.getInfo()
    assert.equal(info.sandboxId, sbx.sandboxId)
    assert.deepEqual(info.metadata, { who: 'restore' })
    assert.equal(info.state, 'running')
    assert.equal(info.endAt.getTime(), before.endAt.getTime(), 'the timeout is kept')
    // Listed once, running.
    const listed = await allPages(Sandbox.list(k.opts()))
    assert.equal(listed.filter((s) => s.sandboxId === sbx.sandboxId).length, 1)

    // Again (a snapshot of its lineage, by name this time, through the static call) after more changes.
    const name = unique('point')
    k.snap(await sbx.createSnapshot({ name }))
    await run(sbx, 'echo later > /home/user/b.txt')
    await Sandbox.restore(sbx.sandboxId, name, k.opts())
    assert.equal(await run(sbx, 'cat /home/user/b.txt'), 'gone\n')
  })

  test('a snapshot with memory brings its processes back; another lineage needs force; bad input named', async (t) => {
    const k = tracker(t, server, Sandbox)
    const sbx = await k.create()
    // A process whose memory holds what it was started with.
    await sbx.commands.run(`python3 -c "import time; x = 'in-memory'; open('/tmp/ready','w').write('1'); time.sleep(3600)" &`, { background: true })
    await eventually(async () => assert.equal(await run(sbx, 'cat /tmp/ready'), '1'))
    const full = k.snap(await sbx.createSnapshot())
    // ([t]: not the shell running pkill, whose own command line says time.sleep)
    await run(sbx, 'pkill -f "[t]ime.sleep"; rm /tmp/ready')
    await sbx.restore(full.snapshotId)
    if (full.mode === 'full') {
      assert.match(await run(sbx, 'pgrep -f \"[t]ime.sleep\" || true'), /\d+/, 'the process is back')
      assert.equal(await run(sbx, 'cat /tmp/ready'), '1')
    } else {
      console.log(`# no memory snapshots here (${full.mode}): files only`)
    }

    // A snapshot of another sandbox: refused, nothing changed; with force, restored.
    const other = await k.create()
    await run(other, 'echo other > /home/user/who.txt')
    const foreign = k.snap(await other.createSnapshot())
    await run(sbx, 'echo mine > /home/user/who.txt')
    await assert.rejects(sbx.restore(foreign.snapshotId), (e) => {
      assert.ok(e instanceof SandboxError, `${e?.name}: ${e?.message}`)
      assert.match(e.message, /^409: /)
      assert.ok(e.message.includes('lineage') && e.message.includes(other.sandboxId), e.message)
      return true
    })
    assert.equal(await run(sbx, 'cat /home/user/who.txt'), 'mine\n', 'a refusal changes nothing')
    await sbx.restore(foreign.snapshotId, { force: true })
    assert.equal(await run(sbx, 'cat /home/user/who.txt'), 'other\n')
    // Now of that lineage: its snapshots restore without force.
    k.snap(await sbx.createSnapshot())

    await assert.rejects(sbx.restore(''), (e) => e instanceof InvalidArgumentError && /snapshotId/.test(e.message))
    await assert.rejects(sbx.restore('nosuchsnapshot'), (e) => e.name === 'NotFoundError' && e.message.includes('nosuchsnapshot'))
    await assert.rejects(Sandbox.restore('nosuchsandbox0000000', foreign.snapshotId, k.opts()), (e) => e.name === 'SandboxNotFoundError')
    await assert.rejects(sbx.restore('base'), (e) => /^409: /.test(e.message) && /a template, not a snapshot/.test(e.message))
    await sbx.pause()
    await assert.rejects(sbx.restore(foreign.snapshotId), (e) => /^409: /.test(e.message) && /paused/.test(e.message))
    await sbx.connect()
    assert.equal(await run(sbx, 'cat /home/user/who.txt'), 'other\n')
  })
})

describe('snapshots diff (default server)', () => {

  test('sandbank snapshots diff: added, changed and removed against the parent, from the layer', async (t) => {
    const k = tracker(t, server, Sandbox)
    const sbx = await k.create()
    await run(sbx, 'mkdir -p /home/user/d && echo a > /home/user/d/a.txt && echo b > /home/user/b.txt && echo c > /home/user/c.txt && ln -s b.txt /home/user/link')
    const parent = k.snap(await sbx.createSnapshot())
    const child = await k.create(parent.snapshotId)
    await run(child, 'echo changed > /home/user/b.txt && rm /home/user/c.txt && echo new > /home/user/d/new.txt && sudo rm /etc/motd && sudo touch /usr/local/bin/tool')
    const snap = k.snap(await child.createSnapshot())

    const json = cli(server, ['snapshots', 'diff', snap.snapshotId, '--json'])
    assert.equal(json.status, 0, json.stderr)
    const diff = JSON.parse(json.stdout)
    assert.equal(diff.snapshotID, snap.snapshotId)
    assert.equal(diff.parentSnapshotID, parent.snapshotId)
    assert.deepEqual(diff.removed, ['/etc/motd', '/home/user/c.txt'])
    assert.ok(diff.added.includes('/home/user/d/new.txt') && diff.added.includes('/usr/local/bin/tool'), JSON.stringify(diff))
    assert.ok(diff.changed.includes('/home/user/b.txt'), JSON.stringify(diff))
    for (const untouched of ['/home/user/d/a.txt', '/home/user/link']) {
      assert.ok(![...diff.added, ...diff.changed, ...diff.removed].includes(untouched), `${untouched} in ${JSON.stringify(diff)}`)
    }

    // The first snapshot against the template: what the origin wrote.
    const first = JSON.parse(cli(server, ['snapshots', 'diff', parent.snapshotId, '--json']).stdout)
    assert.equal(first.parentSnapshotID, null)
    for (const p of ['/home/user/d', '/home/user/d/a.txt', '/home/user/b.txt', '/home/user/c.txt', '/home/user/link']) {
      assert.ok(first.added.includes(p), `${p} not added: ${JSON.stringify(first)}`)
    }

    const text = cli(server, ['snapshots', 'diff', snap.snapshotId])
    assert.equal(text.status, 0, text.stderr)
    assert.match(text.stdout, /^C \/home\/user\/b\.txt$/m)
    assert.match(text.stdout, /^D \/home\/user\/c\.txt$/m)
    assert.match(text.stdout, /^A \/home\/user\/d\/new\.txt$/m)
    const missing = cli(server, ['snapshots', 'diff', 'nosuchsnapshot'])
    assert.notEqual(missing.status, 0)
    assert.match(missing.stderr, /nosuchsnapshot/)
    const rest = await server.fetch(`/snapshots/${encodeURIComponent(bare(snap.snapshotId))}/diff`)
    assert.equal(rest.status, 200)
    assert.deepEqual(await rest.json(), diff)
  })
})

describe('snapshots: sandbank serve --snapshot-ttl 1h --keep-last 2', () => {
  let server
  before(async () => {
    server = await startServer({ extraArgs: ['--snapshot-ttl', '1h', '--keep-last', '2'] })
  })
  after(async () => {
    if (server) await stopAndCheck(server)
  })

  test('the default ttl is reported; keep-last expires the older snapshots of each sandbox', async (t) => {
    const k = tracker(t, server, Sandbox)
    const [a, b] = await Promise.all([k.create(), k.create()])
    const t0 = Date.now()
    const a1 = k.snap(await a.createSnapshot())
    const ttl = a1.expiresAt.getTime() - t0
    assert.ok(Math.abs(ttl - 3_600_000) < 60_000, `the server's default: expires in ${ttl} ms`)
    const b1 = k.snap(await b.createSnapshot())
    const a2 = k.snap(await a.createSnapshot({ ttlMs: 0 }))
    assert.equal(a2.expiresAt, undefined, 'ttlMs 0 overrides the default')
    // A sandbox started from a1 keeps it (and its layer) after keep-last expires it.
    const child = await k.create(a1.snapshotId)
    const a3 = k.snap(await a.createSnapshot({ name: unique('third') }))
    const ids = async (sandboxId) => (await allPages(Sandbox.listSnapshots({ ...k.opts(), sandboxId }))).map((s) => s.snapshotId)
    assert.deepEqual(await ids(a.sandboxId), [a3.snapshotId, a2.snapshotId], 'the newest two of a')
    assert.deepEqual(await ids(b.sandboxId), [b1.snapshotId], "b's are its own")
    await assert.rejects(Sandbox.create(a1.snapshotId, k.opts()), (e) => /not found/i.test(e.message))
    const layer = join(layersRoot(server), 'layers', bare(a1.snapshotId))
    assert.ok(existsSync(layer))
    assert.equal(await run(child, 'echo alive'), 'alive\n')
    await Sandbox.kill(child.sandboxId, k.opts())
    await eventually(() => assert.ok(!existsSync(layer), 'deleted once unused'), { timeoutMs: 15_000, intervalMs: 250 })
    // One more: a2 (the oldest of the two kept) goes.
    const a4 = k.snap(await a.createSnapshot())
    assert.deepEqual(await ids(a.sandboxId), [a4.snapshotId, a3.snapshotId])
  })
})
