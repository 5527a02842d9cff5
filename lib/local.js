// The local default of the `sandbank` SDK: when no API key and no URL are configured (options or
// NOVITA_*/E2B_* variables), sandboxes come from the local engine:
//   1. SANDBANK_URL (+ SANDBANK_API_KEY) when set;
//   2. else a running daemon, found through `<data dir>/daemon.json` ({url, apiKey, pid, dataDir},
//      written by every `sandbank serve` once it listens, removed when it stops);
//   3. else `sandbank serve --listen 127.0.0.1:0 --idle-exit-secs 300` started in the background
//      (detached, its output in `<data dir>/daemon.log`), awaited until its daemon.json appears.
// The data dir is $SANDBANK_DATA_DIR, else $XDG_DATA_HOME/sandbank, else ~/.local/share/sandbank.
// Two processes starting a daemon at once: the data dir's lock lets one server run; the other
// exits ("in use by another sandbank serve") and its client reads the winner's daemon.json.
'use strict'

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const { dirname, join } = require('node:path')

const STATE_FILE = 'daemon.json'
const LOG_FILE = 'daemon.log'
const DEFAULT_IDLE_EXIT_SECS = 300
const START_TIMEOUT_MS = 60_000

/** The options and variables that mean "not the local default". */
const CONFIG_KEYS = ['apiKey', 'accessToken', 'apiUrl', 'sandboxUrl', 'domain']
const CONFIG_VARS = ['API_KEY', 'ACCESS_TOKEN', 'API_URL', 'SANDBOX_URL', 'DOMAIN']

/** Whether `opts` or the environment configure a server (cloud or explicit URL). */
function isConfigured(opts) {
  if (opts && CONFIG_KEYS.some((k) => opts[k])) return true
  if (opts?.debug) return true
  const env = process.env
  if (CONFIG_VARS.some((v) => env[`NOVITA_${v}`] || env[`E2B_${v}`])) return true
  return env.NOVITA_DEBUG === 'true' || env.E2B_DEBUG === 'true'
}

/** The local engine's data directory. */
function dataDir() {
  if (process.env.SANDBANK_DATA_DIR) return process.env.SANDBANK_DATA_DIR
  const base = process.env.XDG_DATA_HOME || join(os.homedir(), '.local', 'share')
  return join(base, 'sandbank')
}

/** Whether this Linux uses musl (Alpine) rather than glibc. */
function isMusl() {
  try {
    return !process.report.getReport().header.glibcVersionRuntime
  } catch {
    return false
  }
}

/**
 * The npm packages that may carry the `sandbank` binary on this machine, best match first: the
 * platform package (`sandbank-linux-x64-gnu`, …) npm installed from the optional dependencies.
 */
function platformPackages() {
  if (process.platform !== 'linux') return []
  const libcs = isMusl() ? ['musl', 'gnu'] : ['gnu', 'musl']
  return libcs.map((libc) => `sandbank-linux-${process.arch}-${libc}`)
}

/**
 * The `sandbank` binary: $SANDBANK_BIN, else `native/sandbank` in this package (a build from
 * source, `npm run build`), else the one in the platform package. When none exists, the path
 * where a build would put it (the error messages name it).
 */
function serverBinaryPath() {
  if (process.env.SANDBANK_BIN) return process.env.SANDBANK_BIN
  const built = join(__dirname, '..', 'native', 'sandbank')
  if (fs.existsSync(built)) return built
  for (const name of platformPackages()) {
    let dir
    try {
      dir = dirname(require.resolve(`${name}/package.json`))
    } catch {
      continue
    }
    const bin = join(dir, 'sandbank')
    if (fs.existsSync(bin)) return bin
  }
  return built
}

function alive(pid) {
  try {
    process.kill(pid, 0)
  } catch (e) {
    return e.code === 'EPERM'
  }
  // A recycled PID would not be a `sandbank serve`.
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('serve')
  } catch {
    return process.platform !== 'linux'
  }
}

