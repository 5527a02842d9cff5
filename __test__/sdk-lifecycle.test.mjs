// Lifecycle, metrics, secured sandboxes and signed URLs through `sandbank` and the published
// `novita-sandbox`, against a small scripted server that records every request: both SDKs must
// send the same requests (paths, queries, bodies, `X-Access-Token`) and return the same results
// and errors. Then the signature against one computed here with node:crypto, and bad input.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import * as novita from 'novita-sandbox'
import * as sandbank from 'sandbank'

const SDKS = { 'novita-sandbox': novita, sandbank }

// ── The scripted server ──

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

/** One Connect envelope: flag, 4-byte big-endian length, JSON. */
function envelope(flag, obj) {
  const payload = Buffer.from(JSON.stringify(obj))
  const head = Buffer.alloc(5)
  head[0] = flag
  head.writeUInt32BE(payload.length, 1)
  return Buffer.concat([head, payload])
}

function stream(res, messages) {
  res.writeHead(200, { 'content-type': 'application/connect+json' })
  for (const m of messages) res.write(envelope(0, m))
  res.end(envelope(2, {}))
}

const METRICS = [
  { timestamp: '2026-01-02T03:04:05Z', timestampUnix: 1767323045, cpuCount: 2, cpuUsedPct: 12.5, memUsed: 104857600, memTotal: 536870912, diskUsed: 1048576, diskTotal: 1073741824 },
  { timestamp: '2026-01-02T03:04:10.500Z', timestampUnix: 1767323050, cpuCount: 2, cpuUsedPct: 0, memUsed: 0, memTotal: 536870912, diskUsed: 0, diskTotal: 1073741824 },
]

function sandboxBody(id, extra = {}) {
  return { sandboxID: id, templateID: 'base', clientID: 'c', envdVersion: '0.5.7', ...extra }
}

let connects = 0

function handle(req, res, raw, log) {
  const url = new URL(req.url, 'http://x')
  const p = url.pathname
  const ct = req.headers['content-type'] ?? ''
  let body
  if (ct.startsWith('application/connect+json')) body = JSON.parse(raw.subarray(5).toString())
  else if (ct.startsWith('application/json') && raw.length) body = JSON.parse(raw.toString())
  else if (ct.startsWith('multipart/form-data')) body = '<multipart>'
  else if (raw.length) body = `<${raw.length} bytes>`
  log.push({
    method: req.method,
    path: p,
    query: Object.fromEntries(url.searchParams),
    token: req.headers['x-access-token'],
    user: req.headers.authorization,
    body,
  })

  // Control plane
  if (req.method === 'POST' && p === '/sandboxes') {
    const secured = body.secure !== false
    return json(res, 201, sandboxBody(body.templateID === 'base' ? 'made' : body.templateID, secured ? { envdAccessToken: 'envd-token-1', trafficAccessToken: 'traffic-0' } : {}))
  }
  const m = /^\/sandboxes\/([^/]+)(?:\/(\w+))?$/.exec(p)
  if (m) {
    const [, id, action] = m
    if (id === 'gone') return json(res, 404, { code: 404, message: `sandbox "${id}" not found` })
    if (action === 'pause') {
      if (id === 'already') return json(res, 409, { code: 409, message: 'Sandbox is already paused' })
      if (id === 'broken') return json(res, 500, { code: 500, message: 'pause failed' })
      res.writeHead(204)
      return res.end()
    }
    if (action === 'connect') {
      connects++
      return json(res, id === 'paused1' ? 201 : 200, sandboxBody(id, { envdAccessToken: 'envd-token-1', trafficAccessToken: `traffic-${connects}` }))
    }
    if (action === 'metrics') return json(res, 200, METRICS)
    if (!action && req.method === 'GET') {
      return json(res, 200, {
        ...sandboxBody(id),
        alias: 'base',
        startedAt: '2026-01-02T03:00:00Z',
        endAt: '2026-01-02T04:00:00Z',
        state: 'paused',
        cpuCount: 2,
        memoryMB: 512,
        diskSizeMB: 1024,
        metadata: {},
        allowInternetAccess: false,
        lifecycle: { onTimeout: 'pause', autoResume: true },
        envdAccessToken: 'envd-token-1',
      })
    }
  }

  // envd
  if (p === '/health') {
    res.writeHead(204)
    return res.end()
  }
  if (p === '/files' && req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    return res.end('content')
  }
  if (p === '/files' && req.method === 'POST') return json(res, 200, [{ name: 'a.txt', type: 'file', path: '/tmp/a.txt' }])
  if (p === '/process.Process/Start' || p === '/process.Process/Connect') {
    return stream(res, [{ event: { start: { pid: 7 } } }, { event: { data: { pty: Buffer.from('$ ').toString('base64') } } }, { event: { end: { exited: true, status: 'exit status 0' } } }])
  }
  if (p === '/filesystem.Filesystem/WatchDir') {
    return stream(res, [{ start: {} }, { filesystem: { name: 'a.txt', type: 'EVENT_TYPE_CREATE' } }, { filesystem: { name: 'b', type: 'EVENT_TYPE_UNSPECIFIED' } }, { filesystem: { name: 'a.txt', type: 'EVENT_TYPE_CHMOD' } }])
  }
  if (p === '/filesystem.Filesystem/ListDir') return json(res, 200, { entries: [] })
  if (p.startsWith('/process.Process/')) return json(res, 200, {})
  json(res, 404, { code: 404, message: `no route ${req.method} ${p}` })
}

