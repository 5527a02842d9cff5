// The published Python `e2b` SDK (PyPI, pinned below) against a real server, through both its
// synchronous `Sandbox` and its `AsyncSandbox`: the snapshot flow of the docs, pause and resume,
// files, commands, metrics, and what a killed sandbox's calls raise.
//
// The venv is made by scripts/python-venv.sh, outside the clone (in
// ${XDG_CACHE_HOME:-~/.cache}/sandbank-test/py-e2b-<version>), once: later runs reuse it. Each
// test runs one case of __test__/fixtures/python-e2b-{sync,async}.py with the venv's python and
// the server named by E2B_API_URL / E2B_SANDBOX_URL / E2B_API_KEY; the script prints what the SDK
// gave back as JSON lines, and the assertions are here. The script cleans up what it made; the test
// then checks through the raw API that none of it is left (and removes what is).
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { repoRoot, startServer, stopAndCheck } from './helpers.mjs'

export const E2B_PY_VERSION = '2.63.0'
const SANDBOX_ID = /^[a-z0-9]{20}$/
const SNAPSHOT_ID = /^[a-z0-9]{20}:default$/
const fixture = (kind) => join(repoRoot, '__test__', 'fixtures', `python-e2b-${kind}.py`)
const tail = (s, n = 8000) => (s.length > n ? `…${s.slice(-n)}` : s)

/** Runs a command to its end: {code, signal, stdout, stderr, timedOut}. */
function runProcess(cmd, args, { env, timeoutMs }) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    proc.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    proc.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      timedOut = true
      proc.kill('SIGKILL') // only the process started here, by its own handle
    }, timeoutMs)
    proc.on('error', (e) => {
      clearTimeout(timer)
      reject(new Error(`cannot run ${cmd}: ${e.message}`))
    })
    proc.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, timedOut })
    })
  })
}

/** The venv's python (scripts/python-venv.sh makes the venv when it is missing). */
async function pythonWithE2b() {
  const r = await runProcess('bash', [join(repoRoot, 'scripts', 'python-venv.sh')], {
    env: { ...process.env, E2B_PY_VERSION },
    timeoutMs: 900_000,
  })
  const python = r.stdout.trim().split('\n').pop()
  if (r.code !== 0 || !python) {
    throw new Error(`scripts/python-venv.sh failed (${r.timedOut ? 'timed out' : r.code ?? r.signal}):\n${tail(r.stderr)}`)
  }
  return python
}

let server
let python

before(
  async () => {
    python = await pythonWithE2b()
    server = await startServer()
  },
  { timeout: 900_000 },
)
after(async () => {
  if (server) await stopAndCheck(server)
})

/**
 * The environment of the Python scripts: the server through the SDK's own variables, and nothing
 * inherited that could point it elsewhere (E2B_DOMAIN, E2B_DEBUG, E2B_ACCESS_TOKEN, a proxy, …).
 */
function pythonEnv() {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(E2B_|NOVITA_)/.test(k) || /^(https?|all|no)_proxy$/i.test(k)) continue
    env[k] = v
  }
  return {
    ...env,
    E2B_API_URL: server.url,
    E2B_SANDBOX_URL: server.url,
    E2B_API_KEY: server.apiKey,
    PYTHONIOENCODING: 'utf-8',
    PYTHONUNBUFFERED: '1',
    // A crash of the interpreter shows where it was (in the failure's stderr).
    PYTHONFAULTHANDLER: '1',
  }
}

/** Every snapshot the raw API lists (all pages). */
async function allSnapshots() {
  const out = []
  let token = ''
  for (let i = 0; i < 100; i++) {
    const r = await server.fetch(`/snapshots?limit=100${token ? `&nextToken=${encodeURIComponent(token)}` : ''}`)
    assert.equal(r.status, 200, `GET /snapshots: ${r.status}`)
    out.push(...(await r.json()).map((s) => s.snapshotID))
    token = r.headers.get('x-next-token')
    if (!token) break
  }
  return out
}

/**
 * Runs `python-e2b-<kind>.py <name>` and returns its `result`. Fails, with the script's output,
 * when the script fails; fails when anything it made is left on the server (and removes it).
 */
