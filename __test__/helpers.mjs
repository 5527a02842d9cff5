// Shared test helpers: start a real `sandbank serve`, point the SDKs at it, and check that nothing
// of it remains afterwards (mounts, cgroups, guest processes).
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs'
import { join } from 'node:path'
import assert from 'node:assert/strict'
import { packageRoot, removeDataDir, sandbankBinary, startLocalServer } from '../scripts/local-server.mjs'

export const repoRoot = packageRoot

export { sandbankBinary }

/**
 * Starts `sandbank serve --listen 127.0.0.1:0` on a fresh temporary data dir with a random API
 * key; resolves once it printed `listening on http://ADDR`.
 */
export async function startServer(opts = {}) {
  // `npm test` runs some files again with every server in the other mode (root inside as the
  // host's root).
  const noUserns = process.env.SANDBANK_TEST_NO_USERNS === '1' ? ['--no-userns'] : []
  // And the files of snapshots again on the copy store (the default is btrfs).
  const store = process.env.SANDBANK_TEST_STORE ? ['--store', process.env.SANDBANK_TEST_STORE] : []
  const s = await startLocalServer({
    tmpPrefix: 'sandbank-test-',
    apiKey: `sk_test_${randomBytes(16).toString('hex')}`,
    onStderr: process.env.SANDBANK_TEST_VERBOSE ? (d) => process.stderr.write(d) : undefined,
    ...opts,
    extraArgs: [...(opts.extraArgs ?? []), ...noUserns.filter((a) => !opts.extraArgs?.includes(a)), ...(opts.extraArgs?.includes('--store') ? [] : store)],
  })
  return Object.assign(s, {
    /** Sandbox IDs created through this server (for the leftovers check). */
    sandboxIds: new Set(),
    novita: (extra = {}) => s.sdkOpts({ requestTimeoutMs: 30_000, ...extra }),
    e2b: (extra = {}) => s.sdkOpts({ requestTimeoutMs: 30_000, ...extra }),
  })
}

/**
 * Stops the server and asserts it exited by itself (code 0) within 5 s of SIGTERM, then that
 * nothing of it remains on the host. Removes the data dir only when no mount points into it.
 */
export async function stopAndCheck(server) {
  try {
    // Its children (guests' launchers, sandboxes' pasta): none may outlive it.
    const children = childProcesses(server.proc.pid)
    const r = await server.stop()
    assert.equal(r.alreadyExited, false, `the server died before the end of the tests; stderr:\n${server.stderr.slice(-4000)}`)
    assert.ok(r.elapsedMs < 5000, `the server took ${r.elapsedMs} ms to exit after SIGTERM (limit 5000 ms)`)
    assert.equal(r.signal, null, `the server was killed by ${r.signal}`)
    assert.equal(r.code, 0, `the server exited with ${r.code} after SIGTERM; stderr:\n${server.stderr.slice(-4000)}`)
    try {
      assertNoLeftovers(server)
      const alive = children.filter(isAlive)
      assert.deepEqual(alive.map((p) => `${p.pid} ${p.cmdline}`), [], 'child processes of the server outlived it')
    } catch (e) {
      e.message += `\n--- server stderr (last 30 lines) ---\n${server.stderr.split('\n').slice(-30).join('\n')}`
      throw e
    }
  } finally {
    safeRemove(server.dataDir) // refuses while anything is still mounted inside
  }
}

export const safeRemove = removeDataDir


export function assertNoLeftovers(server) {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(server.dataDir))
  assert.deepEqual(mounts, [], `mounts of the data dir remain after the server stopped`)
  // The btrfs store's image is on a loop device that goes with the server's mount namespace.
  assert.deepEqual(loopDevicesOf(server.dataDir), [], 'loop devices of the data dir remain after the server stopped')

  const ids = [...server.sandboxIds]
  const own = serverCgroupName(server.dataDir)
  const cgroups = sandbankCgroups(ids).filter((p) => p.includes(own) || ids.some((id) => p.includes(id)))
  assert.deepEqual(cgroups, [], 'cgroup directories made by the server remain after it stopped')

  // Guests and what they started are in the server's cgroups; anything else naming them, too.
  const procs = allProcesses().filter(
    (p) => inCgroupOf(p.pid, [own, ...ids]) || p.cmdline.includes(server.dataDir) || ids.some((id) => p.cmdline.includes(id)),
  )
  assert.deepEqual(procs.map((p) => `${p.pid} ${p.cmdline}`), [], 'processes of the server remain after it stopped')
}