let srv
let url
let log = []
before(async () => {
  srv = createServer((req, res) => {
    const chunks = []
    req.on('data', (d) => chunks.push(d))
    req.on('end', () => handle(req, res, Buffer.concat(chunks), log))
  })
  await new Promise((r) => srv.listen(0, '127.0.0.1', r))
  url = `http://127.0.0.1:${srv.address().port}`
})
// Idle pooled connections (and ones a cancelled request opened) would hold close() for the server's
// 60 s header timeout.
after(
  () =>
    new Promise((r) => {
      srv.close(r)
      srv.closeAllConnections()
    }),
)

const conn = () => ({ apiKey: 'k', apiUrl: url, sandboxUrl: url, requestTimeoutMs: 10_000 })

/** Runs `script` through one SDK; returns what it recorded and the requests it sent. */
async function recorded(sdk, script) {
  log = []
  connects = 0
  const out = {}
  const rec = async (label, fn) => {
    try {
      out[label] = ['ok', await fn()]
    } catch (e) {
      out[label] = [e.name, e.message, e instanceof sdk.SandboxError, e.constructor === Error || e instanceof sdk[e.name]]
    }
  }
  await script(sdk, rec)
  return { out, requests: log }
}

/** Runs `script` through both SDKs and asserts the same outcomes and the same requests. */
async function same(script) {
  const a = await recorded(novita, script)
  const b = await recorded(sandbank, script)
  assert.deepEqual(b.out, a.out)
  assert.deepEqual(b.requests, a.requests)
  return b
}

