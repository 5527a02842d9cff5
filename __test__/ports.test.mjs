// Sandbox ports through the server, as through the cloud's proxy: a request to the host
// `<port>-<id>.localhost:<server port>` reaches that port in that sandbox (curl sends *.localhost to
// loopback by itself; Node is given the address). Streams, upgrades (WebSocket's handshake), the
// traffic access token of a private sandbox, maskRequestHost, a paused sandbox woken by a request,
// and the proxy's answers for a closed port and a gone sandbox. The published e2b SDK is the client.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'node:http'
import { promisify } from 'node:util'
import { Sandbox } from 'e2b'
import * as sandbank from 'sandbank'
import * as novita from 'novita-sandbox'
import { eventually, startServer, stopAndCheck } from './helpers.mjs'

let server
let serverPort
before(async () => {
  server = await startServer()
  serverPort = new URL(server.url).port
})
after(async () => {
  if (server) await stopAndCheck(server)
})

async function create(t, opts = {}) {
  const sbx = await Sandbox.create({ ...server.e2b(), ...opts })
  server.sandboxIds.add(sbx.sandboxId)
  t.after(() => sbx.kill().catch(() => {}))
  return sbx
}

const hostOf = (sbx, port) => `${port}-${sbx.sandboxId}.localhost:${serverPort}`

