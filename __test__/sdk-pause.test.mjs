// Pause and resume, the timeout lifecycle, metrics, and secure sandboxes (access token, signed
// URLs) through `sandbank` and the published `novita-sandbox`, against a real `sandbank serve`:
// the same calls give the same results. Every sandbox a test creates is killed by it.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import * as novita from 'novita-sandbox'
import * as sandbank from 'sandbank'
import { startServer, stopAndCheck, eventually, rejectsWith } from './helpers.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const SDKS = { 'novita-sandbox': novita, sandbank }

for (const [sdkName, sdk] of Object.entries(SDKS)) {
  const { Sandbox } = sdk
  describe(`through ${sdkName}`, () => {
    const opts = (extra = {}) => server.novita(extra)

    /** Creates a sandbox that is killed when test `t` ends. */
    async function create(t, extra = {}, how = 'create') {
      const sbx = await Sandbox[how]({ ...opts(), ...extra })
      server.sandboxIds.add(sbx.sandboxId)
      t.after(() => Sandbox.kill(sbx.sandboxId, opts()))
      return sbx
    }

    test('pause → true, again → false; paused state; connect resumes the same sandbox and its processes', async (t) => {
      const sbx = await create(t)
      await sbx.files.write('/home/user/kept.txt', 'before the pause')
      const bg = await sbx.commands.run('sleep 600', { background: true })
      assert.equal(await sbx.pause(), true)
      assert.equal(await Sandbox.pause(sbx.sandboxId, opts()), false)
      assert.equal(await sbx.betaPause(), false)
      assert.equal(await Sandbox.betaPause(sbx.sandboxId, opts()), false)
      const info = await Sandbox.getInfo(sbx.sandboxId, opts())
      assert.equal(info.state, 'paused')
      const paused = await Sandbox.list({ ...opts(), query: { state: ['paused'] } }).nextItems()
      assert.ok(paused.some((s) => s.sandboxId === sbx.sandboxId && s.state === 'paused'))
      assert.equal(await sbx.isRunning(), false)

      assert.equal(await sbx.connect({ timeoutMs: 120_000 }), sbx)
      assert.equal((await sbx.getInfo()).state, 'running')
      assert.equal(await sbx.files.read('/home/user/kept.txt'), 'before the pause')
      assert.equal((await sbx.commands.run(`kill -0 ${bg.pid} && echo alive`)).stdout, 'alive\n', 'its processes carry on')
      const left = (await sbx.getInfo()).endAt - Date.now()
      assert.ok(left > 100_000 && left < 125_000, `left ${left}`)

      // Static connect: on a paused sandbox it resumes, on a running one it is a no-op.
      await Sandbox.pause(sbx.sandboxId, opts())
      const again = await Sandbox.connect(sbx.sandboxId, opts())
      assert.equal(again.sandboxId, sbx.sandboxId)
      assert.equal((await again.commands.run('cat /home/user/kept.txt')).stdout, 'before the pause')
      const same = await Sandbox.connect(sbx.sandboxId, opts())
      assert.equal((await same.getInfo()).state, 'running')
      await bg.kill()
    })

    test('pause and connect of an unknown sandbox', async () => {
      await rejectsWith(Sandbox.pause('abcdefghij0123456789', opts()), sdk.SandboxNotFoundError, (e) => assert.equal(e.message, 'Sandbox abcdefghij0123456789 not found'))
      await rejectsWith(Sandbox.connect('abcdefghij0123456789', opts()), sdk.SandboxNotFoundError, (e) => assert.equal(e.message, 'Paused sandbox abcdefghij0123456789 not found'))
    })

    test("lifecycle: onTimeout 'pause' (autoResume, deprecated autoPause), the info reports it; allowInternetAccess", async (t) => {
      const a = await create(t, { timeoutMs: 1_000, lifecycle: { onTimeout: 'pause', autoResume: true } })
      assert.deepEqual((await a.getInfo()).lifecycle, { onTimeout: 'pause', autoResume: true })
      const b = await create(t, { timeoutMs: 1_000, autoPause: true }, 'betaCreate')
      assert.deepEqual((await b.getInfo()).lifecycle, { onTimeout: 'pause', autoResume: false })
      const c = await create(t, { allowInternetAccess: false })
      const ci = await c.getInfo()
      assert.equal(ci.allowInternetAccess, false)
      assert.deepEqual(ci.lifecycle, { onTimeout: 'kill', autoResume: false })

      await a.files.write('/home/user/a.txt', 'still here')
      for (const s of [a, b]) await eventually(async () => assert.equal((await s.getInfo()).state, 'paused'), { timeoutMs: 10_000 })
      // autoResume: envd traffic wakes it.
      assert.equal(await a.files.read('/home/user/a.txt'), 'still here')
      assert.equal((await a.getInfo()).state, 'running')
      // Without it, only connect does.
      await rejectsWith(b.commands.run('true', { requestTimeoutMs: 5_000 }), sdk.SandboxNotFoundError)
      await b.connect({ timeoutMs: 60_000 })
      assert.equal((await b.commands.run('echo up')).stdout, 'up\n')
    })

    test('getMetrics, static and instance, with and without a range', async (t) => {
      const sbx = await create(t)
      await sbx.commands.run('head -c 4M /dev/urandom > /home/user/blob')
      const [m] = await sbx.getMetrics()
      assert.ok(m.timestamp instanceof Date && Math.abs(m.timestamp - Date.now()) < 10_000)
      assert.deepEqual(Object.keys(m).sort(), ['cpuCount', 'cpuUsedPct', 'diskTotal', 'diskUsed', 'memTotal', 'memUsed', 'timestamp'])
      assert.ok(m.cpuCount >= 1 && m.memTotal > m.memUsed && m.memUsed > 0 && m.diskUsed >= 4 << 20, JSON.stringify(m))
      const ranged = await Sandbox.getMetrics(sbx.sandboxId, { ...opts(), start: new Date(Date.now() - 60_000), end: new Date(Date.now() + 60_000) })
      assert.ok(ranged.length >= 1)
      assert.deepEqual(await Sandbox.getMetrics(sbx.sandboxId, { ...opts(), start: new Date(0), end: new Date(1000) }), [])
    })

    test('a secured sandbox works through the SDK (X-Access-Token) and refuses requests without it', async (t) => {
      const sbx = await create(t)
      const { envdAccessToken } = await Sandbox.getFullInfo(sbx.sandboxId, opts())
      assert.match(envdAccessToken, /^[0-9a-f]{32}$/)
      // Everything the SDK does carries the token: RPC, streams, /files, pty, watch.
      await sbx.files.write('/tmp/a.txt', 'secure')
      assert.equal(await sbx.files.read('/tmp/a.txt'), 'secure')
      assert.equal((await sbx.commands.run('cat /tmp/a.txt')).stdout, 'secure')
      assert.equal((await sbx.files.list('/tmp')).some((e) => e.name === 'a.txt'), true)
      const events = []
      const w = await sbx.files.watchDir('/tmp', (e) => events.push(e.name))
      let out = ''
      const term = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => (out += Buffer.from(d).toString()) })
      await sbx.pty.sendInput(term.pid, new TextEncoder().encode('echo pty-ok > /tmp/b.txt; exit\n'))
      await term.wait()
      await eventually(() => assert.ok(events.includes('b.txt')))
      await w.stop()
      assert.equal(await sbx.isRunning(), true)
      // Without the token: 401.
      const res = await fetch(`${server.url}/process.Process/List`, { method: 'POST', body: '{}', headers: { 'Novita-Sandbox-Id': sbx.sandboxId, 'content-type': 'application/json' } })
      assert.equal(res.status, 401)
      // `secure: false` still gets a token (a sandbox ID alone opens nothing), and the SDK uses it.
      const unflagged = await create(t, { secure: false })
      assert.match((await Sandbox.getFullInfo(unflagged.sandboxId, opts())).envdAccessToken, /^[0-9a-f]{32}$/)
      assert.equal((await unflagged.commands.run('echo works')).stdout, 'works\n')
      const refused = await fetch(`${server.url}/process.Process/List`, { method: 'POST', body: '{}', headers: { 'Novita-Sandbox-Id': unflagged.sandboxId, 'content-type': 'application/json' } })
      assert.equal(refused.status, 401)
    })

    test('uploadUrl / downloadUrl: signed URLs work with a plain fetch; tampered and expired ones do not', async (t) => {
      const sbx = await create(t)
      const content = `uploaded through ${sdkName}`
      const up = await sbx.uploadUrl('/home/user/signed.txt')
      const form = new FormData()
      form.append('file', new Blob([content]), 'signed.txt')
      const res = await fetch(up, { method: 'POST', body: form })
      assert.equal(res.status, 200, await res.clone().text())
      assert.equal(await sbx.files.read('/home/user/signed.txt'), content)

      // Without a path, the part's file name is the destination.
      const up2 = await sbx.uploadUrl(undefined, { user: 'root' })
      const form2 = new FormData()
      form2.append('file', new Blob(['as root']), '/root/by-name.txt')
      assert.equal((await fetch(up2, { method: 'POST', body: form2 })).status, 200)
      assert.equal(await sbx.files.read('/root/by-name.txt', { user: 'root' }), 'as root')

      const down = await sbx.downloadUrl('/home/user/signed.txt', { useSignatureExpiration: 60 })
      const got = await fetch(down)
      assert.equal(got.status, 200)
      assert.equal(await got.text(), content)
      const tampered = new URL(down)
      tampered.searchParams.set('path', '/etc/passwd')
      assert.equal((await fetch(tampered)).status, 401)
      const expiring = await sbx.downloadUrl('/home/user/signed.txt', { useSignatureExpiration: 1 })
      await sleep(2100)
      assert.equal((await fetch(expiring)).status, 401)

      const { envdAccessToken } = await Sandbox.getFullInfo(sbx.sandboxId, opts())
      const sig = 'v1_' + createHash('sha256').update(`/home/user/signed.txt:read::${envdAccessToken}`).digest('base64').replace(/=+$/, '')
      assert.equal(new URL(await sbx.downloadUrl('/home/user/signed.txt')).searchParams.get('signature'), sig)

      // `secure: false` still has a token, so its URLs are signed (and may expire) too.
      const unflagged = await create(t, { secure: false })
      const signed = await unflagged.downloadUrl('/etc/hostname', { useSignatureExpiration: 60 })
      assert.equal(new URL(signed).searchParams.has('signature'), true)
      const r = await fetch(signed)
      assert.equal(r.status, 200)
      assert.equal((await r.text()).trim(), unflagged.sandboxId)
      const unsigned = new URL(signed)
      unsigned.searchParams.delete('signature')
      unsigned.searchParams.delete('signature_expiration')
      assert.equal((await fetch(unsigned, { headers: { 'Novita-Sandbox-Id': unflagged.sandboxId } })).status, 401)
    })
  })
}