describe('the same requests and results as novita-sandbox', () => {
  test('pause: 204 → true, code 409 → false, 404 → SandboxNotFoundError, others → SandboxError', async () => {
    const { out, requests } = await same(async ({ Sandbox }, rec) => {
      await rec('static', () => Sandbox.pause('running', conn()))
      await rec('already paused', () => Sandbox.pause('already', conn()))
      await rec('missing', () => Sandbox.pause('gone', conn()))
      await rec('broken', () => Sandbox.pause('broken', conn()))
      await rec('betaPause', () => Sandbox.betaPause('already', conn()))
      const sbx = await Sandbox.connect('running', conn())
      await rec('instance', () => sbx.pause())
      await rec('instance betaPause', () => sbx.betaPause({ requestTimeoutMs: 5_000 }))
    })
    assert.deepEqual(out.static, ['ok', true])
    assert.deepEqual(out['already paused'], ['ok', false])
    assert.deepEqual(out.missing, ['SandboxNotFoundError', 'Sandbox gone not found', true, true])
    assert.deepEqual(out.broken, ['SandboxError', '500: pause failed', true, true])
    const pause = requests.find((r) => r.path === '/sandboxes/running/pause')
    assert.deepEqual(pause, { method: 'POST', path: '/sandboxes/running/pause', query: {}, token: undefined, user: undefined, body: undefined })
  })

  test('connect: 200 (running) and 201 (resumed), the timeout in seconds, 404 → "Paused sandbox … not found"; instance connect refreshes trafficAccessToken', async () => {
    const { out, requests } = await same(async ({ Sandbox }, rec) => {
      await rec('running', async () => (await Sandbox.connect('running1', { ...conn(), timeoutMs: 120_500 })).sandboxId)
      await rec('resumed', async () => (await Sandbox.connect('paused1', conn())).sandboxId)
      await rec('missing', () => Sandbox.connect('gone', conn()))
      const sbx = await Sandbox.connect('paused1', conn())
      await rec('token before', () => sbx.trafficAccessToken)
      await rec('instance', async () => (await sbx.connect({ timeoutMs: 30_000, secure: true })) === sbx)
      await rec('token after', () => sbx.trafficAccessToken)
      await rec('instance again', async () => (await sbx.connect()) === sbx)
      await rec('token again', () => sbx.trafficAccessToken)
      const gone = await Sandbox.connect('paused1', conn())
      await rec('instance missing', () => Sandbox.connect('gone', conn()).then(() => gone.connect()))
    })
    assert.deepEqual(out.running, ['ok', 'running1'])
    assert.deepEqual(out.resumed, ['ok', 'paused1'])
    assert.deepEqual(out.missing, ['SandboxNotFoundError', 'Paused sandbox gone not found', true, true])
    assert.deepEqual([out['token before'][1], out['token after'][1], out['token again'][1]], ['traffic-3', 'traffic-4', 'traffic-5'])
    assert.deepEqual(requests[0].body, { timeout: 121 })
    assert.deepEqual(requests.find((r) => r.body?.secure === true)?.body, { timeout: 30, secure: true })
  })

  test('create bodies: lifecycle, deprecated autoPause (lifecycle wins), allowInternetAccess, secure', async () => {
    const { requests } = await same(async ({ Sandbox }, rec) => {
      await rec('default', () => Sandbox.create(conn()).then((s) => s.sandboxId))
      await rec('pause', () => Sandbox.create({ ...conn(), lifecycle: { onTimeout: 'pause' } }).then(() => 'ok'))
      await rec('pause+resume', () => Sandbox.create('base', { ...conn(), lifecycle: { onTimeout: 'pause', autoResume: true } }).then(() => 'ok'))
      await rec('kill', () => Sandbox.create({ ...conn(), lifecycle: { onTimeout: 'kill' } }).then(() => 'ok'))
      await rec('autoPause', () => Sandbox.betaCreate({ ...conn(), autoPause: true }).then(() => 'ok'))
      await rec('autoPause false', () => Sandbox.betaCreate('base', { ...conn(), autoPause: false }).then(() => 'ok'))
      await rec('lifecycle wins', () => Sandbox.betaCreate({ ...conn(), autoPause: true, lifecycle: { onTimeout: 'kill' } }).then(() => 'ok'))
      await rec('no internet, unsecured', () => Sandbox.create({ ...conn(), allowInternetAccess: false, secure: false, timeoutMs: 1_500, metadata: { a: 'b' }, envs: { X: '1' } }).then(() => 'ok'))
    })
    const bodies = requests.filter((r) => r.path === '/sandboxes').map((r) => r.body)
    const common = { templateID: 'base', timeout: 300, secure: true, allow_internet_access: true }
    assert.deepEqual(bodies, [
      { ...common, autoPause: false },
      { ...common, autoPause: true, autoResume: { enabled: false } },
      { ...common, autoPause: true, autoResume: { enabled: true } },
      { ...common, autoPause: false },
      { ...common, autoPause: true, autoResume: { enabled: false } },
      { ...common, autoPause: false },
      { ...common, autoPause: false },
      { templateID: 'base', timeout: 2, secure: false, allow_internet_access: false, autoPause: false, metadata: { a: 'b' }, envVars: { X: '1' } },
    ])
  })

  test('SandboxInfo: state paused, lifecycle, allowInternetAccess; getFullInfo adds the access token', async () => {
    const { out } = await same(async ({ Sandbox }, rec) => {
      await rec('info', () => Sandbox.getInfo('p1', conn()))
      await rec('full', async () => {
        const f = await Sandbox.getFullInfo('p1', conn())
        return [f.envdAccessToken, f.sandboxDomain, f.state]
      })
    })
    assert.deepEqual(out.full[1], ['envd-token-1', undefined, 'paused'])
    const info = out.info[1]
    assert.equal(info.state, 'paused')
    assert.deepEqual(info.lifecycle, { onTimeout: 'pause', autoResume: true })
    assert.equal(info.allowInternetAccess, false)
    assert.ok(info.startedAt instanceof Date)
    assert.equal('envdAccessToken' in info, false)
  })

  test('getMetrics: start/end as unix seconds, SandboxMetrics with Dates', async () => {
    const start = new Date(1767323045499)
    const end = new Date(1767323050500)
    const { out, requests } = await same(async ({ Sandbox }, rec) => {
      await rec('static', () => Sandbox.getMetrics('m1', { ...conn(), start, end }))
      await rec('static, no range', () => Sandbox.getMetrics('m1', conn()))
      await rec('missing', () => Sandbox.getMetrics('gone', conn()))
      const sbx = await Sandbox.connect('m1', conn())
      await rec('instance', () => sbx.getMetrics({ start }))
      await rec('instance no opts', () => sbx.getMetrics())
    })
    const metrics = requests.filter((r) => r.path.endsWith('/metrics')).map((r) => r.query)
    assert.deepEqual(metrics, [{ start: '1767323045', end: '1767323051' }, {}, {}, { start: '1767323045' }, {}])
    assert.deepEqual(out.static[1], [
      { timestamp: new Date('2026-01-02T03:04:05Z'), cpuUsedPct: 12.5, cpuCount: 2, memUsed: 104857600, memTotal: 536870912, diskUsed: 1048576, diskTotal: 1073741824 },
      { timestamp: new Date('2026-01-02T03:04:10.500Z'), cpuUsedPct: 0, cpuCount: 2, memUsed: 0, memTotal: 536870912, diskUsed: 0, diskTotal: 1073741824 },
    ])
    assert.deepEqual(out.missing.slice(0, 2), ['SandboxError', '404: sandbox "gone" not found'])
  })

  test('a secured sandbox: every envd request carries X-Access-Token (RPC, streams, /files, /health, pty, watchDir)', async () => {
    const { out, requests } = await same(async ({ Sandbox }, rec) => {
      const sbx = await Sandbox.create(conn())
      await rec('run', () => sbx.commands.run('true'))
      await rec('list', () => sbx.files.list('/tmp'))
      await rec('read', () => sbx.files.read('/tmp/a.txt'))
      await rec('write', () => sbx.files.write('/tmp/a.txt', 'x'))
      await rec('isRunning', () => sbx.isRunning())
      const data = []
      await rec('pty', async () => {
        const t = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => data.push([d instanceof Uint8Array, Buffer.from(d).toString()]), user: 'root', cwd: '/tmp', envs: { TERM: 'dumb' }, timeoutMs: 5_000 })
        await sbx.pty.sendInput(t.pid, new TextEncoder().encode('ls\n'))
        await sbx.pty.resize(t.pid, { cols: 100, rows: 40 })
        await t.wait()
        return data
      })
      await rec('pty connect', async () => {
        const seen = []
        const t = await sbx.pty.connect(7, { onData: (d) => seen.push(Buffer.from(d).toString()), timeoutMs: 0 })
        await t.wait()
        return seen
      })
      await rec('pty kill', () => sbx.pty.kill(7))
      await rec('watch', async () => {
        const events = []
        let exit
        const done = new Promise((resolve) => {
          exit = resolve
        })
        await sbx.files.watchDir('/tmp', (e) => events.push(e), { recursive: true, user: 'root', timeoutMs: 0, onExit: (err) => exit(err) })
        const err = await done
        return [events, err?.name ?? null]
      })
      const plain = await Sandbox.create({ ...conn(), secure: false })
      await rec('unsecured', () => plain.files.read('/tmp/a.txt'))
    })
    const envd = requests.filter((r) => !r.path.startsWith('/sandboxes'))
    assert.ok(envd.length >= 12, JSON.stringify(envd))
    const last = envd.pop()
    assert.equal(last.token, undefined, 'an unsecured sandbox sends no token')
    for (const r of envd) assert.equal(r.token, 'envd-token-1', `${r.method} ${r.path}`)
    assert.deepEqual(out.pty[1], [[true, '$ ']])
    assert.deepEqual(out['pty connect'][1], ['$ '])
    const start = envd.find((r) => r.path === '/process.Process/Start' && r.body.pty)
    assert.deepEqual(start.body, {
      process: { cmd: '/bin/bash', args: ['-i', '-l'], envs: { TERM: 'dumb', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' }, cwd: '/tmp' },
      pty: { size: { cols: 80, rows: 24 } },
    })
    assert.equal(start.user, `Basic ${Buffer.from('root:').toString('base64')}`)
    assert.deepEqual(envd.find((r) => r.path === '/process.Process/SendInput').body, { process: { pid: 7 }, input: { pty: Buffer.from('ls\n').toString('base64') } })
    assert.deepEqual(envd.find((r) => r.path === '/process.Process/Update').body, { process: { pid: 7 }, pty: { size: { cols: 100, rows: 40 } } })
    assert.deepEqual(envd.find((r) => r.path === '/filesystem.Filesystem/WatchDir').body, { path: '/tmp', recursive: true })
    // The unspecified event type is skipped; the stream ended cleanly → onExit without an error.
    assert.deepEqual(out.watch[1], [[{ name: 'a.txt', type: 'create' }, { name: 'a.txt', type: 'chmod' }], null])
  })

  test('uploadUrl / downloadUrl: the same URLs, signed when secured', async () => {
    const { out } = await same(async ({ Sandbox }, rec) => {
      const sbx = await Sandbox.create(conn())
      await rec('download', () => sbx.downloadUrl('/tmp/a b.txt'))
      await rec('download as root', () => sbx.downloadUrl('/home/user/x', { user: 'root' }))
      await rec('upload', () => sbx.uploadUrl('/tmp/up.txt'))
      await rec('upload, no path', () => sbx.uploadUrl())
      const plain = await Sandbox.create({ ...conn(), secure: false })
      await rec('plain download', () => plain.downloadUrl('/tmp/a.txt', { user: 'user' }))
      await rec('plain upload', () => plain.uploadUrl())
      await rec('plain expiration', () => plain.downloadUrl('/tmp/a.txt', { useSignatureExpiration: 60 }))
    })
    const q = (o) => new URLSearchParams(o).toString()
    assert.equal(out.download[1], `${url}/files?path=%2Ftmp%2Fa+b.txt&${q({ signature: sign('/tmp/a b.txt', 'read', '', 'envd-token-1') })}`)
    assert.equal(out['upload, no path'][1], `${url}/files?${q({ signature: sign('', 'write', '', 'envd-token-1') })}`)
    assert.deepEqual(out['plain download'], ['ok', `${url}/files?username=user&path=%2Ftmp%2Fa.txt`])
    assert.deepEqual(out['plain upload'], ['ok', `${url}/files`])
    assert.deepEqual(out['plain expiration'], ['Error', 'Signature expiration can be used only when sandbox is created as secured.', false, true])
  })
})

