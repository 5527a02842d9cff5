// Pause and resume, the timeout lifecycle, metrics, and secure sandboxes (access token, signed
// URLs), through the published `novita-sandbox` SDK against a real `sandbank serve`.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox, SandboxNotFoundError } from 'novita-sandbox'
import { startServer, stopAndCheck, eventually, assertNoLeftovers, sandbankCgroups, guestProcessesOf, serverGenerations, layersRoot } from './helpers.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

/** Creates a sandbox on `srv` that is killed when test `t` ends. */
async function create(t, opts = {}, srv = server) {
  const sbx = await Sandbox.create({ ...srv.novita(), ...opts })
  srv.sandboxIds.add(sbx.sandboxId)
  t.after(async () => {
    if (!srv.stopped) await Sandbox.kill(sbx.sandboxId, srv.novita())
  })
  return sbx
}

/** A process that counts up in /tmp/counter, ten times a second; resolves to its pid. Its output
 * stream is not followed (a followed one keeps a paused sandbox in memory). */
async function startCounter(sbx) {
  const handle = await sbx.commands.run('n=0; while true; do n=$((n+1)); echo $n > /tmp/counter; sleep 0.1; done', { background: true })
  await handle.disconnect()
  return eventually(async () => {
    const r = await sbx.commands.run('pgrep -f "[w]hile true" | head -1; cat /tmp/counter')
    const [pid, count] = r.stdout.trim().split('\n').map(Number)
    assert.ok(pid > 0 && count > 0, r.stdout)
    return pid
  })
}