/** curl's status and body for http://<port>-<id>.localhost:<server port><path>. */
async function curl(sbx, port, { path = '/', headers = {} } = {}) {
  const args = ['-s', '-o', '-', '-w', '\n%{http_code}', `http://${hostOf(sbx, port)}${path}`]
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`)
  const { stdout } = await promisify(execFile)('curl', args)
  const cut = stdout.lastIndexOf('\n')
  return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) }
}

/** Starts `cmd` in the background and waits until `port` answers inside the sandbox. */
async function serve(sbx, cmd, port) {
  await sbx.commands.run(cmd, { background: true, cwd: '/home/user' })
  await eventually(async () => {
    const r = await sbx.commands.run(`curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:${port}/ || true`)
    assert.notEqual(r.stdout, '000')
  }, { timeoutMs: 15_000 })
}

describe('sandbox ports', () => {
  test('an HTTP server in a sandbox is reached by its host, with curl and with Node', async (t) => {
    const sbx = await create(t)
    await sbx.files.write('/home/user/www/index.html', 'hello from the sandbox\n')
    await serve(sbx, 'cd www && python3 -m http.server 8000', 8000)
    assert.deepEqual(await curl(sbx, 8000), { status: 200, body: 'hello from the sandbox\n' })
    // Node: to the server's address, with the sandbox's host as Host.
    const body = await new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: serverPort, path: '/index.html', headers: { host: hostOf(sbx, 8000) } }, (res) => {
        let text = ''
        res.on('data', (d) => { text += d })
        res.on('end', () => resolve(`${res.statusCode} ${text}`))
      })
      req.on('error', reject)
      req.end()
    })
    assert.equal(body, '200 hello from the sandbox\n')
    // A closed port and a gone sandbox, in the cloud proxy's words.
    const closed = await curl(sbx, 8001)
    assert.equal(closed.status, 502)
    assert.deepEqual(JSON.parse(closed.body), {
      code: 502, message: 'The sandbox is running but port is not open', sandboxId: sbx.sandboxId, port: 8001,
    })
    await sbx.kill()
    const gone = await curl(sbx, 8000)
    assert.equal(gone.status, 502)
    assert.deepEqual(JSON.parse(gone.body), { code: 502, message: 'The sandbox was not found', sandboxId: sbx.sandboxId })
  })

  test('getHost: sandbank\'s is a loopback address Node\'s fetch reaches; e2b\'s a *.localhost name curl reaches', async (t) => {
    const sbx = await sandbank.Sandbox.create(server.novita())
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill())
    await sbx.files.write('/home/user/www/index.html', 'published\n')
    await sbx.commands.run('cd /home/user/www && python3 -m http.server 8000', { background: true })
    const host = sbx.getHost(8000)
    assert.match(host, /^127\.0\.0\.1:\d+$/)
    assert.equal(sbx.getHost(8000), host, 'the same address every time')
    const text = await eventually(async () => {
      const res = await fetch(`http://${host}/`)
      assert.equal(res.status, 200)
      return res.text()
    }, { timeoutMs: 15_000 })
    assert.equal(text, 'published\n')
    // The official SDK's name form, from the domain the server reports.
    const e2bSbx = await Sandbox.connect(sbx.sandboxId, server.e2b())
    assert.equal(e2bSbx.getHost(8000), hostOf(sbx, 8000))
    const novitaSbx = await novita.Sandbox.connect(sbx.sandboxId, server.novita())
    assert.equal(novitaSbx.getHost(8000), hostOf(sbx, 8000))
    assert.deepEqual(await curl(sbx, 8000), { status: 200, body: 'published\n' })
    // Gone with the sandbox: nothing listens on the address any more.
    await sbx.kill()
    await assert.rejects(fetch(`http://${host}/`), /fetch failed/)
  })

  test('sandbank\'s getHost carries plain TCP too', async (t) => {
    const sbx = await sandbank.Sandbox.create(server.novita())
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill())
    const echo = "require('net').createServer((c) => c.on('data', (d) => c.write('echo:' + d))).listen(7000)"
    await sbx.commands.run(`node -e "${echo}"`, { background: true })
    const [host, port] = sbx.getHost(7000).split(':')
    const reply = await eventually(() => new Promise((resolve, reject) => {
      const socket = connect(Number(port), host, () => socket.write('ping'))
      socket.setTimeout(2000, () => socket.destroy(new Error('no answer')))
      socket.once('data', (d) => { resolve(String(d)); socket.destroy() })
      socket.once('error', reject)
      socket.once('close', () => reject(new Error('closed before an answer')))
    }), { timeoutMs: 15_000 })
    assert.equal(reply, 'echo:ping')
  })

  test('a browser (headless Chromium) shows the page, by sandbank\'s host and by name', async (t) => {
    const page = '<html><body style="margin:0;background:#123456"><h1 style="color:#fedcba">from a sandbox</h1></body></html>'
    const sbx = await sandbank.Sandbox.create(server.novita())
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill())
    await sbx.files.write('/home/user/www/index.html', page)
    await serve(sbx, 'cd www && python3 -m http.server 8000', 8000)
    // The same page served from the host: what the browser must show.
    const local = createServer((req, res) => res.end(page))
    await new Promise((resolve) => local.listen(0, '127.0.0.1', resolve))
    t.after(() => local.close())
    const dir = mkdtempSync(join(tmpdir(), 'sandbank-screenshot-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    const browse = async (url, name) => {
      const file = join(dir, `${name}.png`)
      const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--window-size=480,160', '--hide-scrollbars']
      await promisify(execFile)('chromium-headless-shell', [...flags, `--screenshot=${file}`, url])
      const { stdout: dom } = await promisify(execFile)('chromium-headless-shell', [...flags, '--dump-dom', url])
      return { png: readFileSync(file), dom }
    }
    const expected = await browse(`http://127.0.0.1:${local.address().port}/`, 'host')
    for (const [how, url] of [['getHost', `http://${sbx.getHost(8000)}/`], ['name', `http://${hostOf(sbx, 8000)}/`]]) {
      const shot = await browse(url, how)
      assert.match(shot.dom, /<h1 style="color:#fedcba">from a sandbox<\/h1>/, `${how}: ${shot.dom}`)
      assert.ok(shot.png.equals(expected.png), `${how}: the screenshot differs from the page served on the host`)
      // The screenshot, in the test's output.
      t.diagnostic(`${how} (${url}): data:image/png;base64,${shot.png.toString('base64')}`)
    }
  })

  test('a response streams as the server writes it, and an upgrade joins both ends', async (t) => {
    const sbx = await create(t)
    // A server that writes "first", waits, then "second"; and answers an upgrade with 101 and an echo.
    await sbx.files.write('/home/user/srv.js', `
      const http = require('http')
      const s = http.createServer((req, res) => {
        res.write('first\\n')
        setTimeout(() => res.end('second\\n'), 1500)
      })
      s.on('upgrade', (req, socket) => {
        socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n')
        socket.on('data', (d) => socket.write('echo:' + d))
      })
      s.listen(9000)
    `)
    await serve(sbx, 'node srv.js', 9000)
    const started = Date.now()
    const firstAt = await new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: serverPort, headers: { host: hostOf(sbx, 9000) } }, (res) => {
        res.once('data', (d) => {
          assert.equal(String(d), 'first\n')
          resolve(Date.now() - started)
          res.resume()
        })
      })
      req.on('error', reject)
      req.end()
    })
    assert.ok(firstAt < 1200, `the first chunk came after ${firstAt} ms: the response was buffered`)
    const echoed = await new Promise((resolve, reject) => {
      const req = request({
        host: '127.0.0.1', port: serverPort, headers: { host: hostOf(sbx, 9000), connection: 'Upgrade', upgrade: 'echo' },
      })
      req.on('upgrade', (res, socket) => {
        assert.equal(res.statusCode, 101)
        socket.once('data', (d) => { resolve(String(d)); socket.destroy() })
        socket.write('ping')
      })
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)))
      req.on('error', reject)
      req.end()
    })
    assert.equal(echoed, 'echo:ping')
  })

  test('a private sandbox\'s ports need its traffic access token; maskRequestHost sets the Host', async (t) => {
    const sbx = await create(t, { network: { allowPublicTraffic: false, maskRequestHost: 'custom-host.example.com:${PORT}' } })
    assert.match(sbx.trafficAccessToken ?? '', /^[0-9a-f]{32}$/)
    // Answers with the Host header it got.
    await sbx.files.write('/home/user/host.py', [
      'import http.server',
      'class H(http.server.BaseHTTPRequestHandler):',
      '    def do_GET(self):',
      '        body = self.headers["Host"].encode()',
      '        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()',
      '        self.wfile.write(body)',
      'http.server.HTTPServer(("", 8080), H).serve_forever()',
    ].join('\n'))
    await serve(sbx, 'python3 host.py', 8080)
    const refused = await curl(sbx, 8080)
    assert.equal(refused.status, 403)
    assert.match(JSON.parse(refused.body).message, /traffic access token/)
    const wrong = await curl(sbx, 8080, { headers: { 'e2b-traffic-access-token': 'nope' } })
    assert.equal(wrong.status, 403)
    const ok = await curl(sbx, 8080, { headers: { 'e2b-traffic-access-token': sbx.trafficAccessToken } })
    assert.deepEqual(ok, { status: 200, body: 'custom-host.example.com:8080' })
    const open = await create(t)
    assert.equal(open.trafficAccessToken, undefined, 'a public sandbox has no traffic token')
  })

  test('a request to a port wakes a paused sandbox with autoResume', async (t) => {
    const sbx = await create(t, { lifecycle: { onTimeout: 'pause', autoResume: true } })
    await sbx.files.write('/home/user/www/index.html', 'awake\n')
    await serve(sbx, 'cd www && python3 -m http.server 8000', 8000)
    await sbx.pause()
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, server.e2b())).state, 'paused')
    assert.deepEqual(await curl(sbx, 8000), { status: 200, body: 'awake\n' })
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, server.e2b())).state, 'running')
  })
})