/** The signature computed independently: v1_ + base64(sha256(raw)), '=' stripped. */
function sign(path, op, user, token, exp) {
  const raw = exp === undefined ? `${path}:${op}:${user}:${token}` : `${path}:${op}:${user}:${token}:${exp}`
  return 'v1_' + createHash('sha256').update(raw).digest('base64').replace(/=+$/, '')
}

describe('signatures', () => {
  test('getSignature matches node:crypto and novita-sandbox', async () => {
    const cases = [
      { path: '/tmp/a.txt', operation: 'read', user: undefined, envdAccessToken: 'tok' },
      { path: '/home/user/ü ñ.bin', operation: 'write', user: 'root', envdAccessToken: 's3cr3t/+=' },
      { path: '', operation: 'write', user: 'user', envdAccessToken: 'x' },
    ]
    for (const c of cases) {
      const mine = await sandbank.getSignature(c)
      assert.deepEqual(mine, { signature: sign(c.path, c.operation, c.user ?? '', c.envdAccessToken), expiration: null })
      assert.doesNotMatch(mine.signature, /=$/)
      assert.deepEqual(mine, await novita.getSignature(c))
    }
    const before = Math.floor(Date.now() / 1000)
    const s = await sandbank.getSignature({ path: '/a', operation: 'read', user: 'user', expirationInSeconds: 120, envdAccessToken: 'tok' })
    assert.ok(s.expiration >= before + 120 && s.expiration <= Math.floor(Date.now() / 1000) + 120, String(s.expiration))
    assert.equal(s.signature, sign('/a', 'read', 'user', 'tok', s.expiration))
    await assert.rejects(sandbank.getSignature({ path: '/a', operation: 'read', user: undefined }), (e) => e.constructor === Error && e.message === 'Access token is not set and signature cannot be generated!')
    await assert.rejects(sandbank.getSignature({ path: '/a', operation: 'delete', user: undefined, envdAccessToken: 't' }), (e) => e instanceof sandbank.InvalidArgumentError && /"delete"/.test(e.message))
  })

  test('signed URLs with an expiration', async () => {
    const sbx = await sandbank.Sandbox.create(conn())
    const before = Math.floor(Date.now() / 1000)
    const u = new URL(await sbx.uploadUrl('/tmp/up.txt', { user: 'root', useSignatureExpiration: 300 }))
    assert.deepEqual([...u.searchParams.keys()], ['username', 'path', 'signature', 'signature_expiration'])
    const exp = Number(u.searchParams.get('signature_expiration'))
    assert.ok(exp >= before + 300 && exp <= Math.floor(Date.now() / 1000) + 300, String(exp))
    assert.equal(u.searchParams.get('signature'), sign('/tmp/up.txt', 'write', 'root', 'envd-token-1', exp))
    const d = new URL(await sbx.downloadUrl('/tmp/up.txt', { useSignatureExpiration: 10 }))
    assert.equal(d.searchParams.get('signature'), sign('/tmp/up.txt', 'read', '', 'envd-token-1', Number(d.searchParams.get('signature_expiration'))))
  })
})

