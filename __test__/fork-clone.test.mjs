// Copies of a running sandbox with its memory (issue 14): E2B's `fork` through the published
// `e2b` SDK, Novita's `clone` through `novita-sandbox`, and both through `sandbank`'s own SDK, on
// one `sandbank serve`. A Python server holds a counter in memory only and serves it on loopback:
// every copy answers with the origin's count and goes on by itself, while the origin goes on too.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer } from 'node:http'
import * as e2b from 'e2b'
import { Sandbox as E2bSandbox, SandboxNotFoundError } from 'e2b'
import { Sandbox as NovitaSandbox } from 'novita-sandbox'
import * as sandbank from 'sandbank'
import { startServer, stopAndCheck, rejectsWith, eventually, allProcesses, guestProcessesOfServer, serverGenerations, sandbankBinary, userNamespaceOwner, layersRoot } from './helpers.mjs'

const { Sandbox: SbSandbox } = sandbank
/** A subclass: what `fork` and `clone` make is of the class they are called on. */
class MySandbox extends SbSandbox {}

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

/** A sandbox (through `Sdk`, on `srv`) running the counter server (holding `ballastMb` more in
 * memory), started by a command that has ended. */
async function origin(t, Sdk, { srv = server, ballastMb = 0 } = {}) {
  const sbx = await Sdk.create({ ...srv.e2b(), timeoutMs: 300_000 })
  srv.sandboxIds.add(sbx.sandboxId)
  t.after(() => (srv.stopped ? undefined : sbx.kill().catch(() => {})))
  await sbx.files.write('/home/user/counter.py', COUNTER)
  await sbx.commands.run(`BALLAST_MB=${ballastMb} nohup python3 /home/user/counter.py >/dev/null 2>&1 &`)
  for (let i = 0; i < 300; i++) {
    const r = await sbx.commands.run(`${FETCH} 2>/dev/null || true`)
    if (r.stdout.trim() === '1') return sbx
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.fail('the counter server did not come up')
}

/** A sandbox through `Sdk` (its counter at 2, a note written) forked twice: each fork goes on from
 * the origin's count, with its files and a hostname of its own. */
async function twoForks(t, Sdk) {
  const sbx = await origin(t, Sdk)
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
  return { sbx, forks }
}

/** Two forks of `sbx` (its counter at 2, its note written, both forks' counters at 3) go on
 * apart from each other and from it, each in a user namespace with an owner of its own. */
async function forksAreApart(sbx, forks) {
  assert.equal(await next(forks[0]), '4')
  assert.equal(await next(forks[1]), '4', 'the forks are apart')
  if (process.env.SANDBANK_TEST_NO_USERNS !== '1') {
    // Each copy's user namespace has an owner of its own, as a sandbox started afresh does.
    const owners = await Promise.all([sbx, ...forks].map(userNamespaceOwner))
    assert.ok(owners.every((x) => x >= 2_000_000_000), `owned by unprivileged host ids: ${owners}`)
    assert.equal(new Set(owners).size, 3, `three owners: ${owners}`)
  }
  assert.equal(await next(sbx), '3', 'the origin goes on by itself')
  await forks[0].files.write('/home/user/note.txt', 'changed in a fork')
  assert.equal(await forks[1].files.read('/home/user/note.txt'), 'before the fork')
  assert.equal(await sbx.files.read('/home/user/note.txt'), 'before the fork')
}

function own(t, sbx) {
  server.sandboxIds.add(sbx.sandboxId)
  t.after(() => sbx.kill().catch(() => {}))
  return sbx
}

describe('e2b: fork', () => {
  test('every fork has the origin memory and goes on by itself; so does the origin', async (t) => {
    const { sbx, forks } = await twoForks(t, E2bSandbox)
    await forksAreApart(sbx, forks)
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

  test('a command stream still followed: the origin keeps it, the fork has the command without it', async (t) => {
    const sbx = await origin(t, E2bSandbox)
    const ticks = []
    const handle = await sbx.commands.run('i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done', { background: true, onStdout: (d) => ticks.push(d) })
    await eventually(() => assert.ok(ticks.length > 0))
    const [f] = await sbx.fork({ count: 1 })
    assert.ok(!(f instanceof Error), String(f))
    own(t, f)
    // The fork runs the loop on (its envd finds the stream's connection closed) and serves as usual.
    assert.equal(await next(f), '2')
    const loop = `pgrep -f "[w]hile true; do i=" | wc -l`
    assert.equal((await f.commands.run(loop)).stdout.trim(), '1')
    // The origin's stream goes on.
    const seen = ticks.length
    await eventually(() => assert.ok(ticks.length > seen + 2))
    await handle.kill()
    assert.equal(await next(sbx), '2')
  })
})

describe('sandbank: fork', () => {
  test('every fork has the origin memory and is a sandbox like any other; so does the origin', async (t) => {
    const { sbx, forks } = await twoForks(t, SbSandbox)
    for (const f of forks) assert.ok(f instanceof SbSandbox, String(f))
    assert.ok(!forks.some((f) => f.sandboxId === sbx.sandboxId))
    for (const f of forks) {
      assert.equal(await f.isRunning(), true)
      // The timeout asked for, counted from the fork.
      const info = await f.getInfo()
      assert.equal(info.state, 'running')
      const ttl = info.endAt.getTime() - Date.now()
      assert.ok(ttl > 90_000 && ttl <= 121_000, `the fork ends in ${ttl} ms`)
    }
    await forksAreApart(sbx, forks)
    // Found like any sandbox, and it outlives its origin.
    assert.equal((await SbSandbox.connect(forks[1].sandboxId, server.novita())).sandboxId, forks[1].sandboxId)
    await sbx.kill()
    assert.equal(await next(forks[0]), '5')
    await forks[0].kill()
    assert.equal(await SbSandbox.kill(forks[0].sandboxId, server.novita()), false)
  })

  test('the static form makes copies of its own class; an unknown sandbox is SandboxNotFoundError', async (t) => {
    const sbx = await origin(t, SbSandbox)
    const forks = await MySandbox.fork(sbx.sandboxId, { ...server.novita(), count: 1 })
    assert.equal(forks.length, 1)
    const [f] = forks
    assert.ok(f instanceof MySandbox, String(f))
    own(t, f)
    assert.equal(await next(f), '2')
    assert.equal((await f.commands.run('echo copy')).stdout, 'copy\n')
    const err = await rejectsWith(SbSandbox.fork('abcdefghij0123456789', server.novita()), sandbank.SandboxNotFoundError)
    assert.equal(err.name, 'SandboxNotFoundError')
    assert.equal(err.message, 'Sandbox abcdefghij0123456789 not found')
    // A sandbox that was killed is no more found.
    await sbx.kill()
    await rejectsWith(sbx.fork(), sandbank.SandboxNotFoundError)
  })

  test('a bad count or timeoutMs: a clear error, and no copy', async (t) => {
    const sbx = own(t, await SbSandbox.create(server.novita()))
    const running = async () => (await SbSandbox.list(server.novita()).nextItems()).map((s) => s.sandboxId).sort()
    const before = await running()
    // The server checks the count, as the cloud does: its 400, as every API error, names it.
    for (const [count, message] of [
      [0, '400: Invalid count 0: must be between 1 and 100'],
      [-1, '400: Invalid count -1: must be between 1 and 100'],
      [101, '400: Invalid count 101: must be between 1 and 100'],
      [1.5, /^400: Invalid request body: field "count": .*\(got 1\.5\)$/],
    ]) {
      for (const call of [() => sbx.fork({ count }), () => SbSandbox.fork(sbx.sandboxId, { ...server.novita(), count }), () => SbSandbox.clone(sbx.sandboxId, { ...server.novita(), count })]) {
        const err = await rejectsWith(call(), sandbank.SandboxError)
        assert.equal(err.name, 'SandboxError')
        if (message instanceof RegExp) assert.match(err.message, message)
        else assert.equal(err.message, message)
      }
    }
    // What a request cannot carry, refused before it.
    for (const [opts, message] of [
      [{ count: NaN }, 'Invalid count NaN: expected a whole number of copies'],
      [{ count: Infinity }, 'Invalid count Infinity: expected a whole number of copies'],
      [{ timeoutMs: -1 }, 'Invalid timeoutMs -1: expected a number of milliseconds, 0 or more'],
      [{ timeoutMs: -5000 }, 'Invalid timeoutMs -5000: expected a number of milliseconds, 0 or more'],
      [{ count: 1, timeoutMs: NaN }, 'Invalid timeoutMs NaN: expected a number of milliseconds, 0 or more'],
    ]) {
      for (const call of [() => sbx.fork(opts), () => SbSandbox.clone(sbx.sandboxId, { ...server.novita(), ...opts })]) {
        const err = await rejectsWith(call(), sandbank.InvalidArgumentError)
        assert.equal(err.name, 'InvalidArgumentError')
        assert.equal(err.message, message)
      }
    }
    assert.deepEqual(await running(), before, 'no copy was made')
  })

  test("each copy's error is the class the same code of a response is, as in e2b", async (t) => {
    // A fake API whose fork answers one sandbox and three copies that did not start: what both
    // SDKs send, and what they make of the answer.
    const bodies = []
    const fake = createServer((req, res) => {
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => {
        bodies.push({ url: req.url, body: JSON.parse(body) })
        const copy = { sandboxID: 'copy1abcdefghij01234', templateID: 't', envdVersion: '0.5.7', envdAccessToken: 'tok' }
        const answer = req.url.endsWith('/clone')
          ? { sandboxes: [copy], snapshotTemplateId: 'snap1abcdefghij01234:default' }
          : [
              { sandbox: { ...copy, clientID: 'c' } },
              { error: { code: 404, message: 'gone' } },
              { error: { code: 429, message: 'slow down' } },
              { error: { code: 500, message: 'boom' } },
            ]
        res.writeHead(201, { 'content-type': 'application/json' })
        res.end(JSON.stringify(answer))
      })
    })
    await new Promise((r) => fake.listen(0, '127.0.0.1', r))
    t.after(() => fake.close())
    const url = `http://127.0.0.1:${fake.address().port}`
    const opts = { apiKey: 'k', apiUrl: url, sandboxUrl: url, requestTimeoutMs: 10_000, count: 4, timeoutMs: 59_001 }
    const ours = await MySandbox.fork('origin1abcdefghij0123', opts)
    const theirs = await E2bSandbox.fork('origin1abcdefghij0123', opts)
    assert.deepEqual(bodies[0], { url: '/sandboxes/origin1abcdefghij0123/fork', body: { count: 4, timeout: 60 } })
    assert.deepEqual(bodies[1], bodies[0], 'the same request as e2b')
    assert.ok(ours[0] instanceof MySandbox)
    assert.equal(ours[0].sandboxId, 'copy1abcdefghij01234')
    assert.ok(theirs[0] instanceof E2bSandbox)
    const classes = [sandbank.NotFoundError, sandbank.RateLimitError, sandbank.SandboxError]
    for (let i = 1; i < 4; i++) {
      assert.ok(ours[i] instanceof classes[i - 1], `${ours[i]?.name}: ${ours[i]?.message}`)
      assert.ok(ours[i] instanceof sandbank.SandboxError)
      assert.ok(theirs[i] instanceof e2b[classes[i - 1].name], `e2b: ${theirs[i]?.name}`)
      assert.equal(ours[i].name, classes[i - 1].name)
      assert.equal(ours[i].message, theirs[i].message, 'the message e2b gives')
    }
    assert.deepEqual(ours.slice(1).map((e) => e.message), ['404: gone', 'Rate limit exceeded, please try again later - slow down', '500: boom'])
    // Clone sends what novita-sandbox sends, and gives what it gives.
    bodies.length = 0
    const cloned = await MySandbox.clone('origin1abcdefghij0123', { ...opts, strict: true, nodeId: 'n1' })
    const theirClone = await NovitaSandbox.clone('origin1abcdefghij0123', { ...opts, strict: true, nodeId: 'n1' })
    assert.deepEqual(bodies[0], { url: '/sandboxes/origin1abcdefghij0123/clone', body: { count: 4, strict: true, nodeID: 'n1', timeout: 60 } })
    assert.deepEqual(bodies[1], bodies[0], 'the same request as novita-sandbox')
    assert.ok(cloned.sandboxes[0] instanceof MySandbox)
    const shape = (r) => ({ ids: r.sandboxes.map((s) => s.sandboxId), count: r.count, snapshotTemplateId: r.snapshotTemplateId })
    assert.deepEqual(shape(cloned), shape(theirClone))
    assert.deepEqual(shape(cloned), { ids: ['copy1abcdefghij01234'], count: 1, snapshotTemplateId: 'snap1abcdefghij01234:default' })
  })
})

describe('createSnapshot keeps the memory by default, through every SDK', () => {
  for (const [name, Sdk] of [['e2b', E2bSandbox], ['novita-sandbox', NovitaSandbox], ['sandbank', SbSandbox]]) {
    test(`${name}: a sandbox started from the snapshot goes on with the counter, apart from the origin`, async (t) => {
      const sbx = await origin(t, Sdk)
      const snap = await sbx.createSnapshot()
      const copy = own(t, await Sdk.create(snap.snapshotId, { ...server.e2b(), timeoutMs: 120_000 }))
      assert.equal(await next(copy), '2')
      assert.equal(await next(copy), '3')
      assert.equal(await next(sbx), '2')
    })
  }
})

describe('sandbank: clone', () => {
  test('clones have the origin memory; the snapshot they started from is named', async (t) => {
    const sbx = await origin(t, SbSandbox)
    const result = await MySandbox.clone(sbx.sandboxId, { ...server.novita(), count: 2, strict: true, timeoutMs: 120_000 })
    assert.equal(result.count, 2)
    assert.equal(result.sandboxes.length, 2)
    assert.match(result.snapshotTemplateId, /^[a-z0-9]{20}:default$/)
    for (const c of result.sandboxes) {
      assert.ok(c instanceof MySandbox)
      own(t, c)
    }
    for (const c of result.sandboxes) assert.equal(await next(c), '2')
    assert.equal(await next(result.sandboxes[0]), '3')
    assert.equal(await next(result.sandboxes[1]), '3')
    assert.equal(await next(sbx), '2')
    await result.sandboxes[1].files.write('/tmp/mine', 'clone 1')
    assert.equal(await result.sandboxes[1].files.read('/tmp/mine'), 'clone 1')
    assert.equal(await result.sandboxes[0].files.exists('/tmp/mine'), false)
    // The snapshot is a full one, listed with the origin's, and starts more copies like any snapshot.
    const snaps = await sbx.listSnapshots().nextItems()
    assert.deepEqual(snaps.map((s) => s.snapshotId), [result.snapshotTemplateId])
    const more = own(t, await SbSandbox.create(result.snapshotTemplateId, server.novita()))
    assert.equal(await next(more), '2')
    // Without options: one copy.
    const one = await SbSandbox.clone(sbx.sandboxId, server.novita())
    assert.equal(one.count, 1)
    own(t, one.sandboxes[0])
    assert.equal(await next(one.sandboxes[0]), '3')
    const err = await rejectsWith(SbSandbox.clone('abcdefghij0123456789', server.novita()), sandbank.SandboxNotFoundError)
    assert.equal(err.message, 'Sandbox abcdefghij0123456789 not found')
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
    // The same through sandbank: the server's 501 as a SandboxError, naming what is missing.
    const mine = await SbSandbox.connect(sbx.sandboxId, bare.novita())
    for (const call of [() => mine.fork({ count: 1 }), () => SbSandbox.fork(sbx.sandboxId, bare.novita()), () => SbSandbox.clone(sbx.sandboxId, bare.novita())]) {
      const err = await rejectsWith(call(), sandbank.SandboxError)
      assert.equal(err.name, 'SandboxError')
      assert.ok(err.message.startsWith('501: ') && err.message.includes('/nonexistent/criu'), err.message)
    }
    assert.deepEqual((await SbSandbox.list(bare.novita()).nextItems()).map((s) => s.sandboxId), [sbx.sandboxId], 'no copy was made')
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

describe('a server killed with SIGKILL while it dumps a sandbox', () => {
  /** The CRIU dumps into data directory `dataDir`. */
  const dumps = (dataDir) => allProcesses().filter((p) => p.argv[1] === 'dump' && p.cmdline.includes(dataDir))

  for (const what of ['snapshot', 'pause']) test(`${what}: CRIU goes with it, and the next server has nothing half done`, async (t) => {
    const { first, next: restart } = await serverGenerations(t)
    const dataDir = first.dataDir
    // 300 MB in memory: the dump takes a while.
    const sbx = await origin(t, E2bSandbox, { srv: first, ballastMb: 300 })

    const path = what === 'snapshot' ? 'snapshots' : 'pause'
    const asked = first.fetch(`/sandboxes/${sbx.sandboxId}/${path}`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } }).catch(() => null)
    await eventually(() => assert.ok(dumps(dataDir).length > 0, 'CRIU dumps'), { intervalMs: 5 })
    first.proc.kill('SIGKILL')
    await first.stop()
    first.stopped = true
    assert.equal(await asked, null, 'the request got no answer')
    await eventually(() => assert.deepEqual(dumps(dataDir), [], 'CRIU outlived the server'), { timeoutMs: 500 })

    const second = await restart()
    second.sandboxIds.add(sbx.sandboxId)
    await eventually(() => assert.deepEqual(guestProcessesOfServer(dataDir), []))
    const staging = join(layersRoot(second), 'layers', '.staging')
    assert.deepEqual(existsSync(staging) ? readdirSync(staging) : [], [], 'no half layer or images')
    const snapshots = await (await second.fetch('/snapshots')).json()
    assert.deepEqual(snapshots, [], 'no snapshot was published')
    const layers = readdirSync(join(layersRoot(second), 'layers')).filter((n) => !n.startsWith('.'))
    assert.deepEqual(layers, [])
    if (what === 'pause') {
      // It was recorded paused before the dump: it is paused, with its files and no images, and
      // starts again on its files.
      const sandboxDir = join(layersRoot(second), 'sandboxes', sbx.sandboxId)
      assert.ok(!existsSync(join(sandboxDir, 'memory.partial')) && !existsSync(join(sandboxDir, 'memory')))
      const back = await E2bSandbox.connect(sbx.sandboxId, second.e2b())
      assert.equal(await back.files.read('/home/user/counter.py'), COUNTER)
      await back.kill()
    } else {
      assert.deepEqual(readdirSync(join(layersRoot(second), 'sandboxes')), [], 'the running sandbox went with the server')
    }
  })
})

describe('a new sandbank binary', () => {
  test('a snapshot with memory taken with the old one still starts copies that go on', async (t) => {
    // Two copies of the binary: to the server they are two builds (each gets its envd layer).
    const bins = mkdtempSync(join(tmpdir(), 'sandbank-bins-'))
    t.after(() => rmSync(bins, { recursive: true, force: true }))
    const [oldBin, newBin] = ['old', 'new'].map((n) => {
      const p = join(bins, `sandbank-${n}`)
      copyFileSync(sandbankBinary(), p)
      chmodSync(p, 0o755)
      return p
    })
    const { first, next: restart } = await serverGenerations(t, { binary: oldBin })
    const dataDir = first.dataDir
    const sbx = await origin(t, E2bSandbox, { srv: first })
    const snap = await sbx.createSnapshot()
    await sbx.kill()
    await first.stop()
    first.stopped = true

    const second = await restart({ binary: newBin })
    const envdLayers = () => readdirSync(join(dataDir, 'envd')).filter((n) => !n.startsWith('.'))
    assert.equal(envdLayers().length, 2, 'the old envd stays while a snapshot was taken with it')
    const copy = await E2bSandbox.create(snap.snapshotId, { ...second.e2b(), timeoutMs: 300_000 })
    second.sandboxIds.add(copy.sandboxId)
    assert.equal(await next(copy), '2', 'restored with the envd it ran')
    await copy.kill()
    assert.equal(await E2bSandbox.deleteSnapshot(snap.snapshotId, second.e2b()), true)
    await second.stop()
    second.stopped = true

    await restart({ binary: newBin })
    assert.equal(envdLayers().length, 1, 'and goes once nothing was taken with it')
  })
})
