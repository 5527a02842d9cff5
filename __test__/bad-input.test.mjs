// Bad input through raw HTTP: every error is 4xx with a JSON {code, message} body (the SDKs read
// an empty 404 as success), and the server keeps serving afterwards.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { Sandbox } from 'novita-sandbox'
import { startServer, stopAndCheck } from './helpers.mjs'

let server
let sbx
before(async () => {
  server = await startServer()
  sbx = await Sandbox.create(server.novita())
  server.sandboxIds.add(sbx.sandboxId)
})
after(async () => {
  if (sbx) assert.equal(await Sandbox.kill(sbx.sandboxId, server.novita()), true)
  if (server) await stopAndCheck(server)
})

/** Asserts a 4xx JSON error `{code: <status>, message}`; returns the body. */
async function expectError(res, status) {
  const text = await res.text()
  if (status !== undefined) assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${text}`)
  assert.ok(res.status >= 400 && res.status < 500, `expected a 4xx, got ${res.status}: ${text}`)
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, `content-type of ${res.status} ${text}`)
  let body
  assert.doesNotThrow(() => (body = JSON.parse(text)), `error body is not JSON: ${JSON.stringify(text)}`)
  assert.equal(body.code, res.status, `body.code ${body.code} ≠ HTTP status ${res.status}`)
  assert.equal(typeof body.message, 'string')
  assert.ok(body.message.length > 0, 'empty error message')
  return body
}

async function stillServes() {
  const h = await fetch(`${server.url}/health`)
  assert.ok(h.ok, `/health → ${h.status}`)
  const r = await server.fetch('/v2/sandboxes')
  assert.equal(r.status, 200)
  assert.ok(Array.isArray(await r.json()))
  assert.equal((await sbx.commands.run('echo still')).stdout, 'still\n')
}

const post = (path, body, headers = {}) =>
  server.fetch(path, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } })

describe('auth', () => {
  test('/health needs no key', async () => {
    const r = await fetch(`${server.url}/health`)
    assert.ok(r.status >= 200 && r.status < 300, `GET /health → ${r.status}`)
  })

  test('missing or wrong key → 401 JSON', async () => {
    await expectError(await fetch(`${server.url}/v2/sandboxes`), 401)
    await expectError(await fetch(`${server.url}/v2/sandboxes`, { headers: { 'X-API-KEY': 'wrong' } }), 401)
    await expectError(await fetch(`${server.url}/sandboxes/${sbx.sandboxId}`, { headers: { Authorization: 'Bearer wrong' } }), 401)
    await expectError(await fetch(`${server.url}/sandboxes`, { method: 'POST', body: '{"templateID":"base"}', headers: { 'content-type': 'application/json' } }), 401)
    await expectError(await fetch(`${server.url}/sandboxes/${sbx.sandboxId}`, { method: 'DELETE' }), 401)
  })

  test('the key is accepted as X-API-KEY (any case) or Authorization: Bearer', async () => {
    for (const headers of [{ 'X-API-KEY': server.apiKey }, { 'x-api-key': server.apiKey }, { 'X-Api-Key': server.apiKey }, { Authorization: `Bearer ${server.apiKey}` }]) {
      const r = await fetch(`${server.url}/sandboxes/${sbx.sandboxId}`, { headers })
      assert.equal(r.status, 200, `${JSON.stringify(Object.keys(headers))} → ${r.status}`)
      assert.equal((await r.json()).sandboxID, sbx.sandboxId)
    }
  })
})

describe('control plane', () => {
  test('malformed JSON → 400', async () => {
    await expectError(await post('/sandboxes', '{"templateID":'), 400)
    await expectError(await post('/sandboxes', 'not json at all'), 400)
    await expectError(await post(`/sandboxes/${sbx.sandboxId}/timeout`, '{'), 400)
    await stillServes()
  })

  test('wrong types → 4xx naming the field', async () => {
    for (const body of [
      { templateID: 5 },
      { templateID: 'base', timeout: 'abc' },
      { templateID: 'base', timeout: -1 },
      { templateID: 'base', metadata: [1, 2] },
      { templateID: 'base', envVars: { A: 1 } },
    ]) {
      const e = await expectError(await post('/sandboxes', JSON.stringify(body)))
      const field = Object.keys(body).at(-1)
      assert.match(e.message, new RegExp(field, 'i'), `message for ${JSON.stringify(body)} does not name ${field}: ${e.message}`)
    }
    await expectError(await post(`/sandboxes/${sbx.sandboxId}/timeout`, JSON.stringify({ timeout: 'soon' })))
    await stillServes()
  })

  test('unknown template → 404 naming it', async () => {
    const e = await expectError(await post('/sandboxes', JSON.stringify({ templateID: 'no-such-template-xyz' })), 404)
    assert.match(e.message, /no-such-template-xyz/)
    await stillServes()
  })

  test('unknown sandbox → 404 naming it, for every route', async () => {
    const id = 'nosuchsandbox0000000'
    for (const [method, path, body] of [
      ['GET', `/sandboxes/${id}`],
      ['DELETE', `/sandboxes/${id}`],
      ['POST', `/sandboxes/${id}/timeout`, '{"timeout":10}'],
      ['POST', `/sandboxes/${id}/connect`, '{"timeout":10}'],
    ]) {
      const res = await server.fetch(path, { method, body, headers: body ? { 'content-type': 'application/json' } : {} })
      const e = await expectError(res, 404)
      assert.match(e.message, new RegExp(id), `${method} ${path}: ${e.message}`)
    }
    await stillServes()
  })

  test('limit 0 / 101 / abc and a garbage nextToken → 400', async () => {
    for (const q of ['limit=0', 'limit=101', 'limit=abc', 'limit=-5']) {
      const e = await expectError(await server.fetch(`/v2/sandboxes?${q}`), 400)
      assert.match(e.message, /limit/i, `${q}: ${e.message}`)
    }
    for (const tok of ['garbage', '%00%ff', 'AAAA', 'x'.repeat(5000)]) {
      const e = await expectError(await server.fetch(`/v2/sandboxes?nextToken=${tok}`), 400)
      assert.match(e.message, /token/i, `nextToken=${tok.slice(0, 20)}: ${e.message}`)
    }
    await expectError(await server.fetch('/v2/sandboxes?state=exploded'), 400)
    for (const ok of ['limit=1', 'limit=100']) assert.equal((await server.fetch(`/v2/sandboxes?${ok}`)).status, 200, ok)
    await stillServes()
  })

  test('a 100 MB body → 4xx JSON, without the server falling over', async () => {
    const { status, headers, text } = await postHuge('/sandboxes', 100 * 1024 * 1024)
    assert.ok(status >= 400 && status < 500, `100 MB body → ${status}`)
    assert.match(headers['content-type'] ?? '', /application\/json/)
    const body = JSON.parse(text)
    assert.equal(body.code, status)
    assert.ok(body.message.length > 0)
    await stillServes()
    // A client that sends the body blindly (fetch, no Expect) may see the 413 or a reset
    // connection, depending on timing; either way the server must keep serving.
    const res = await server
      .fetch('/sandboxes', { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.alloc(100 * 1024 * 1024, 0x20) })
      .catch((e) => e)
    if (!(res instanceof Error)) await expectError(res)
    await stillServes()
  })

  test('unknown route → 404 JSON', async () => {
    await expectError(await server.fetch('/no/such/route'), 404)
    await expectError(await server.fetch(`/sandboxes/${sbx.sandboxId}/no-such-action`, { method: 'POST', body: '{}' }))
    await stillServes()
  })
})

describe('envd', () => {
  const envd = (path, init = {}) =>
    fetch(server.url + path, {
      ...init,
      headers: { 'Novita-Sandbox-Id': sbx.sandboxId, 'Novita-Sandbox-Port': '49983', 'X-Access-Token': sbx.envdAccessToken ?? '', ...(init.headers ?? {}) },
    })

  test('a truncated Connect envelope is rejected', async () => {
    const msg = Buffer.from(JSON.stringify({ process: { cmd: '/bin/echo', args: ['x'] } }))
    const header = Buffer.alloc(5)
    header.writeUInt32BE(msg.length + 100, 1) // claims 100 more bytes than sent
    const res = await envd('/process.Process/Start', {
      method: 'POST',
      body: Buffer.concat([header, msg]),
      headers: { 'content-type': 'application/connect+json', 'connect-protocol-version': '1' },
    })
    const buf = Buffer.from(await res.arrayBuffer())
    if (res.status === 200) {
      // Connect streaming: the error travels in the end-stream envelope (flag 0x02).
      assert.match(res.headers.get('content-type') ?? '', /connect\+json/)
      assert.ok(buf.length >= 5, 'empty stream')
      assert.equal(buf[0], 2, `first envelope flag ${buf[0]}, expected an end-stream error`)
      const end = JSON.parse(buf.subarray(5, 5 + buf.readUInt32BE(1)).toString())
      assert.equal(end.error?.code, 'invalid_argument', JSON.stringify(end))
    } else {
      assert.ok(res.status >= 400 && res.status < 500, `truncated envelope → ${res.status}`)
      assert.ok(JSON.parse(buf.toString()).code, `error body ${buf}`)
    }
    await stillServes()
  })

  test('unary Connect call with malformed JSON → invalid_argument', async () => {
    const res = await envd('/filesystem.Filesystem/Stat', {
      method: 'POST',
      body: '{"path":',
      headers: { 'content-type': 'application/json', 'connect-protocol-version': '1' },
    })
    assert.ok(res.status >= 400 && res.status < 500, `→ ${res.status}`)
    const body = await res.json()
    assert.equal(body.code, 'invalid_argument')
    await stillServes()
  })

  test('GET /files with an empty or missing path → 4xx JSON', async () => {
    for (const q of ['', '?path=']) {
      const res = await envd(`/files${q}`)
      const text = await res.text()
      assert.ok(res.status >= 400 && res.status < 500, `/files${q} → ${res.status} ${text}`)
      assert.ok(JSON.parse(text).message, text)
    }
    await stillServes()
  })

  test('a relative path is in the home, as envd has it; another user\'s `~name` → 400 naming it', async () => {
    // Missing in the home: 404 naming the resolved path.
    const missing = await envd(`/files?path=${encodeURIComponent('no-such-file.txt')}`)
    assert.equal(missing.status, 404)
    assert.match((await missing.json()).message, /\/home\/user\/no-such-file\.txt/)
    // `..` goes up from the home.
    const up = await envd(`/files?path=${encodeURIComponent('../../etc/hostname')}`)
    assert.equal(up.status, 200)
    for (const path of ['~root/x', '~nobody']) {
      const res = await envd(`/files?path=${encodeURIComponent(path)}`)
      const text = await res.text()
      assert.equal(res.status, 400, `GET /files?path=${path} → ${res.status} ${text}`)
      const body = JSON.parse(text)
      assert.equal(body.code, 400)
      assert.ok(body.message.includes(path), body.message)
    }
    const res = await envd('/filesystem.Filesystem/Stat', {
      method: 'POST',
      body: JSON.stringify({ path: '~root/x' }),
      headers: { 'content-type': 'application/json', 'connect-protocol-version': '1' },
    })
    assert.equal(res.status, 400)
    const body = await res.json()
    assert.equal(body.code, 'invalid_argument')
    assert.match(body.message, /~root\/x/)
    await stillServes()
  })

  test('envd request for an unknown sandbox is refused', async () => {
    const res = await fetch(`${server.url}/filesystem.Filesystem/Stat`, {
      method: 'POST',
      body: '{"path":"/"}',
      headers: { 'content-type': 'application/json', 'Novita-Sandbox-Id': 'nosuchsandbox0000000' },
    })
    assert.ok(res.status >= 400, `→ ${res.status}`)
    await res.arrayBuffer()
    await stillServes()
  })
})

/**
 * POSTs a `size`-byte body over a raw socket with `Expect: 100-continue` (as curl does for big
 * bodies): the body is sent only if the server asks for it with `100 Continue`; a server that
 * refuses on the Content-Length answers right away. Returns the final response.
 * (Without Expect the server answers 413 and closes while the client is still sending, and the
 * kernel's reset can destroy that answer before the client reads it.)
 */
function postHuge(path, size) {
  return new Promise((resolve, reject) => {
    const u = new URL(server.url + path)
    const sock = net.connect(Number(u.port), u.hostname)
    let raw = Buffer.alloc(0)
    let sending = false
    let done = false
    const finish = (err, value) => {
      if (done) return
      done = true
      sock.destroy()
      err ? reject(err) : resolve(value)
    }
    sock.on('error', (e) => finish(new Error(`no HTTP response to a ${size}-byte body: ${e.message}`)))
    sock.on('close', () => finish(new Error(`connection closed without a complete response: ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`)))
    sock.on('data', (d) => {
      raw = Buffer.concat([raw, d])
      for (;;) {
        const text = raw.toString('latin1')
        const h = text.indexOf('\r\n\r\n')
        if (h < 0) return
        const head = text.slice(0, h).split('\r\n')
        const status = Number(head[0].split(' ')[1])
        if (status === 100) {
          raw = raw.subarray(h + 4)
          if (!sending) pump()
          continue
        }
        const headers = Object.fromEntries(head.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
        const len = Number(headers['content-length'] ?? 0)
        if (raw.length - h - 4 < len) return
        return finish(null, { status, headers, text: raw.subarray(h + 4, h + 4 + len).toString('utf8') })
      }
    })
    sock.write(`POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nX-API-KEY: ${server.apiKey}\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\nExpect: 100-continue\r\n\r\n`)
    const chunk = Buffer.alloc(1 << 20, 0x20)
    chunk.write('{"templateID":"base","pad":"')
    let sent = 0
    function pump() {
      sending = true
      while (sent < size && !done) {
        const n = Math.min(chunk.length, size - sent)
        sent += n
        if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return sock.once('drain', pump)
      }
    }
    setTimeout(() => finish(new Error('no response within 60 s')), 60_000).unref()
  })
}
