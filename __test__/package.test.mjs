// The package as users get it: the addon loads through `sandbank`, and `npx sandbank` runs the
// native binary (missing-binary message, signal forwarding, exit code).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { version, serverBinaryPath } from 'sandbank'
import { pidAlive, procStat, repoRoot, sandbankBinary, safeRemove, waitGone } from './helpers.mjs'

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'))
const wrapper = join(repoRoot, 'bin', 'sandbank.js')

test('the addon loads and reports the crate version', () => {
  assert.equal(typeof version(), 'string')
  const crateVersion = /^version\s*=\s*"([^"]+)"/m.exec(readFileSync(join(repoRoot, 'Cargo.toml'), 'utf8'))[1]
  assert.equal(version(), crateVersion)
  assert.equal(serverBinaryPath(), process.env.SANDBANK_BIN || join(repoRoot, 'native', 'sandbank'))
})

test('package.json: bin entry points at the wrapper', () => {
  assert.equal(pkg.name, 'sandbank')
  assert.equal(pkg.bin.sandbank, 'bin/sandbank.js')
})

test('bin/sandbank.js runs the native binary with its arguments and exit code', () => {
  sandbankBinary()
  const r = spawnSync(process.execPath, [wrapper, '--version'], { encoding: 'utf8', env: { ...process.env, SANDBANK_BIN: '' } })
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stdout, /^sandbank \d+\.\d+\.\d+/)
  const bad = spawnSync(process.execPath, [wrapper, 'no-such-subcommand'], { encoding: 'utf8' })
  assert.equal(bad.status, 2, 'clap exits 2 on a usage error and the wrapper passes it on')
  assert.match(bad.stderr, /no-such-subcommand/)
})

test('bin/sandbank.js: a missing binary gives a clear error', () => {
  const r = spawnSync(process.execPath, [wrapper, 'serve'], { encoding: 'utf8', env: { ...process.env, SANDBANK_BIN: '/nonexistent/sandbank' } })
  assert.equal(r.status, 127)
  assert.match(r.stderr, /\/nonexistent\/sandbank/)
})

test('bin/sandbank.js forwards SIGTERM: `sandbank serve` stops within 5 s with code 0', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'sandbank-test-'))
  const child = spawn(process.execPath, [wrapper, 'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--api-key', randomBytes(8).toString('hex')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })))
  const url = await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m) resolve(m[1])
    })
    exited.then((r) => reject(new Error(`exited ${JSON.stringify(r)} before listening: ${stderr}`)))
    setTimeout(() => reject(new Error('no "listening on" line within 60 s')), 60_000).unref()
  })
  const health = await fetch(`${url}/health`)
  assert.ok(health.ok, `GET /health → ${health.status}`)
  const t0 = Date.now()
  child.kill('SIGTERM')
  const r = await exited
  const took = Date.now() - t0
  assert.ok(took < 5000, `took ${took} ms`)
  assert.deepEqual(r, { code: 0, signal: null }, stderr)
  safeRemove(dataDir)
})

/** `sh -c` around the launcher, as `npx` runs it; resolves once the server listens. */
async function serveThroughShell() {
  const dataDir = mkdtempSync(join(tmpdir(), 'sandbank-test-'))
  const args = [wrapper, 'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--api-key', randomBytes(8).toString('hex')]
  // `; true`: the shell keeps its child instead of exec'ing it, as npm's does.
  const shell = spawn('sh', ['-c', `"${process.execPath}" ${args.map((a) => `'${a}'`).join(' ')}; true`], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let stderr = ''
  shell.stderr.on('data', (d) => (stderr += d))
  await new Promise((resolve, reject) => {
    shell.stdout.on('data', (d) => {
      out += d
      if (/listening on http/.test(out)) resolve()
    })
    shell.on('exit', (code) => reject(new Error(`exited ${code} before listening: ${stderr}`)))
    setTimeout(() => reject(new Error('no "listening on" line within 60 s')), 60_000).unref()
  })
  const { pid } = JSON.parse(readFileSync(join(dataDir, 'daemon.json'), 'utf8'))
  const launcher = procStat(pid).ppid
  return { shell, dataDir, server: pid, launcher }
}

test('SIGTERM to the shell `npx` runs the launcher in: the launcher and the server stop too', async () => {
  const { shell, dataDir, server, launcher } = await serveThroughShell()
  assert.ok(pidAlive(launcher) && launcher !== shell.pid, `launcher ${launcher}`)
  shell.kill('SIGTERM')
  assert.deepEqual(await waitGone([launcher, server], 5000), [], 'left running')
  assert.equal(existsSync(join(dataDir, 'daemon.json')), false, 'the server stopped cleanly (it removes daemon.json)')
  safeRemove(dataDir)
})

test('SIGKILL of the launcher: the server stops cleanly by itself', async () => {
  const { shell, dataDir, server, launcher } = await serveThroughShell()
  process.kill(launcher, 'SIGKILL')
  assert.deepEqual(await waitGone([server], 5000), [], 'the server outlived its launcher')
  assert.equal(existsSync(join(dataDir, 'daemon.json')), false, 'the server stopped cleanly (it removes daemon.json)')
  await new Promise((r) => (shell.exitCode !== null ? r() : shell.on('exit', r)))
  safeRemove(dataDir)
})