async function runCase(kind, name) {
  const r = await runProcess(python, [fixture(kind), name], { env: pythonEnv(), timeoutMs: 240_000 })
  const created = { sandboxes: [], snapshots: [] }
  let result
  let cleanup
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    let msg
    try {
      msg = JSON.parse(line)
    } catch {
      continue
    }
    if (msg.created === 'sandbox') {
      created.sandboxes.push(msg.id)
      server.sandboxIds.add(msg.id)
    } else if (msg.created === 'snapshot') created.snapshots.push(msg.id)
    else if ('result' in msg) result = msg.result
    else if ('cleanup' in msg) cleanup = msg.cleanup
  }

  // Nothing the script made may be left, whatever happened to it.
  const left = []
  for (const id of created.sandboxes) {
    const got = await server.fetch(`/sandboxes/${id}`)
    if (got.status !== 404) {
      left.push(`sandbox ${id} (GET /sandboxes/${id}: ${got.status})`)
      await server.fetch(`/sandboxes/${id}`, { method: 'DELETE' })
    }
  }
  const listed = new Set(await allSnapshots())
  for (const id of created.snapshots) {
    if (listed.has(id)) {
      left.push(`snapshot ${id}`)
      await server.fetch(`/templates/${encodeURIComponent(id)}`, { method: 'DELETE' })
    }
  }

  const output = `--- exit ${r.timedOut ? 'timed out (killed)' : r.code ?? r.signal}\n--- stdout\n${tail(r.stdout)}\n--- stderr\n${tail(r.stderr)}`
  if (r.code !== 0 || result === undefined) {
    assert.fail(`python ${kind} case "${name}" failed${left.length ? `, and left ${left.join(', ')}` : ''}\n${output}`)
  }
  assert.deepEqual(left, [], `python ${kind} case "${name}" left these behind (cleanup said ${JSON.stringify(cleanup)})`)
  return result
}

/** Runs the assertions, adding the script's result to the message of the first that fails. */
function checking(result, fn) {
  try {
    fn(result)
  } catch (e) {
    e.message += `\n--- the Python case's result ---\n${JSON.stringify(result, null, 1)}`
    throw e
  }
}

/** `got` (an `error_info` of the script) is an exception of class `cls` or a subclass. */
function raised(got, cls, label, { exact = false } = {}) {
  assert.ok(got && Array.isArray(got.mro), `${label}: expected ${cls}, but the call returned ${JSON.stringify(got?.returned)}`)
  const ok = exact ? got.type === cls : got.mro.includes(cls)
  assert.ok(ok, `${label}: expected ${exact ? '' : 'a subclass of '}${cls}, got ${got.type} (${got.mro.join(' < ')}): ${got.message}`)
  return got
}

const flat = (pages) => pages.flat()

