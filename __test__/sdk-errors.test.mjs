// Every error class of `sandbank`: name, message, instanceof and hierarchy (as novita-sandbox's
// core/errors.ts), and the mapping from HTTP statuses and Connect codes — checked against a small
// scripted server that both `sandbank` and `novita-sandbox` talk to, with the same outcomes.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import * as novita from 'novita-sandbox'
import * as sandbank from 'sandbank'

const CLASSES = [
  ['SandboxError', 'Error'],
  ['TimeoutError', 'SandboxError'],
  ['InvalidArgumentError', 'SandboxError'],
  ['NotEnoughSpaceError', 'SandboxError'],
  ['NotFoundError', 'SandboxError'],
  ['FileNotFoundError', 'NotFoundError'],
  ['SandboxNotFoundError', 'NotFoundError'],
  ['AuthenticationError', 'Error'],
  ['TemplateError', 'SandboxError'],
  ['RateLimitError', 'SandboxError'],
]

describe('error classes', () => {
  for (const [name, parent] of CLASSES) {
    test(`${name} extends ${parent}`, () => {
      const Cls = sandbank[name]
      const e = new Cls('the message')
      assert.equal(e.name, name)
      assert.equal(e.message, 'the message')
      assert.ok(e instanceof Error)
      assert.ok(e instanceof Cls)
      assert.ok(e instanceof (parent === 'Error' ? Error : sandbank[parent]))
      assert.equal(e instanceof sandbank.SandboxError, name !== 'AuthenticationError', 'AuthenticationError is not a SandboxError')
      assert.equal(Object.getPrototypeOf(Cls.prototype).constructor.name, parent)
      // Same as novita-sandbox's.
      const n = new novita[name]('the message')
      assert.equal(n.name, e.name)
      assert.equal(n instanceof novita.SandboxError, e instanceof sandbank.SandboxError)
      assert.match(e.stack, new RegExp(`^${name}: the message`))
    })
  }

  test('CommandExitError carries the result', () => {
    const r = { exitCode: 3, error: 'exit status 3', stdout: 'o', stderr: 'e' }
    const e = new sandbank.CommandExitError(r)
    assert.equal(e.name, 'CommandExitError')
    assert.equal(e.message, 'exit status 3')
    assert.ok(e instanceof sandbank.SandboxError)
    assert.deepEqual([e.exitCode, e.error, e.stdout, e.stderr], [3, 'exit status 3', 'o', 'e'])
    const n = new novita.CommandExitError(r)
    assert.deepEqual([n.name, n.message, n.exitCode, n.error, n.stdout, n.stderr], [e.name, e.message, e.exitCode, e.error, e.stdout, e.stderr])
  })

  test('SandboxError takes a stack trace', () => {
    assert.equal(new sandbank.SandboxError('m', 'custom stack').stack, 'custom stack')
  })
})

// ── A scripted server: answers each request from its path ──

function json(res, status, body) {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' })
  res.end(text)
}

const CONNECT_STATUS = { invalid_argument: 400, unauthenticated: 401, permission_denied: 403, not_found: 404, already_exists: 409, resource_exhausted: 429, unavailable: 503, deadline_exceeded: 504, internal: 500 }

function handle(req, res, body) {
  const url = new URL(req.url, 'http://x')
  const p = url.pathname
  const sandbox = (id, envdVersion = '0.5.7') => ({ sandboxID: id, templateID: 'base', clientID: 'c', envdVersion })
  if (req.method === 'POST' && p === '/sandboxes') {
    const t = JSON.parse(body).templateID
    if (t === 'old') return json(res, 201, sandbox('oldsandbox', '0.0.9'))
    if (t === 'limited') return json(res, 429, { code: 429, message: 'slow down' })
    if (t === 'boom') return json(res, 500, { code: 500, message: 'boom' })
    if (t === 'text') return json(res, 404, 'nope')
    if (t === 'noauth') return json(res, 401, { code: 401, message: 'Invalid API key' })
    return json(res, 201, sandbox('fakesandbox'))
  }
  if (req.method === 'DELETE' && p.startsWith('/sandboxes/')) {
    res.writeHead(204)
    return res.end()
  }
  if (req.method === 'GET' && p === '/sandboxes/gone') return json(res, 404, { code: 404, message: 'not found' })
  if (req.method === 'GET' && p === '/sandboxes/forbidden') return json(res, 403, { code: 403, message: 'not yours' })
  if (req.method === 'DELETE' && p.startsWith('/templates/')) return json(res, 400, { code: 400, message: 'in use' })
  if (req.method === 'POST' && p.endsWith('/connect')) return json(res, 200, sandbox(p.split('/')[2]))
  if (req.method === 'GET' && p === '/snapshots') return json(res, 500, { code: 500, message: 'list failed' })
  // envd /files: the status is the file name.
  if (p === '/files') {
    const status = Number(url.searchParams.get('path').slice(1))
    const messages = { 400: { code: 400, message: 'bad path' }, 401: { code: 401, message: 'who are you' }, 404: { code: 404, message: 'path not found' }, 429: { code: 429, message: 'slow' }, 502: 'gone', 507: { code: 507, message: 'disk full' }, 500: { code: 500, message: 'broken' } }
    return json(res, status, messages[status] ?? { message: 'other' })
  }
  if (p === '/filesystem.Filesystem/ListDir' || p === '/filesystem.Filesystem/Stat') {
    const code = JSON.parse(body).path.slice(1)
    return json(res, CONNECT_STATUS[code] ?? 500, { code, message: `${code} happened` })
  }
  if (p === '/health') return json(res, 502, 'bad gateway')
  json(res, 404, { code: 404, message: `no route ${req.method} ${p}` })
}