/** The counter's value, read from the host side of the sandbox's upper layer (works while paused). */
function counterOnHost(srv, id) {
  return Number(readFileSync(join(layersRoot(srv), 'sandboxes', id, 'layer', 'root', 'tmp', 'counter'), 'utf8'))
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

describe('pause and resume', () => {
  test('pause writes the processes\' memory to disk and frees it; connect resumes the same sandbox and processes', async (t) => {
    const sbx = await create(t)
    await sbx.files.write('/home/user/kept.txt', 'before the pause')
    const pid = await startCounter(sbx)

    assert.equal(await sbx.pause(), true)
    assert.equal(await Sandbox.pause(sbx.sandboxId, server.novita()), false, 'a second pause is a 409: false')
    const info = await Sandbox.getInfo(sbx.sandboxId, server.novita())
    assert.equal(info.state, 'paused')
    const paused = await Sandbox.list({ ...server.novita(), query: { state: ['paused'] } }).nextItems()
    assert.deepEqual(paused.map((s) => s.sandboxId), [sbx.sandboxId])
    const running = await Sandbox.list({ ...server.novita(), query: { state: ['running'] } }).nextItems()
    assert.ok(!running.some((s) => s.sandboxId === sbx.sandboxId))
    assert.equal(await sbx.isRunning(), false, 'envd of a paused sandbox does not answer')

    // Its memory is on disk (the test setup provides CRIU) and nothing of it is left running or
    // holding RAM: no process, no cgroup. The counter does not move while paused.
    assert.ok(existsSync(join(layersRoot(server), 'sandboxes', sbx.sandboxId, 'memory')), 'its memory is written to disk')
    assert.deepEqual(guestProcessesOf(sbx.sandboxId), [])
    assert.deepEqual(sandbankCgroups([sbx.sandboxId]).filter((c) => c.includes(sbx.sandboxId)), [])
    const frozenAt = counterOnHost(server, sbx.sandboxId)
    await sleep(500)
    assert.equal(counterOnHost(server, sbx.sandboxId), frozenAt)

    const resumed = await Sandbox.connect(sbx.sandboxId, server.novita())
    assert.equal(resumed.sandboxId, sbx.sandboxId)
    assert.equal((await resumed.getInfo()).state, 'running')
    assert.equal(await resumed.files.read('/home/user/kept.txt'), 'before the pause')
    // The same process carries on counting from where it stopped; its images are gone.
    const again = await resumed.commands.run(`kill -0 ${pid} && cat /tmp/counter`)
    assert.ok(Number(again.stdout) >= frozenAt, `${again.stdout} < ${frozenAt}`)
    await eventually(async () => assert.ok(counterOnHost(server, sbx.sandboxId) > frozenAt + 2))
    assert.ok(!existsSync(join(layersRoot(server), 'sandboxes', sbx.sandboxId, 'memory')), 'the images go once resumed')
  })

  test('while an SDK follows a command\'s output, a pause keeps the sandbox in memory: the stream goes on after connect', async (t) => {
    const sbx = await create(t)
    const lines = []
    const handle = await sbx.commands.run('i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done', { background: true, onStdout: (d) => lines.push(d) })
    await eventually(() => assert.ok(lines.length > 0))
    await sbx.pause()
    assert.ok(!existsSync(join(layersRoot(server), 'sandboxes', sbx.sandboxId, 'memory')), 'not written to disk')
    assert.ok(guestProcessesOf(sbx.sandboxId).length > 0, 'its processes are kept, frozen')
    await Sandbox.connect(sbx.sandboxId, server.novita())
    const seen = lines.length
    await eventually(() => assert.ok(lines.length > seen + 2, 'the stream goes on'))
    await handle.kill()
    // Once nothing follows a stream, the next pause writes the memory to disk.
    await sbx.pause()
    assert.ok(existsSync(join(layersRoot(server), 'sandboxes', sbx.sandboxId, 'memory')))
  })

  test('without CRIU a paused sandbox stays frozen in memory, and thaws', async (t) => {
    const bare = await startServer({ env: { SANDBANK_CRIU: '/nonexistent/criu' } })
    let sbx
    t.after(async () => {
      if (sbx) await Sandbox.kill(sbx.sandboxId, bare.novita())
      await stopAndCheck(bare)
    })
    sbx = await Sandbox.create(bare.novita())
    bare.sandboxIds.add(sbx.sandboxId)
    const pid = await startCounter(sbx)
    await sbx.pause()
    assert.ok(!existsSync(join(layersRoot(bare), 'sandboxes', sbx.sandboxId, 'memory')))
    assert.ok(guestProcessesOf(sbx.sandboxId).length > 0, 'its processes are kept, frozen')
    const frozenAt = counterOnHost(bare, sbx.sandboxId)
    await sleep(500)
    assert.equal(counterOnHost(bare, sbx.sandboxId), frozenAt)
    const resumed = await Sandbox.connect(sbx.sandboxId, bare.novita())
    assert.equal((await resumed.commands.run(`kill -0 ${pid} && echo alive`)).stdout, 'alive\n')
  })

  test('20 pause/resume cycles in a row lose nothing', async (t) => {
    const sbx = await create(t)
    const pid = await startCounter(sbx)
    for (let i = 0; i < 20; i++) {
      await sbx.files.write(`/home/user/cycle-${i}.txt`, `cycle ${i}`)
      assert.equal(await Sandbox.pause(sbx.sandboxId, server.novita()), true, `pause ${i}`)
      await Sandbox.connect(sbx.sandboxId, server.novita())
    }
    const r = await sbx.commands.run(`kill -0 ${pid} && ls /home/user | grep -c cycle-`)
    assert.equal(r.stdout, '20\n', 'the process lives on and all 20 files are there')
    for (let i = 0; i < 20; i++) assert.equal(await sbx.files.read(`/home/user/cycle-${i}.txt`), `cycle ${i}`)
  })

  test('a paused sandbox can be snapshotted and killed; pause and connect of unknown IDs are 404', async (t) => {
    const sbx = await create(t)
    await sbx.files.write('/home/user/snap.txt', 'taken while paused')
    await sbx.pause()
    const snap = await Sandbox.createSnapshot(sbx.sandboxId, server.novita())
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, server.novita())).state, 'paused', 'a snapshot does not resume it')
    const fromSnap = await Sandbox.create(snap.snapshotId, server.novita())
    server.sandboxIds.add(fromSnap.sandboxId)
    assert.equal(await fromSnap.files.read('/home/user/snap.txt'), 'taken while paused')
    await fromSnap.kill()
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, server.novita()), true)

    assert.equal(await Sandbox.kill(sbx.sandboxId, server.novita()), true, 'a paused sandbox can be killed')
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId, server.novita()), SandboxNotFoundError)
    await assert.rejects(Sandbox.pause('abcdefghij0123456789', server.novita()), SandboxNotFoundError)
    await assert.rejects(Sandbox.connect('abcdefghij0123456789', server.novita()), SandboxNotFoundError)
  })
})

