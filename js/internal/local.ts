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
// The SDK uses it only through connectionOpts, pickConnection, isConfigured, serverBinaryPath and
// LocalDaemonError, so that it can be replaced as a whole.
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import { dirname, join } from 'node:path'
import type { ConnectionOpts } from '../connection'

export const STATE_FILE = 'daemon.json'
const LOG_FILE = 'daemon.log'
const DEFAULT_IDLE_EXIT_SECS = 300
const START_TIMEOUT_MS = 60_000

/** The package's root directory: this file is `<package>/dist/internal/local.js`. */
const packageRoot = join(__dirname, '..', '..')

/** The options and variables that mean "not the local default". */
const CONFIG_KEYS = ['apiKey', 'accessToken', 'apiUrl', 'sandboxUrl', 'domain'] as const
const CONFIG_VARS = ['API_KEY', 'ACCESS_TOKEN', 'API_URL', 'SANDBOX_URL', 'DOMAIN']

/** The connection options a call takes over from the caller's options. */
const CONNECTION_KEYS = ['apiKey', 'accessToken', 'domain', 'apiUrl', 'sandboxUrl', 'debug', 'requestTimeoutMs', 'headers'] as const

/** A server to use: its URL and API key, and the daemon's pid and data dir when it is one. */
export interface LocalServer {
  url: string
  apiKey?: string
  pid: number | null
  dataDir?: string
  /** Whether this process started it. */
  started: boolean
}

/** Whether `opts` or the environment configure a server (cloud or explicit URL). */
export function isConfigured(opts?: ConnectionOpts): boolean {
  if (opts && CONFIG_KEYS.some((k) => opts[k])) return true
  if (opts?.debug) return true
  const env = process.env
  if (CONFIG_VARS.some((v) => env[`NOVITA_${v}`] || env[`E2B_${v}`])) return true
  return env.NOVITA_DEBUG === 'true' || env.E2B_DEBUG === 'true'
}

/** The local engine's data directory. */
export function dataDir(): string {
  if (process.env.SANDBANK_DATA_DIR) return process.env.SANDBANK_DATA_DIR
  const base = process.env.XDG_DATA_HOME || join(os.homedir(), '.local', 'share')
  return join(base, 'sandbank')
}

/** Whether this Linux uses musl (Alpine) rather than glibc. */
function isMusl(): boolean {
  try {
    const report = process.report.getReport() as { header: { glibcVersionRuntime?: string } }
    return !report.header.glibcVersionRuntime
  } catch {
    return false
  }
}

/**
 * The npm packages that may carry the `sandbank` binary on this machine, best match first: the
 * platform package (`sandbank-linux-x64-gnu`, …) npm installed from the optional dependencies.
 */
export function platformPackages(): string[] {
  if (process.platform !== 'linux') return []
  const libcs = isMusl() ? ['musl', 'gnu'] : ['gnu', 'musl']
  return libcs.map((libc) => `sandbank-linux-${process.arch}-${libc}`)
}

/**
 * Absolute path of the `sandbank` server binary: `$SANDBANK_BIN` when set, else the one
 * `npm run build` copies to `<package>/native/sandbank`, else the one in the platform package
 * (`sandbank-linux-x64-gnu`, …). When none exists, the path where a build would put it (the error
 * messages name it).
 */
export function serverBinaryPath(): string {
  if (process.env.SANDBANK_BIN) return process.env.SANDBANK_BIN
  const built = join(packageRoot, 'native', 'sandbank')
  if (fs.existsSync(built)) return built
  for (const name of platformPackages()) {
    let dir: string
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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM'
  }
  // A recycled PID would not be a `sandbank serve`.
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('serve')
  } catch {
    return process.platform !== 'linux'
  }
}

/** The running daemon named by daemon.json, or null. */
function readState(dir: string): LocalServer | null {
  let s
  try {
    s = JSON.parse(fs.readFileSync(join(dir, STATE_FILE), 'utf8'))
  } catch {
    return null
  }
  if (!s || typeof s.url !== 'string' || !Number.isInteger(s.pid) || !alive(s.pid)) return null
  return { url: s.url, apiKey: s.apiKey, pid: s.pid, dataDir: s.dataDir ?? dir, started: false }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function logTail(path: string): string {
  try {
    const text = fs.readFileSync(path, 'utf8')
    // tracing colours the log when it thinks it is a terminal; strip the escapes.
    return text.replace(/\x1b\[[0-9;]*m/g, '').trimEnd().split('\n').slice(-8).join('\n')
  } catch {
    return ''
  }
}

/** The local engine could not be used (no Linux, no binary, the daemon did not start). */
export class LocalDaemonError extends Error {}

/** Starts `sandbank serve` in the background and resolves with its daemon.json. */
async function startDaemon(dir: string): Promise<LocalServer> {
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
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' }
    delete env.SANDBANK_API_KEY
    const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dir, '--idle-exit-secs', idle], {
      detached: true,
      stdio: ['ignore', log, log],
      env,
    })
    fs.closeSync(log)
    child.unref()
    let exited: { code?: number | null; signal?: string | null; error?: Error } | null = null
    child.on('exit', (code, signal) => (exited = { code, signal }))
    child.on('error', (e) => (exited = { error: e }))
    for (;;) {
      const s = readState(dir)
      if (s && (s.pid === child.pid || exited)) return { ...s, started: s.pid === child.pid }
      if (exited) break
      if (Date.now() > deadline) {
        try {
          process.kill(child.pid!, 'SIGTERM')
        } catch {}
        throw new LocalDaemonError(`sandbank: the local daemon did not become ready within ${START_TIMEOUT_MS / 1000} s; its log (${logPath}):\n${logTail(logPath)}`)
      }
      await sleep(15)
    }
    // The callbacks above set it; TypeScript cannot see that they ran.
    const ended = exited as { code?: number | null; signal?: string | null; error?: Error }
    if (ended.error) throw new LocalDaemonError(`sandbank: cannot start ${bin}: ${ended.error.message}`)
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
    throw new LocalDaemonError(`sandbank: the local daemon could not start (exit ${ended.code ?? ended.signal}): ${why.replace(/^sandbank serve: /, '')}`)
  }
}

let current: Promise<LocalServer> | null = null

/** The local server to use: SANDBANK_URL, a running daemon, or one started now. */
export async function localServer(): Promise<LocalServer> {
  if (process.env.SANDBANK_URL) {
    return { url: process.env.SANDBANK_URL.replace(/\/+$/, ''), apiKey: process.env.SANDBANK_API_KEY, pid: null, started: false }
  }
  if (current) {
    const s = await current.catch(() => null)
    if (s && alive(s.pid!)) return s
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
export async function connectionOpts(opts?: ConnectionOpts): Promise<ConnectionOpts> {
  const conn = pickConnection(opts)
  if (isConfigured(opts)) return conn
  const s = await localServer()
  return { ...conn, apiKey: s.apiKey, apiUrl: s.url, sandboxUrl: s.url }
}

/** The connection options among `opts` (which may be any call's options), without unset ones. */
export function pickConnection(opts?: ConnectionOpts): ConnectionOpts {
  const out: Record<string, unknown> = {}
  if (!opts) return out
  for (const k of CONNECTION_KEYS) {
    if (opts[k] !== undefined && opts[k] !== null) out[k] = opts[k]
  }
  return out
}