for (const kind of ['sync', 'async']) {
  const Sandbox = kind === 'sync' ? 'Sandbox' : 'AsyncSandbox'

  describe(`python e2b ${E2B_PY_VERSION}: ${Sandbox}`, () => {
    test('create with metadata, envs and timeout; get_info; list by metadata (limit 1); set_timeout; connect; kill', async () => {
      checking(await runCase(kind, 'lifecycle'), (r) => {
        assert.match(r.sandbox_id, SANDBOX_ID)
        assert.equal(r.info.sandbox_id, r.sandbox_id)
        assert.equal(r.info.state, 'running')
        assert.equal(r.info.metadata.via, 'python')
        assert.ok(r.info.ttl_s > 85 && r.info.ttl_s < 95, `end_at - started_at = ${r.info.ttl_s} s`)
        assert.ok(r.info.cpu_count >= 1 && r.info.memory_mb > 0)
        assert.equal(r.hostname, r.sandbox_id)
        assert.equal(r.sandbox_env, 'v1\n')
        assert.equal(r.is_running, true)
        assert.deepEqual(r.listed, r.expected_listed)
        assert.ok(r.page_sizes.every((n) => n <= 1), `page sizes ${r.page_sizes}`)
        assert.ok(r.ttl_after_set_timeout_s > 50 && r.ttl_after_set_timeout_s <= 61, `ttl after set_timeout(60): ${r.ttl_after_set_timeout_s}`)
        assert.equal(r.connect_hostname, r.sandbox_id)
        assert.equal(r.kill, true)
        assert.equal(r.kill_again, false)
        raised(r.get_info_killed, 'SandboxNotFoundException', 'get_info of a killed sandbox')
      })
    })

    test('snapshots: create, snapshot, start from it, list by origin (paginator), kill, delete', async () => {
      checking(await runCase(kind, 'snapshot'), (r) => {
        assert.equal(r.write_exit, 0)
        assert.match(r.snapshot.snapshot_id, SNAPSHOT_ID)
        assert.ok(Array.isArray(r.snapshot.names))
        assert.equal(r.origin_running, true, 'the origin keeps running')
        assert.equal(r.origin_status, 'ready\n')
        assert.notEqual(r.new_id, r.origin_id)
        assert.equal(r.new_status, 'ready\n', 'the new sandbox has the file')
        assert.equal(r.new_template_id, r.snapshot.snapshot_id.replace(/:default$/, ''))
        assert.match(r.second_id, SNAPSHOT_ID)
        const both = [r.snapshot.snapshot_id, r.second_id].sort()
        assert.ok(r.pages_limit_1.every((p) => p.length <= 1), `pages of limit 1: ${JSON.stringify(r.pages_limit_1)}`)
        assert.deepEqual(flat(r.pages_limit_1).sort(), both)
        assert.deepEqual(flat(r.pages_limit_20).sort(), both)
        assert.deepEqual(flat(r.pages_instance).sort(), both, 'sandbox.list_snapshots() lists its own')
        assert.deepEqual(flat(r.pages_of_new), [], 'the new sandbox has no snapshots of its own')
        assert.equal(r.in_unfiltered_list, true)
        const inUse = raised(r.delete_in_use, 'SandboxException', 'deleting a snapshot a running sandbox uses')
        assert.equal(inUse.status_code, 400)
        assert.equal(r.kill_new, true)
        assert.equal(r.kill_origin, true)
        assert.equal(r.delete, true)
        assert.equal(r.delete_again, false)
        assert.equal(r.delete_second, true)
        assert.deepEqual(flat(r.pages_after_delete), [])
        const gone = raised(r.create_from_deleted, 'SandboxException', 'creating a sandbox from a deleted snapshot')
        assert.equal(gone.status_code, 404)
      })
    })

    test('pause (false when already paused), paused state and list, connect resumes files and processes', async () => {
      checking(await runCase(kind, 'pause'), (r) => {
        assert.equal(r.pause, true)
        assert.equal(r.pause_again, false)
        assert.equal(r.state_paused, 'paused')
        assert.ok(r.listed_paused.includes(r.connect_id), `listed paused: ${r.listed_paused}`)
        assert.equal(r.is_running_paused, false)
        assert.equal(r.state_after, 'running')
        assert.equal(r.file_after, 'kept')
        assert.equal(r.alive_after, 'alive\n', 'the background process survived the pause')
        assert.ok(r.listed_pids.includes(r.bg_pid), `commands.list(): ${r.listed_pids}`)
        assert.equal(r.old_object_works, 'still\n')
        assert.equal(r.bg_kill, true)
        raised(r.bg_wait, 'CommandExitException', 'wait() on the background command killed after the resume')
        assert.equal(r.pause_2, true)
        assert.equal(r.instance_connect_state, 'running')
        assert.equal(r.instance_connect_file, 'kept')
        raised(r.pause_missing, 'SandboxNotFoundException', 'pause of an unknown sandbox')
        raised(r.connect_missing, 'SandboxNotFoundException', 'connect to an unknown sandbox')
        assert.equal(r.kill, true)
        // Last, so that the rest is checked whatever this gives: the SDK reads a 502 whose message
        // says "was not found" as "not running" — "killed, paused or reached its timeout".
        raised(r.run_while_paused, 'SandboxNotRunningException', 'a command in a paused sandbox', { exact: true })
      })
    })

    test('files: text and bytes, streamed upload, write_files, list, exists, make_dir, rename, remove, get_info, relative paths', async () => {
      checking(await runCase(kind, 'files'), (r) => {
        assert.equal(r.write_text.path, '/home/user/py.txt')
        assert.equal(r.write_text.name, 'py.txt')
        assert.equal(r.read_text, 'python text ✓')
        assert.equal(r.bytes_type, 'bytearray')
        assert.equal(r.bytes_equal, true)
        assert.equal(r.bytes_sha_inside, r.bytes_sha)
        assert.equal(r.stream_equal, true)
        assert.deepEqual(r.write_files, ['/home/user/multi/a.txt', '/home/user/multi/b.txt'])
        assert.equal(r.multi_cat, 'AB')
        assert.equal(r.make_dir, true)
        assert.equal(r.make_dir_again, false)
        assert.deepEqual(
          r.list.map((e) => [e.name, e.type, e.path, e.size]),
          [['x.txt', 'file', '/home/user/d/x.txt', 1]],
        )
        assert.deepEqual(r.list_depth_2, ['/home/user/multi', '/home/user/multi/a.txt', '/home/user/multi/b.txt'])
        assert.equal(r.exists, true)
        assert.equal(r.exists_missing, false)
        assert.equal(r.info_file.type, 'file')
        assert.equal(r.info_file.size, 1)
        assert.equal(r.info_file.owner, 'user')
        assert.equal(r.info_file.permissions, '-rw-r--r--')
        assert.ok(r.info_file.modified_time)
        assert.equal(r.info_dir.type, 'dir')
        assert.equal(r.info_dir.path, '/home/user/d')
        assert.equal(r.info_dir.mode, 0o755)
        assert.equal(r.rename.path, '/home/user/d/y.txt')
        assert.equal(r.rename.name, 'y.txt')
        assert.equal(r.exists_old, false)
        assert.equal(r.read_renamed, 'x')
        assert.equal(r.exists_removed, false)
        raised(r.read_missing, 'FileNotFoundException', 'read of a missing file', { exact: true })
        raised(r.info_missing, 'FileNotFoundException', 'get_info of a missing file', { exact: true })
        raised(r.list_missing, 'FileNotFoundException', 'list of a missing directory', { exact: true })
        assert.equal(r.read_missing_is_file_not_found, true)
        assert.equal(r.rel_write.path, '/home/user/rel.txt', 'a relative path lands in /home/user')
        assert.equal(r.rel_cat, 'relative')
        assert.equal(r.rel_read, 'relative')
        assert.equal(r.rel_read_home, 'relative')
        assert.equal(r.rel_exists, true)
        assert.equal(r.rel_info_path, '/home/user/rel.txt')
        assert.deepEqual(r.rel_list_paths, ['/home/user/rel.txt'])
        assert.equal(r.root_rel_cat, 'r', "root's relative path is in /root")
        assert.equal(r.rel_exists_removed, false)
      })
    })

    const watchHow = kind === 'sync' ? 'polling watcher RPCs (CreateWatcher, GetWatcherEvents, RemoveWatcher)' : 'the WatchDir stream'
    test(`watch_dir through ${watchHow}: events, recursive, stop, missing directory`, async () => {
      checking(await runCase(kind, 'watch'), (r) => {
        const names = (events) => events.map(([n, ty]) => `${ty} ${n}`)
        assert.ok(
          r.events.some(([n, ty]) => n === 'new.txt' && (ty === 'create' || ty === 'write')),
          `no create/write of new.txt: ${names(r.events)}`,
        )
        assert.ok(r.events.some(([n, ty]) => n === 'new.txt' && ty === 'remove'), `no remove of new.txt: ${names(r.events)}`)
        if (kind === 'sync') {
          const stopped = raised(r.after_stop, 'SandboxException', 'get_new_events after stop()')
          assert.match(stopped.message, /already stopped/)
        } else {
          assert.deepEqual(r.on_exit_after_stop, [null], 'on_exit fires once, without an error, on stop()')
        }
        assert.ok(r.recursive_events.some(([n]) => n === 'sub/deep.txt'), `recursive: ${names(r.recursive_events)}`)
        raised(r.watch_missing, 'FileNotFoundException', 'watching a missing directory')
      })
    })

    test('commands: output, exit code error, envs, cwd, user, on_stdout, background kill and wait, stdin, timeout', async () => {
      checking(await runCase(kind, 'commands'), (r) => {
        assert.deepEqual(r.basic, { exit_code: 0, stdout: 'out\n', stderr: 'err\n', error: null })
        const exit = raised(r.exit_error, 'CommandExitException', 'exit 7', { exact: true })
        assert.deepEqual([exit.exit_code, exit.stdout, exit.stderr], [7, 'o\n', 'e\n'])
        assert.equal(r.envs, 'per-cmd\n')
        assert.equal(r.sandbox_env, 'v1\n')
        assert.equal(r.cwd, '/tmp\n')
        assert.equal(r.user_default, 'user\n/home/user\n')
        assert.equal(r.user_root, 'root\n0\n')
        assert.equal(r.on_stdout, 'a\nb\n')
        assert.equal(r.bg_pid_positive, true)
        assert.equal(r.bg_listed, true)
        assert.equal(r.bg_kill, true)
        raised(r.bg_wait_killed, 'CommandExitException', 'wait() on a killed command', { exact: true })
        assert.equal(r.bg_kill_again, false)
        assert.equal(r.bg_listed_after, false)
        assert.deepEqual(r.bg_wait_ok, { exit_code: 0, stdout: 'hi\ndone\n' })
        assert.equal(r.stdin, '[via python]\n')
        raised(r.timeout, 'TimeoutException', 'a command past its timeout')
      })
    })

    test('get_metrics (instance and class method), unknown sandbox', async () => {
      checking(await runCase(kind, 'metrics'), (r) => {
        for (const [how, list] of [['instance', r.instance], ['static', r.static]]) {
          assert.ok(list.length >= 1, `${how}: no sample`)
          for (const m of list) {
            assert.ok(m.cpu_count >= 1, `${how}: cpu_count ${m.cpu_count}`)
            assert.ok(m.cpu_used_pct >= 0 && m.cpu_used_pct <= 100 * m.cpu_count, `${how}: cpu_used_pct ${m.cpu_used_pct}`)
            assert.ok(m.mem_total > 0 && m.mem_used > 0 && m.mem_used <= m.mem_total, `${how}: mem ${m.mem_used}/${m.mem_total}`)
            assert.ok(Number.isInteger(m.mem_cache) && m.mem_cache >= 0, `${how}: mem_cache ${m.mem_cache}`)
            assert.ok(m.disk_used >= 8_000_000 && m.disk_used <= m.disk_total, `${how}: disk ${m.disk_used}/${m.disk_total}`)
            assert.ok(Math.abs(Date.parse(m.timestamp) - Date.now()) < 120_000, `${how}: timestamp ${m.timestamp}`)
          }
        }
        raised(r.missing, 'SandboxNotFoundException', 'get_metrics of an unknown sandbox')
      })
    })

    test("a killed sandbox: envd calls raise the SDK's SandboxNotRunningException, the API SandboxNotFoundException", async () => {
      checking(await runCase(kind, 'killed'), (r) => {
        assert.equal(r.kill, true)
        assert.equal(r.is_running, false)
        for (const call of ['run', 'read', 'write', 'list', 'exists', 'commands_list']) {
          const e = raised(r[call], 'SandboxNotRunningException', `${call} after kill`, { exact: true })
          assert.ok(e.message.includes(`The sandbox "${r.sandbox_id}" was not found`), `${call}: ${e.message}`)
        }
        raised(r.get_info, 'SandboxNotFoundException', 'get_info after kill', { exact: true })
        raised(r.get_metrics, 'SandboxNotFoundException', 'get_metrics after kill', { exact: true })
        raised(r.connect, 'SandboxNotFoundException', 'connect after kill', { exact: true })
        assert.equal(r.kill_again, false)
      })
    })
  })
}