describe('a paused sandbox outlives a server restart', () => {
  // On the default store (btrfs, unless `npm test`'s copy-store run says copy), and on the copy store.
  const cases = [
    { copy: false, criu: true },
    { copy: true, criu: true },
    { copy: false, criu: false },
  ]
  for (const { copy, criu } of cases) test(`${criu ? 'files and processes kept' : 'without CRIU: files kept, processes not (and the connect response says so)'}, then killed cleanly${copy ? ', on the copy store' : ''}`, async (t) => {
    const extraArgs = copy ? ['--store', 'copy'] : []
    const env = criu ? {} : { SANDBANK_CRIU: '/nonexistent/criu' }
    const { first, next } = await serverGenerations(t, { extraArgs, env })
    const dataDir = first.dataDir
    const sbx = await Sandbox.create(first.novita())
    first.sandboxIds.add(sbx.sandboxId)
    await sbx.files.write('/home/user/notes.txt', 'kept across the restart')
    await sbx.commands.run('echo usr-change > /usr/local/restart-marker', { user: 'root' })
    const pid = await startCounter(sbx)
    await sbx.pause()
    // A second one stays paused through the restart and is killed without being resumed.
    const other = await Sandbox.create(first.novita())
    first.sandboxIds.add(other.sandboxId)
    await other.files.write('/home/user/other.txt', 'x')
    await other.pause()
    const onBtrfs = layersRoot(first) !== dataDir
    const r = await first.stop()
    first.stopped = true
    assert.equal(r.code, 0, first.stderr.slice(-2000))
    // Its processes went with the server: nothing of it runs, mounts or holds a cgroup.
    assertNoLeftovers(first)
    // The store's image stays (unmounted: what is in it, the next server reads); the copy
    // store's files are in the data directory.
    const kept = onBtrfs ? join(dataDir, 'cow.img') : join(dataDir, 'sandboxes', sbx.sandboxId, 'layer', 'root', 'home', 'user', 'notes.txt')
    assert.ok(existsSync(kept), `${kept} is kept`)

    const second = await next()
    second.sandboxIds.add(sbx.sandboxId)
    second.sandboxIds.add(other.sandboxId)
    const info = await Sandbox.getInfo(sbx.sandboxId, second.novita())
    assert.equal(info.state, 'paused')
    const paused = await Sandbox.list({ ...second.novita(), query: { state: ['paused'] } }).nextItems()
    assert.deepEqual(paused.map((s) => s.sandboxId).sort(), [sbx.sandboxId, other.sandboxId].sort())
    assert.equal(await Sandbox.kill(other.sandboxId, second.novita()), true, 'a sandbox paused before the restart can be killed as it is')
    assert.ok(!existsSync(join(layersRoot(second), 'sandboxes', other.sandboxId)), 'its files are removed')
    await assert.rejects(Sandbox.getInfo(other.sandboxId, second.novita()), SandboxNotFoundError)

    const res = await second.fetch(`/sandboxes/${sbx.sandboxId}/connect`, { method: 'POST', body: JSON.stringify({ timeout: 60 }), headers: { 'content-type': 'application/json' } })
    assert.equal(res.status, 201)
    if (criu) assert.equal(res.headers.get('warning'), null)
    else assert.match(res.headers.get('warning') ?? '', /processes were not/)
    const body = await res.json()
    assert.equal(body.sandboxID, sbx.sandboxId)

    const back = await Sandbox.connect(sbx.sandboxId, second.novita())
    assert.equal(await back.files.read('/home/user/notes.txt'), 'kept across the restart')
    assert.equal((await back.commands.run('cat /usr/local/restart-marker')).stdout, 'usr-change\n')
    const ps = await back.commands.run('pgrep -f "[w]hile true" || echo none')
    if (criu) {
      // The same process, restored, counts on.
      assert.equal(ps.stdout.trim(), String(pid))
      const at = Number((await back.commands.run('cat /tmp/counter')).stdout)
      await eventually(async () => assert.ok(Number((await back.commands.run('cat /tmp/counter')).stdout) > at))
    } else {
      assert.equal(ps.stdout.trim(), 'none', 'processes do not outlive the server')
    }
    assert.equal(await Sandbox.kill(sbx.sandboxId, second.novita()), true)
    assert.ok(existsSync(join(layersRoot(second), 'sandboxes')))
    assert.ok(!existsSync(join(layersRoot(second), 'sandboxes', sbx.sandboxId)), 'killing it removes its files')
  })
})

