// Start and stop a local `sandbank serve` from Node, for the benchmarks, the tests and the CI scripts
// (not part of the published package: users get the SDK's local default, crates/client/src/local.rs).
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..')

/** The native `sandbank` binary: $SANDBANK_BIN, else <package>/native/sandbank. */
export function sandbankBinary() {
  const bin = process.env.SANDBANK_BIN || join(packageRoot, 'native', 'sandbank')
  if (!existsSync(bin)) {
    throw new Error(`${bin} is missing: run \`npm run build\` first (it needs Rust and cargo), or set SANDBANK_BIN`)
  }
  return bin
}

/**
 * Starts `sandbank serve` and resolves once it printed `listening on http://ADDR`.
 *
 * Options: `dataDir` (default: a fresh temporary directory), `apiKey` (default: random),
 * `listen` (default `127.0.0.1:0`), `extraArgs`, `env` (merged over process.env, without any
 * inherited SANDBANK_API_KEY / SANDBANK_DATA_DIR), `startTimeoutMs` (60 s), `onStderr(chunk)`,
 * `binary` (default: {@link sandbankBinary}).
 */
export async function startLocalServer(opts = {}) {
  const bin = opts.binary ?? sandbankBinary()
  const ownDir = !opts.dataDir
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), opts.tmpPrefix ?? 'sandbank-'))
  const apiKey = opts.apiKey ?? `sk_local_${randomBytes(16).toString('hex')}`
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000
  const env = { ...process.env }
  delete env.SANDBANK_API_KEY
  delete env.SANDBANK_DATA_DIR
  Object.assign(env, opts.env ?? {})

  const t0 = performance.now()
  const proc = spawn(bin, ['serve', '--listen', opts.listen ?? '127.0.0.1:0', '--data-dir', dataDir, '--api-key', apiKey, ...(opts.extraArgs ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  })
  let stderr = ''
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-200_000)
    opts.onStderr?.(d)
  })
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal, at: performance.now() })))

  const url = await new Promise((resolve, reject) => {
    let settled = false
    const fail = (err, spawnFailed = false) => {
      if (settled) return
      settled = true
      // The server never came up: drop the temporary data dir we made for it, once it is gone.
      if (ownDir) (spawnFailed ? Promise.resolve() : exited).then(() => removeDataDir(dataDir))
      reject(err)
    }
    let stdout = ''
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      fail(new Error(`sandbank serve did not print "listening on" within ${startTimeoutMs} ms; stderr:\n${stderr}`))
    }, startTimeoutMs)
    proc.on('error', (e) => {
      clearTimeout(timer)
      fail(new Error(`cannot start ${bin}: ${e.message}`), true)
    })
    proc.stdout.setEncoding('utf8')
    proc.stdout.on('data', (d) => {
      stdout += d
      const m = /^listening on (http:\/\/\S+)\s*$/m.exec(stdout)
      if (m && !settled) {
        settled = true
        clearTimeout(timer)
        resolve(m[1])
      }
    })
    exited.then(({ code, signal }) => {
      clearTimeout(timer)
      fail(new Error(`sandbank serve exited (${code ?? signal}) before listening; stderr:\n${stderr}`))
    })
  })

  return {
    url,
    apiKey,
    dataDir,
    proc,
    startMs: performance.now() - t0,
    get stderr() {
      return stderr
    },
    /** Connection options for `novita-sandbox` and `e2b` (both spell them the same). */
    sdkOpts(extra = {}) {
      return { apiKey, apiUrl: url, sandboxUrl: url, ...extra }
    },
    /** `fetch` against the server with the API key. */
    fetch(path, init = {}) {
      return fetch(url + path, { ...init, headers: { 'X-API-KEY': apiKey, ...(init.headers ?? {}) } })
    },
    /**
     * SIGTERM, then wait for the exit (SIGKILL after `killAfterMs`). Resolves to
     * `{code, signal, elapsedMs, alreadyExited}`.
     */
    async stop({ killAfterMs = 15_000 } = {}) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        return { ...(await exited), elapsedMs: 0, alreadyExited: true }
      }
      const t = performance.now()
      proc.kill('SIGTERM')
      const killer = setTimeout(() => proc.kill('SIGKILL'), killAfterMs)
      const r = await exited
      clearTimeout(killer)
      return { ...r, elapsedMs: r.at - t, alreadyExited: false }
    },
  }
}

/**
 * Removes a data directory, but never while something is mounted inside it (a leaked bind mount
 * of a host directory would otherwise be emptied by the recursive delete). Returns whether it did.
 */
export function removeDataDir(dir) {
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.includes(dir))
  if (mounted) {
    console.error(`sandbank: not removing ${dir}: something is still mounted inside it`)
    return false
  }
  rmSync(dir, { recursive: true, force: true })
  return true
}

/**
 * Stops the daemon named in `<dataDir>/daemon.json` (one the SDK's local default started):
 * SIGTERM, then waits up to 15 s; SIGKILL after that. Returns whether it went on SIGTERM (or none
 * was running).
 */
export function stopDaemon(dataDir) {
  let pid
  try {
    pid = JSON.parse(readFileSync(join(dataDir, 'daemon.json'), 'utf8')).pid
  } catch {
    return true
  }
  try {
    process.kill(pid, 'SIGTERM')
  } catch {
    return true
  }
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0)
      // A zombie (exited, not yet reaped by whoever inherited it) is gone too.
      if (/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) return true
    } catch {
      return true
    }
    spawnSync('sleep', ['0.1'])
  }
  try {
    process.kill(pid, 'SIGKILL')
  } catch {}
  return false
}