/** The loop devices whose backing file is under `path`, by name (`loop3`). */
export function loopDevicesOf(path) {
  return readdirSync('/sys/block')
    .filter((d) => d.startsWith('loop'))
    .filter((d) => {
      try {
        return readFileSync(`/sys/block/${d}/loop/backing_file`, 'utf8').includes(path)
      } catch {
        return false
      }
    })
}

/** Whether process `pid` is in a cgroup whose path has one of `names` as a component. */
function inCgroupOf(pid, names) {
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .some((l) => names.some((n) => l.includes(`/${n}/`) || l.endsWith(`/${n}`)))
  } catch {
    return false
  }
}

/** The guest processes of the server on `dataDir` (in its cgroups), however many sandboxes it runs. */
export function guestProcessesOfServer(dataDir) {
  const own = serverCgroupName(dataDir)
  return guestProcesses().filter((p) => inCgroupOf(p.pid, [own]))
}

/**
 * The cgroup parent a server on `dataDir` makes: `sandbank-` and 48 bits of the FNV-1a hash of the
 * data dir's canonical path (as the engine computes it).
 */
export function serverCgroupName(dataDir) {
  let h = 0xcbf29ce484222325n
  for (const b of Buffer.from(realpathSync(dataDir))) {
    h ^= BigInt(b)
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn
  }
  return `sandbank-${(h & 0xffffffffffffn).toString(16).padStart(12, '0')}`
}

/** cgroup directories (any hierarchy, v1 or v2) whose path mentions sandbank or one of `ids`. */
export function sandbankCgroups(ids = []) {
  const out = []
  const walk = (dir, depth) => {
    let entries
    try {
      entries = readdirSync(dir, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue
      const p = join(dir, e.name)
      const lower = p.toLowerCase()
      if (lower.includes('sandbank') || ids.some((id) => p.includes(id))) out.push(p)
      if (depth < 6) walk(p, depth + 1)
    }
  }
  if (existsSync('/sys/fs/cgroup')) walk('/sys/fs/cgroup', 0)
  return out
}

/** Whether process `pid` exists (a zombie too). */
export function pidAlive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Waits up to `ms` for the processes `pids` to be gone; returns those still there. */
export async function waitGone(pids, ms) {
  const end = Date.now() + ms
  while (pids.some(pidAlive) && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
  return pids.filter(pidAlive)
}

/** A process's parent pid, start time (clock ticks since boot) and state, from /proc/PID/stat. */
export function procStat(pid) {
  try {
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { state: f[0], ppid: Number(f[1]), start: f[19] }
  } catch {
    return null
  }
}

/** The children of `pid` (with their start times, to tell a reused pid apart later). */
export function childProcesses(pid) {
  return allProcesses()
    .map((p) => ({ ...p, stat: procStat(p.pid) }))
    .filter((p) => p.stat?.ppid === pid)
    .map((p) => ({ pid: p.pid, start: p.stat.start, argv: p.argv, cmdline: p.cmdline }))
}

/** Whether a process from `childProcesses` still runs (a zombie left for init to reap does not). */
export function isAlive(p) {
  const stat = procStat(p.pid)
  return stat !== null && stat.start === p.start && stat.state !== 'Z'
}

export function allProcesses() {
  const out = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean)
      let exe = ''
      try {
        exe = readlinkSync(`/proc/${name}/exe`)
      } catch {}
      out.push({ pid: Number(name), argv, exe, cmdline: argv.join(' ') })
    } catch {}
  }
  return out
}

function isGuest(p) {
  const argv0 = p.argv[0] ?? ''
  // A sandbox's PID 1 runs as `envd guest --envd`, from the sandbox's /usr/bin/envd.
  const envd = argv0 === 'envd' && p.argv[1] === 'guest'
  return envd || ((argv0.endsWith('sandbank') || p.exe.endsWith('/sandbank')) && p.argv.includes('guest'))
}

export function guestProcesses() {
  return allProcesses().filter(isGuest)
}

/** The `sandbank guest` processes of sandbox `id` (its launcher and PID 1): those in its cgroup. */
export function guestProcessesOf(id) {
  return guestProcesses().filter((p) => inCgroupOf(p.pid, [id]))
}

/** How many lower layers the overlays of sandbox `id` stack (the more of `/` and `/usr`), seen from the host. */
export function overlayLowers(id) {
  const [guest] = guestProcessesOf(id)
  assert.ok(guest, `no guest process for ${id}`)
  const counts = readFileSync(`/proc/${guest.pid}/mountinfo`, 'utf8')
    .split('\n')
    .filter((l) => l.includes(' - overlay '))
    .map((l) => (l.match(/lowerdir=([^,]*)/)?.[1] ?? '').split(':').length)
  assert.ok(counts.length > 0, `no overlay in the mounts of ${id}'s guest`)
  return Math.max(...counts)
}