describe('lifecycle on timeout', () => {
  test("onTimeout 'pause' pauses at the end time; autoResume wakes it on envd traffic", async (t) => {
    const sbx = await create(t, { timeoutMs: 1_000, lifecycle: { onTimeout: 'pause', autoResume: true } })
    const info = await sbx.getInfo()
    assert.deepEqual(info.lifecycle, { onTimeout: 'pause', autoResume: true })
    await sbx.files.write('/home/user/a.txt', 'still here')
    await eventually(async () => assert.equal((await sbx.getInfo()).state, 'paused'), { timeoutMs: 10_000 })
    // Any envd request resumes it.
    assert.equal(await sbx.files.read('/home/user/a.txt'), 'still here')
    assert.equal((await sbx.getInfo()).state, 'running')
  })

  test("onTimeout 'pause' without autoResume stays paused until connect; the deprecated autoPause does the same", async (t) => {
    const a = await create(t, { timeoutMs: 1_000, lifecycle: { onTimeout: 'pause' } })
    const b = await Sandbox.betaCreate({ ...server.novita(), timeoutMs: 1_000, autoPause: true })
    server.sandboxIds.add(b.sandboxId)
    t.after(() => Sandbox.kill(b.sandboxId, server.novita()))
    for (const sbx of [a, b]) {
      await eventually(async () => assert.equal((await sbx.getInfo()).state, 'paused'), { timeoutMs: 10_000 })
      // envd answers 502 for a paused sandbox, which the SDK reports as not running.
      await assert.rejects(sbx.commands.run('true', { requestTimeoutMs: 5_000 }), SandboxNotFoundError)
      assert.equal((await sbx.getInfo()).state, 'paused', 'envd traffic does not resume it')
      await Sandbox.connect(sbx.sandboxId, { ...server.novita(), timeoutMs: 60_000 })
      assert.equal((await sbx.commands.run('echo up')).stdout, 'up\n')
    }
  })
})

describe('metrics', () => {
  test('getMetrics reports CPU, memory and disk from the cgroup and the upper layer', async (t) => {
    const sbx = await create(t)
    await sbx.commands.run('timeout 1 sh -c "while :; do :; done" || true')
    await sbx.commands.run('head -c 8M /dev/urandom > /home/user/blob')
    const [m] = await Sandbox.getMetrics(sbx.sandboxId, server.novita())
    assert.ok(m.timestamp instanceof Date && Math.abs(m.timestamp.getTime() - Date.now()) < 10_000)
    assert.ok(m.cpuUsedPct > 0 && m.cpuUsedPct <= 100, `cpuUsedPct ${m.cpuUsedPct}`)
    assert.ok(m.cpuCount >= 1)
    assert.ok(m.memUsed > 0 && m.memUsed < m.memTotal, `memUsed ${m.memUsed} / ${m.memTotal}`)
    assert.ok(m.diskUsed >= 8 << 20 && m.diskUsed < 64 << 20, `diskUsed ${m.diskUsed}`)
    assert.ok(m.diskTotal > m.diskUsed)
    const none = await Sandbox.getMetrics(sbx.sandboxId, { ...server.novita(), start: new Date(0), end: new Date(1000) })
    assert.deepEqual(none, [])
  })
})

