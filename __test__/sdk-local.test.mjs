// The local default of `sandbank`: with no configuration at all, the first process starts a
// background `sandbank serve` daemon, later processes reuse it (found through daemon.json), two
// processes starting at once share one daemon, the daemon exits by itself when idle, and every
// process exits by itself when its work is done. Each daemon gets a fresh data dir
// (XDG_DATA_HOME); the test stops any daemon still running at its end.
import { after, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { allProcesses, pidAlive, repoRoot, safeRemove, startServer, stopAndCheck, waitGone } from './helpers.mjs'

const CHILD = join(repoRoot, '__test__', 'fixtures', 'sdk-local-child.mjs')
const IDLE_SECS = 2
const dirs = []

/** A fresh XDG_DATA_HOME; the daemon's data dir is `<it>/sandbank`. */
function freshHome() {
  const d = mkdtempSync(join(tmpdir(), 'sandbank-local-test-'))
  chmodSync(d, 0o755)
  dirs.push(d)
  return d
}

/** Only what a user with no sandbank configuration has, and the machine's base image (a data
 * dir of its own would build one: a minute each). */
function bareEnv(home, extra = {}) {
  const images = process.env.SANDBANK_IMAGES_DIR ? { SANDBANK_IMAGES_DIR: process.env.SANDBANK_IMAGES_DIR } : {}
  return { PATH: process.env.PATH, HOME: home, XDG_DATA_HOME: home, SANDBANK_IDLE_EXIT_SECS: String(IDLE_SECS), ...images, ...extra }
}

/**
 * The package and the child script copied where any user can read them: the clone may live where
 * other users cannot enter (under /root, or a 0700 temporary directory). Returns the child's path.
 */
function publicChild() {
  const dir = mkdtempSync(join(tmpdir(), 'sandbank-local-pkg-'))
  dirs.push(dir)
  const pkg = join(dir, 'node_modules', 'sandbank')
  mkdirSync(pkg, { recursive: true })
  const { files } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'))
  const addons = readdirSync(repoRoot).filter((f) => f.endsWith('.node'))
  for (const f of [...files, ...addons, 'package.json', 'native']) {
    if (existsSync(join(repoRoot, f))) cpSync(join(repoRoot, f), join(pkg, f), { recursive: true })
  }
  cpSync(CHILD, join(dir, basename(CHILD)))
  chmodSync(dir, 0o755)
  return join(dir, basename(CHILD))
}

function runChild(env, { uid, gid } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now()
    const child = uid === undefined ? CHILD : publicChild()
    const cwd = uid === undefined ? repoRoot : join(child, '..')
    const p = spawn(process.execPath, [child], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'], uid, gid })
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (err += d))
    const killer = setTimeout(() => p.kill('SIGKILL'), 90_000)
    p.on('error', reject)
    p.on('exit', (code, signal) => {
      clearTimeout(killer)
      const exitedAt = Date.now()
      let result
      try {
        result = JSON.parse(out.trim().split('\n').pop())
      } catch {
        return reject(new Error(`child printed no result (exit ${code ?? signal}); stdout: ${out}\nstderr: ${err}`))
      }
      resolve({ code, signal, result, stderr: err, wallMs: exitedAt - t0, exitLagMs: exitedAt - result.doneAt })
    })
  })
}

function daemonState(home) {
  const f = join(home, 'sandbank', 'daemon.json')
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : null
}

function servesFor(home) {
  return allProcesses().filter((p) => p.argv.includes('serve') && p.cmdline.includes(join(home, 'sandbank')))
}

after(async () => {
  // Stop whatever daemon is still running, then remove the data dirs.
  for (const home of dirs) {
    for (const p of servesFor(home)) {
      try {
        process.kill(p.pid, 'SIGTERM')
      } catch {}
      await waitGone([p.pid], 10_000)
    }
    safeRemove(home)
  }
})