/** Retries `fn` until it stops throwing or `timeoutMs` passes; rethrows the last error. */
export async function eventually(fn, { timeoutMs = 10_000, intervalMs = 100 } = {}) {
  const end = Date.now() + timeoutMs
  for (;;) {
    try {
      return await fn()
    } catch (e) {
      if (Date.now() > end) throw e
      await new Promise((r) => setTimeout(r, intervalMs))
    }
  }
}

/** Asserts `promise` rejects with an instance of `cls` and returns the error. */
export async function rejectsWith(promise, cls, check) {
  let err
  try {
    await promise
  } catch (e) {
    err = e
  }
  assert.ok(err, `expected a ${cls.name}, but the call succeeded`)
  assert.ok(err instanceof cls, `expected a ${cls.name}, got ${err?.name}: ${err?.message}`)
  if (check) check(err)
  return err
}

export function isDir(p) {
  try {
    return statSync(p).isDirectory()
  } catch {
    return false
  }
}

/** The host uid that owns sandbox `sbx`'s user namespace (ioctl NS_GET_OWNER_UID on a process
 * in it, from the host). */
export async function userNamespaceOwner(sbx) {
  const ns = (await sbx.commands.run('readlink /proc/self/ns/user')).stdout.trim()
  const owner = spawnSync('python3', ['-c', `
import fcntl, os, struct
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        if os.readlink(f'/proc/{pid}/ns/user') != '${ns}':
            continue
        fd = os.open(f'/proc/{pid}/ns/user', os.O_RDONLY)
    except OSError:
        continue
    print(struct.unpack('I', fcntl.ioctl(fd, 0xb704, b'\\0' * 4))[0])
    break
`], { encoding: 'utf8' })
  return Number(owner.stdout.trim())
}

/** Where running server `server` keeps `layers/` and `sandboxes/`: its data directory, or its
 * copy-on-write store (`--store btrfs`), which is mounted in the server's own mount namespace
 * and seen from here through its /proc/<pid>/root. */
export function layersRoot(server) {
  const store = `/proc/${server.proc.pid}/root${server.dataDir}/cow`
  return existsSync(join(store, 'layers')) ? store : server.dataDir
}

/** Servers one after another on one data directory, for tests of restarts: `first` runs;
 * `next(opts)` starts another on its data directory and API key (stop the one before, and mark it
 * `stopped`, first). When test `t` ends, a server still running is stopped, the last one checked
 * (`stopAndCheck`), or the directory removed when only the first ran. */
export async function serverGenerations(t, opts = {}) {
  const first = await startServer(opts)
  const all = [first]
  t.after(async () => {
    for (const s of all.slice(0, -1)) if (!s.stopped) await s.stop()
    if (all.length > 1) return stopAndCheck(all.at(-1))
    if (!first.stopped) await first.stop()
    removeDataDir(first.dataDir)
  })
  const next = async (more = {}) => {
    const s = await startServer({ ...opts, dataDir: first.dataDir, apiKey: first.apiKey, ...more })
    all.push(s)
    return s
  }
  return { first, next }
}

/**
 * Everything a test makes through `Sandbox` (the class of any of the three SDKs) on `server`,
 * removed when the test ends: its sandboxes killed first, then its snapshots deleted, newest
 * first (a snapshot cannot go while a sandbox made from it runs). `opts(extra)` are the
 * connection options (novita's spelling by default).
 */
export function tracker(t, server, Sandbox, opts = (extra = {}) => server.novita(extra)) {
  const sandboxes = new Set()
  const snapshots = new Set()
  t.after(async () => {
    for (const id of sandboxes) await Sandbox.kill(id, opts())
    for (const id of [...snapshots].reverse()) await Sandbox.deleteSnapshot(id, opts())
  })
  return {
    opts,
    /** `Sandbox.create(template?, opts(extra))`, tracked. */
    async create(template, extra = {}) {
      const sbx = template ? await Sandbox.create(template, opts(extra)) : await Sandbox.create(opts(extra))
      sandboxes.add(sbx.sandboxId)
      server.sandboxIds.add(sbx.sandboxId)
      return sbx
    },
    /** Kills a tracked sandbox now. */
    async kill(sbx) {
      await sbx.kill()
      sandboxes.delete(sbx.sandboxId)
    },
    /** Tracks a snapshot (returns it). */
    snap(info) {
      snapshots.add(info.snapshotId)
      return info
    },
    /** Stops tracking a snapshot the test deleted itself. */
    forget(info) {
      snapshots.delete(info.snapshotId)
    },
  }
}