describe('secure sandboxes', () => {
  const envd = (sbx, path, init = {}) =>
    fetch(server.url + path, { ...init, headers: { 'Novita-Sandbox-Id': sbx.sandboxId, 'content-type': 'application/json', ...(init.headers ?? {}) } })

  test('envd requests need the access token, whatever `secure` said at creation', async (t) => {
    const sbx = await create(t)
    const info = await Sandbox.getFullInfo(sbx.sandboxId, server.novita())
    assert.match(info.envdAccessToken, /^[0-9a-f]{32}$/)
    const list = (headers) => envd(sbx, '/process.Process/List', { method: 'POST', body: '{}', headers })
    assert.equal((await list({})).status, 401)
    const bad = await list({ 'X-Access-Token': 'nope' })
    assert.equal(bad.status, 401)
    assert.equal((await bad.json()).code, 401)
    assert.equal((await list({ 'X-Access-Token': info.envdAccessToken })).status, 200)
    assert.equal((await envd(sbx, '/health')).status < 300, true, 'the health check is open')

    // `secure: false` is not honoured: on a shared host, a sandbox ID alone must open nothing.
    const unflagged = await create(t, { secure: false })
    const token = (await Sandbox.getFullInfo(unflagged.sandboxId, server.novita())).envdAccessToken
    assert.match(token, /^[0-9a-f]{32}$/)
    const refused = await envd(unflagged, '/process.Process/List', { method: 'POST', body: '{}' })
    assert.equal(refused.status, 401)
    assert.match((await refused.json()).message, /X-Access-Token/)
    assert.equal((await envd(unflagged, '/files?path=/etc/hostname')).status, 401)
    assert.equal((await envd(unflagged, '/process.Process/List', { method: 'POST', body: '{}', headers: { 'X-Access-Token': token } })).status, 200)
    // The SDK uses the token it was given, so everything still works through it.
    await unflagged.files.write('/tmp/a.txt', 'still works')
    assert.equal((await unflagged.commands.run('cat /tmp/a.txt')).stdout, 'still works')
  })

  test('signed uploadUrl and downloadUrl work with a plain fetch; tampered or expired ones do not', async (t) => {
    const sbx = await create(t)
    const content = 'uploaded through a signed URL'
    const up = await sbx.uploadUrl('/home/user/signed.txt')
    assert.match(up, /signature=v1_/)
    const form = new FormData()
    form.append('file', new Blob([content]), 'signed.txt')
    const res = await fetch(up, { method: 'POST', body: form })
    assert.equal(res.status, 200, await res.clone().text())
    assert.equal(await sbx.files.read('/home/user/signed.txt'), content)

    const down = await sbx.downloadUrl('/home/user/signed.txt', { useSignatureExpiration: 60 })
    assert.match(down, /signature_expiration=\d+/)
    const got = await fetch(down)
    assert.equal(got.status, 200)
    assert.equal(await got.text(), content)

    // A signature is for one path and one operation.
    const other = new URL(down)
    other.searchParams.set('path', '/etc/shadow')
    assert.equal((await fetch(other)).status, 401)
    assert.equal((await fetch(down, { method: 'POST', body: form })).status, 401, 'a read signature does not allow a write')
    const expiring = await sbx.downloadUrl('/home/user/signed.txt', { useSignatureExpiration: 1 })
    await sleep(2100)
    const expired = await fetch(expiring)
    assert.equal(expired.status, 401)
    assert.match((await expired.json()).message, /expired/)
    // The signature is the SDKs' formula over the sandbox's token.
    const token = (await Sandbox.getFullInfo(sbx.sandboxId, server.novita())).envdAccessToken
    const sig = 'v1_' + createHash('sha256').update(`/home/user/signed.txt:read::${token}`).digest('base64').replace(/=+$/, '')
    assert.equal(new URL(await sbx.downloadUrl('/home/user/signed.txt')).searchParams.get('signature'), sig)
  })
})