describe('local default (no configuration at all)', () => {
  const home = freshHome()
  let first

  test('the first process starts a daemon, uses it, and exits by itself', async () => {
    const r = await runChild(bareEnv(home))
    assert.equal(r.code, 0, `child failed: ${JSON.stringify(r.result)}\n${r.stderr}`)
    assert.equal(r.result.ok, true)
    assert.equal(r.result.stdout, 'local-ok\nuser\n')
    assert.equal(r.result.streamed, 'streamed\n')
    assert.ok(r.exitLagMs < 2_000, `the process took ${r.exitLagMs} ms to exit after its work was done`)
    first = daemonState(home)
    assert.ok(first, 'daemon.json was written')
    assert.match(first.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.ok(pidAlive(first.pid), 'the daemon outlives the process that started it')
    assert.equal(servesFor(home).length, 1)
  })

  test('a second process reuses the running daemon', async () => {
    const r = await runChild(bareEnv(home))
    assert.equal(r.code, 0, JSON.stringify(r.result))
    assert.ok(r.exitLagMs < 2_000, `exit took ${r.exitLagMs} ms`)
    const now = daemonState(home)
    assert.equal(now.pid, first.pid, 'same daemon')
    assert.equal(now.url, first.url)
    assert.equal(servesFor(home).length, 1)
  })

  test(`the daemon exits by itself after ${IDLE_SECS} s idle and removes daemon.json`, async () => {
    assert.deepEqual(await waitGone([first.pid], IDLE_SECS * 1000 + 8_000), [], 'the idle daemon is still running')
    assert.equal(daemonState(home), null)
  })

  test('after an idle exit, the next process starts a new daemon', async () => {
    const r = await runChild(bareEnv(home))
    assert.equal(r.code, 0, JSON.stringify(r.result))
    const now = daemonState(home)
    assert.ok(now && now.pid !== first.pid && pidAlive(now.pid))
  })
})

describe('two processes starting at once', () => {
  test('end up with one daemon', async () => {
    const home = freshHome()
    const [a, b, c] = await Promise.all([runChild(bareEnv(home)), runChild(bareEnv(home)), runChild(bareEnv(home))])
    for (const r of [a, b, c]) {
      assert.equal(r.code, 0, `${JSON.stringify(r.result)}\n${r.stderr}`)
      assert.ok(r.exitLagMs < 2_000, `exit took ${r.exitLagMs} ms`)
    }
    const serves = servesFor(home)
    assert.equal(serves.length, 1, `serve processes: ${serves.map((p) => p.cmdline).join('\n')}`)
    assert.equal(daemonState(home).pid, serves[0].pid)
  })
})

describe('configuration wins over the local default', () => {
  test('SANDBANK_URL + SANDBANK_API_KEY select a server; no daemon is started', async () => {
    const home = freshHome()
    const server = await startServer()
    try {
      const r = await runChild(bareEnv(home, { SANDBANK_URL: server.url, SANDBANK_API_KEY: server.apiKey }))
      assert.equal(r.code, 0, JSON.stringify(r.result))
      server.sandboxIds.add(r.result.sandboxId)
      assert.match(server.stderr, new RegExp(r.result.sandboxId))
      assert.equal(daemonState(home), null)
      assert.equal(servesFor(home).length, 0)
    } finally {
      await stopAndCheck(server)
    }
  })

  test('NOVITA_API_KEY means the cloud, not the local engine', async () => {
    const home = freshHome()
    // An unroutable domain: the request fails fast instead of reaching the internet.
    const r = await runChild(bareEnv(home, { NOVITA_API_KEY: 'sk_x', NOVITA_API_URL: 'http://127.0.0.1:9' }))
    assert.equal(r.result.ok, false)
    assert.match(r.result.message, /fetch failed|connect|refused/i)
    assert.equal(daemonState(home), null)
  })
})

describe('a user without the rights to run sandboxes', () => {
  test('gets an error that says what is missing', { skip: process.getuid?.() !== 0 && 'needs root to switch to an unprivileged user' }, async () => {
    const home = freshHome()
    chownSync(home, 65534, 65534)
    const r = await runChild(bareEnv(home), { uid: 65534, gid: 65534 })
    assert.equal(r.result.ok, false, 'an unprivileged user could create a sandbox')
    assert.equal(r.result.name, 'SandboxError')
    assert.match(r.result.message, /needs root or CAP_SYS_ADMIN/)
    assert.match(r.result.message, /SANDBANK_URL|NOVITA_API_KEY/)
    assert.equal(servesFor(home).length, 0)
  })
})