describe('bad input gets an error naming the value, before any request', () => {
  test('lifecycle', async () => {
    log = []
    const { Sandbox, InvalidArgumentError } = sandbank
    await assert.rejects(Sandbox.create({ ...conn(), lifecycle: { onTimeout: 'hibernate' } }), (e) => e instanceof InvalidArgumentError && e.message === `Invalid lifecycle.onTimeout: "hibernate" (expected 'pause' or 'kill')`)
    await assert.rejects(Sandbox.create({ ...conn(), lifecycle: { onTimeout: 'kill', autoResume: true } }), (e) => e instanceof InvalidArgumentError && /autoResume can be true only when onTimeout is 'pause'/.test(e.message))
    assert.deepEqual(log, [])
  })

  test('getMetrics dates', async () => {
    log = []
    const { Sandbox, InvalidArgumentError } = sandbank
    await assert.rejects(Sandbox.getMetrics('m1', { ...conn(), start: new Date('nope') }), (e) => e instanceof InvalidArgumentError && e.message === 'Invalid start: expected a valid Date, got Invalid Date')
    await assert.rejects(Sandbox.getMetrics('m1', { ...conn(), end: 'yesterday' }), (e) => e instanceof InvalidArgumentError && e.message === 'Invalid end: expected a Date, got "yesterday"')
    assert.deepEqual(log, [])
  })

  test('pty sizes', async () => {
    const { Sandbox, InvalidArgumentError } = sandbank
    const sbx = await Sandbox.connect('p1', conn())
    log = []
    const cases = [
      [{ cols: 0, rows: 24 }, 'cols must be an integer from 1 to 65535, got 0'],
      [{ cols: 80, rows: -1 }, 'rows must be an integer from 1 to 65535, got -1'],
      [{ cols: 80.5, rows: 24 }, 'cols must be an integer from 1 to 65535, got 80.5'],
      [{ cols: 70000, rows: 24 }, 'cols must be an integer from 1 to 65535, got 70000'],
      [{ cols: '80', rows: 24 }, 'cols must be an integer from 1 to 65535, got "80"'],
      [{ rows: 24 }, 'cols must be an integer from 1 to 65535, got undefined'],
      [{ cols: 80, rows: NaN }, 'rows must be an integer from 1 to 65535, got NaN'],
    ]
    for (const [size, message] of cases) {
      await assert.rejects(sbx.pty.create({ ...size, onData: () => {} }), (e) => e instanceof InvalidArgumentError && e.message === `Invalid PTY size: ${message}`, JSON.stringify(size))
      await assert.rejects(sbx.pty.resize(7, size), (e) => e instanceof InvalidArgumentError && e.message === `Invalid PTY size: ${message}`)
    }
    await assert.rejects(sbx.pty.create(), (e) => e instanceof InvalidArgumentError)
    assert.deepEqual(log, [])
  })
})