describe('mapping from the wire, same as novita-sandbox', () => {
  let srv
  let url
  before(async () => {
    srv = createServer((req, res) => {
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => handle(req, res, body))
    })
    await new Promise((r) => srv.listen(0, '127.0.0.1', r))
    url = `http://127.0.0.1:${srv.address().port}`
  })
  // Idle pooled connections (and ones a cancelled request opened) would hold close() for the
  // server's 60 s header timeout.
  after(
    () =>
      new Promise((r) => {
        srv.close(r)
        srv.closeAllConnections()
      }),
  )

  async function outcomes(sdk) {
    const { Sandbox } = sdk
    const o = { apiKey: 'k', apiUrl: url, sandboxUrl: url, requestTimeoutMs: 10_000 }
    const out = {}
    const rec = async (label, fn) => {
      try {
        out[label] = ['ok', await fn()]
      } catch (e) {
        out[label] = [e.name, e.message, e instanceof sdk.SandboxError, e instanceof sdk[e.name] || e.constructor === Error]
      }
    }
    await rec('create old envd', () => Sandbox.create('old', o).then(() => 'created'))
    await rec('create 429', () => Sandbox.create('limited', o))
    await rec('create 500', () => Sandbox.create('boom', o))
    await rec('create text 404', () => Sandbox.create('text', o))
    await rec('create 401', () => Sandbox.create('noauth', o))
    await rec('getInfo 404', () => Sandbox.getInfo('gone', o))
    await rec('getInfo 403', () => Sandbox.getInfo('forbidden', o))
    await rec('deleteSnapshot 400', () => Sandbox.deleteSnapshot('snap:default', o))
    await rec('listSnapshots 500', () => Sandbox.listSnapshots(o).nextItems())
    const sbx = await Sandbox.connect('fakesandbox', o)
    for (const status of [400, 401, 404, 429, 502, 507, 500]) await rec(`read ${status}`, () => sbx.files.read(`/${status}`))
    for (const code of Object.keys(CONNECT_STATUS)) await rec(`list ${code}`, () => sbx.files.list(`/${code}`))
    await rec('exists unauthenticated', () => sbx.files.exists('/unauthenticated'))
    await rec('isRunning 502', () => sbx.isRunning())
    return out
  }

  test('each status and code gives the class and message novita-sandbox gives', async () => {
    const a = await outcomes(novita)
    const b = await outcomes(sandbank)
    assert.deepEqual(b, a)
    const classOf = (k) => b[k][0]
    assert.equal(classOf('create old envd'), 'TemplateError')
    assert.equal(classOf('create 429'), 'RateLimitError')
    assert.equal(b['create 429'][1], 'Rate limit exceeded, please try again later - slow down')
    assert.equal(classOf('create 401'), 'AuthenticationError')
    assert.equal(b['create 401'][2], false, 'AuthenticationError is not a SandboxError')
    assert.deepEqual(b['create 500'].slice(0, 2), ['SandboxError', '500: boom'])
    assert.deepEqual(b['create text 404'].slice(0, 2), ['SandboxError', '404: nope'])
    assert.equal(classOf('getInfo 404'), 'SandboxNotFoundError')
    assert.equal(classOf('read 400'), 'InvalidArgumentError')
    assert.equal(classOf('read 404'), 'FileNotFoundError')
    assert.equal(classOf('read 502'), 'TimeoutError')
    assert.equal(classOf('read 507'), 'NotEnoughSpaceError')
    assert.equal(classOf('list not_found'), 'FileNotFoundError')
    assert.equal(classOf('list unavailable'), 'TimeoutError')
    assert.equal(classOf('list deadline_exceeded'), 'TimeoutError')
    assert.equal(classOf('list invalid_argument'), 'InvalidArgumentError')
    assert.deepEqual(b['isRunning 502'], ['ok', false])
    for (const [label, r] of Object.entries(b)) {
      if (r[0] !== 'ok') assert.equal(r[3], true, `${label}: instanceof its own class`)
    }
  })
})