/** The running daemon named by daemon.json, or null. */
function readState(dir) {
  let s
  try {
    s = JSON.parse(fs.readFileSync(join(dir, STATE_FILE), 'utf8'))
  } catch {
    return null
  }
  if (!s || typeof s.url !== 'string' || !Number.isInteger(s.pid) || !alive(s.pid)) return null
  return { url: s.url, apiKey: s.apiKey, pid: s.pid, dataDir: s.dataDir ?? dir, started: false }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function logTail(path) {
  try {
    const text = fs.readFileSync(path, 'utf8')
    // tracing colours the log when it thinks it is a terminal; strip the escapes.
    return text.replace(/\x1b\[[0-9;]*m/g, '').trimEnd().split('\n').slice(-8).join('\n')
  } catch {
    return ''
  }
}

class LocalDaemonError extends Error {}

/** Starts `sandbank serve` in the background and resolves with its daemon.json. */
async function startDaemon(dir) {
  if (process.platform !== 'linux') {
    throw new LocalDaemonError(
      `sandbank: no server configured, and the local engine needs Linux (this is ${process.platform}-${process.arch}): set NOVITA_API_KEY to use the Novita cloud, or SANDBANK_URL (and SANDBANK_API_KEY) to use a sandbank server running on a Linux machine`,
    )
  }
  const bin = serverBinaryPath()
  if (!fs.existsSync(bin)) {
    const pkgs = platformPackages().join(' or ')
    throw new LocalDaemonError(
      `sandbank: no server configured and the local engine binary ${bin} is missing (npm installs it with the optional dependency ${pkgs}; it is skipped with --omit=optional or --no-optional): reinstall sandbank, run \`npm run build\` in a checkout, set SANDBANK_BIN, or configure a server (SANDBANK_URL, or NOVITA_API_KEY for the Novita cloud)`,
    )
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const logPath = join(dir, LOG_FILE)
  const deadline = Date.now() + START_TIMEOUT_MS
  for (let attempt = 0; ; attempt++) {
    const log = fs.openSync(logPath, 'a', 0o600)
    const idle = process.env.SANDBANK_IDLE_EXIT_SECS || String(DEFAULT_IDLE_EXIT_SECS)
    const env = { ...process.env, NO_COLOR: '1' }
    delete env.SANDBANK_API_KEY
    const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dir, '--idle-exit-secs', idle], {
      detached: true,
      stdio: ['ignore', log, log],
      env,
    })
    fs.closeSync(log)
    child.unref()
    let exited = null
    child.on('exit', (code, signal) => (exited = { code, signal }))
    child.on('error', (e) => (exited = { error: e }))
    for (;;) {
      const s = readState(dir)
      if (s && (s.pid === child.pid || exited)) return { ...s, started: s.pid === child.pid }
      if (exited) break
      if (Date.now() > deadline) {
        try {
          process.kill(child.pid, 'SIGTERM')
        } catch {}
        throw new LocalDaemonError(`sandbank: the local daemon did not become ready within ${START_TIMEOUT_MS / 1000} s; its log (${logPath}):\n${logTail(logPath)}`)
      }
      await sleep(15)
    }
    if (exited.error) throw new LocalDaemonError(`sandbank: cannot start ${bin}: ${exited.error.message}`)
    const tail = logTail(logPath)
    if (/in use by another sandbank serve/.test(tail)) {
      // Another process won the race (or a daemon is stopping): use its daemon.json once it
      // appears, or try again once it is gone.
      while (Date.now() < deadline) {
        const s = readState(dir)
        if (s) return s
        const lockPid = Number(fs.readFileSync(join(dir, 'lock'), 'utf8').trim())
        if (!lockPid || !alive(lockPid)) break
        await sleep(15)
      }
      if (Date.now() < deadline && attempt < 20) continue
    }
    const why = tail.split('\n').filter((l) => /sandbank serve:|error/i.test(l)).pop() ?? tail
    throw new LocalDaemonError(`sandbank: the local daemon could not start (exit ${exited.code ?? exited.signal}): ${why.replace(/^sandbank serve: /, '')}`)
  }
}

let current = null // Promise of {url, apiKey, pid, dataDir, started}

/** The local server to use: SANDBANK_URL, a running daemon, or one started now. */
async function localServer() {
  if (process.env.SANDBANK_URL) {
    return { url: process.env.SANDBANK_URL.replace(/\/+$/, ''), apiKey: process.env.SANDBANK_API_KEY, pid: null, started: false }
  }
  if (current) {
    const s = await current.catch(() => null)
    if (s && alive(s.pid)) return s
    current = null
  }
  const dir = dataDir()
  current = (async () => readState(dir) ?? (await startDaemon(dir)))()
  current.catch(() => (current = null))
  return current
}

/**
 * Connection options for a call: the caller's, or (when nothing is configured) those of the
 * local engine.
 */
async function connectionOpts(opts) {
  const conn = pickConnection(opts)
  if (isConfigured(opts)) return conn
  const s = await localServer()
  return { ...conn, apiKey: s.apiKey, apiUrl: s.url, sandboxUrl: s.url }
}

function pickConnection(opts) {
  const out = {}
  if (!opts) return out
  for (const k of ['apiKey', 'accessToken', 'domain', 'apiUrl', 'sandboxUrl', 'debug', 'requestTimeoutMs', 'headers']) {
    if (opts[k] !== undefined && opts[k] !== null) out[k] = opts[k]
  }
  return out
}

module.exports = { connectionOpts, pickConnection, isConfigured, localServer, dataDir, serverBinaryPath, platformPackages, LocalDaemonError, STATE_FILE }
