// The published `novita-sandbox` SDK against a real `sandbank serve`: lifecycle, commands, files,
// listing, timeouts. Every sandbox a test creates is killed by that test.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import {
  Sandbox,
  CommandExitError,
  FileNotFoundError,
  SandboxNotFoundError,
  TimeoutError,
} from 'novita-sandbox'
import { startServer, stopAndCheck, rejectsWith, eventually } from './helpers.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

/** Creates a sandbox that is killed when test `t` ends. */
async function create(t, opts = {}) {
  const sbx = await Sandbox.create({ ...server.novita(), ...opts })
  server.sandboxIds.add(sbx.sandboxId)
  t.after(async () => {
    await Sandbox.kill(sbx.sandboxId, server.novita())
  })
  return sbx
}

describe('lifecycle', () => {
  test('create with metadata, envs and timeout; getInfo reports them', async (t) => {
    const t0 = Date.now()
    const sbx = await create(t, { metadata: { owner: 'tests', 'with space': 'a&b=c' }, envs: { GREETING: 'hi there' }, timeoutMs: 120_000 })
    assert.match(sbx.sandboxId, /^[a-z0-9]{20}$/)

    const info = await sbx.getInfo()
    assert.equal(info.sandboxId, sbx.sandboxId)
    assert.equal(info.templateId, 'base')
    assert.equal(info.state, 'running')
    assert.deepEqual(info.metadata, { owner: 'tests', 'with space': 'a&b=c' })
    assert.ok(info.startedAt instanceof Date && info.endAt instanceof Date)
    assert.ok(Math.abs(info.startedAt.getTime() - t0) < 10_000, `startedAt ${info.startedAt.toISOString()} is not now`)
    const ttl = info.endAt.getTime() - info.startedAt.getTime()
    assert.ok(ttl > 115_000 && ttl < 125_000, `endAt - startedAt = ${ttl} ms, expected ~120 s`)
    assert.ok(info.cpuCount >= 1, `cpuCount ${info.cpuCount}`)
    assert.ok(info.memoryMB >= 64, `memoryMB ${info.memoryMB}`)
    assert.match(info.envdVersion, /^\d+\.\d+\.\d+/)

    const same = await Sandbox.getInfo(sbx.sandboxId, server.novita())
    assert.equal(same.sandboxId, sbx.sandboxId)
    assert.deepEqual(same.metadata, info.metadata)

    // Sandbox-wide envs reach every command.
    const r = await sbx.commands.run('echo "$GREETING"')
    assert.equal(r.stdout, 'hi there\n')
    assert.equal(sbx.sandboxId, (await sbx.commands.run('hostname')).stdout.trim())
  })

  test('default timeout is 300 s', async (t) => {
    const sbx = await create(t)
    const info = await sbx.getInfo()
    const ttl = info.endAt.getTime() - info.startedAt.getTime()
    assert.ok(ttl > 295_000 && ttl < 305_000, `default endAt - startedAt = ${ttl} ms`)
  })

  test('kill: the sandbox is gone, a second kill and a kill of an unknown ID answer false', async (t) => {
    const sbx = await create(t)
    assert.equal(await sbx.isRunning(), true)
    await sbx.kill()
    await rejectsWith(Sandbox.getInfo(sbx.sandboxId, server.novita()), SandboxNotFoundError)
    assert.equal(await Sandbox.kill(sbx.sandboxId, server.novita()), false)
    assert.equal(await Sandbox.kill('nosuchsandbox0000000', server.novita()), false)
    await assert.rejects(sbx.commands.run('true'))
    await rejectsWith(Sandbox.setTimeout(sbx.sandboxId, 10_000, server.novita()), SandboxNotFoundError)
  })

  test('static kill returns true for a running sandbox', async (t) => {
    const sbx = await create(t)
    assert.equal(await Sandbox.kill(sbx.sandboxId, server.novita()), true)
    await rejectsWith(Sandbox.getInfo(sbx.sandboxId, server.novita()), SandboxNotFoundError)
  })

  test('connect to a running sandbox', async (t) => {
    const sbx = await create(t)
    const again = await Sandbox.connect(sbx.sandboxId, server.novita())
    assert.equal(again.sandboxId, sbx.sandboxId)
    assert.equal((await again.commands.run('echo via-connect')).stdout, 'via-connect\n')
    await rejectsWith(Sandbox.connect('nosuchsandbox0000000', server.novita()), SandboxNotFoundError)
  })

  test('setTimeout moves endAt; a 2 s timeout expires and the sandbox is gone', async (t) => {
    const sbx = await create(t, { timeoutMs: 60_000 })
    await sbx.setTimeout(600_000)
    let info = await sbx.getInfo()
    let left = info.endAt.getTime() - Date.now()
    assert.ok(left > 590_000 && left < 610_000, `after setTimeout(600 s) ${left} ms are left`)

    await sbx.setTimeout(2_000)
    info = await sbx.getInfo()
    left = info.endAt.getTime() - Date.now()
    assert.ok(left > 0 && left <= 3_000, `after setTimeout(2 s) ${left} ms are left`)
    await new Promise((r) => setTimeout(r, 3_000))
    await rejectsWith(Sandbox.getInfo(sbx.sandboxId, server.novita()), SandboxNotFoundError)
    assert.equal(await Sandbox.kill(sbx.sandboxId, server.novita()), false)
  })

  test('a sandbox created with a 2 s timeout expires', async (t) => {
    const sbx = await create(t, { timeoutMs: 2_000 })
    assert.equal((await sbx.commands.run('echo alive')).stdout, 'alive\n')
    await new Promise((r) => setTimeout(r, 3_000))
    await rejectsWith(Sandbox.getInfo(sbx.sandboxId, server.novita()), SandboxNotFoundError)
  })
})

describe('list', () => {
  test('metadata and state filters, pagination with limit 1', async (t) => {
    const tag = randomBytes(4).toString('hex')
    const sbxs = []
    for (let i = 0; i < 3; i++) sbxs.push(await create(t, { metadata: { suite: tag, idx: String(i), 'odd key': 'v&=%/?' } }))
    const other = await create(t, { metadata: { suite: `${tag}-other` } })
    const ours = sbxs.map((s) => s.sandboxId).sort()

    const all = await Sandbox.list({ ...server.novita(), query: { metadata: { suite: tag } } }).nextItems()
    assert.deepEqual(all.map((s) => s.sandboxId).sort(), ours)
    for (const s of all) {
      assert.equal(s.state, 'running')
      assert.equal(s.templateId, 'base')
      assert.equal(s.metadata.suite, tag)
      assert.equal(s.metadata['odd key'], 'v&=%/?')
    }

    const one = await Sandbox.list({ ...server.novita(), query: { metadata: { suite: tag, idx: '1' } } }).nextItems()
    assert.deepEqual(one.map((s) => s.sandboxId), [sbxs[1].sandboxId])

    const odd = await Sandbox.list({ ...server.novita(), query: { metadata: { suite: tag, 'odd key': 'v&=%/?' } } }).nextItems()
    assert.equal(odd.length, 3, 'metadata with reserved URL characters filters correctly')

    const running = await Sandbox.list({ ...server.novita(), query: { metadata: { suite: tag }, state: ['running'] } }).nextItems()
    assert.equal(running.length, 3)
    const paused = await Sandbox.list({ ...server.novita(), query: { metadata: { suite: tag }, state: ['paused'] } }).nextItems()
    assert.deepEqual(paused, [])

    const unfiltered = await Sandbox.list(server.novita()).nextItems()
    const unfilteredIds = unfiltered.map((s) => s.sandboxId)
    for (const id of [...ours, other.sandboxId]) assert.ok(unfilteredIds.includes(id), `${id} missing from the unfiltered list`)

    // Pagination: limit 1 walks every page; no duplicates, no gaps.
    const pager = Sandbox.list({ ...server.novita(), query: { metadata: { suite: tag } }, limit: 1 })
    assert.equal(pager.hasNext, true)
    const seen = []
    let pages = 0
    while (pager.hasNext) {
      const items = await pager.nextItems()
      pages++
      assert.ok(items.length <= 1, `page ${pages} has ${items.length} items with limit 1`)
      seen.push(...items.map((s) => s.sandboxId))
      assert.ok(pages <= 10, 'pagination does not end')
    }
    assert.ok(pages >= 3, `only ${pages} pages for 3 sandboxes with limit 1`)
    assert.deepEqual([...seen].sort(), ours)
    await assert.rejects(pager.nextItems(), /No more items to fetch/)

    // A killed sandbox leaves the list.
    await sbxs[0].kill()
    const after = await Sandbox.list({ ...server.novita(), query: { metadata: { suite: tag } } }).nextItems()
    assert.deepEqual(after.map((s) => s.sandboxId).sort(), ours.filter((id) => id !== sbxs[0].sandboxId))
  })
})

describe('commands', () => {
  let sbx
  before(async () => {
    sbx = await Sandbox.create({ ...server.novita(), envs: { SANDBOX_WIDE: 'from-create', OVERRIDE_ME: 'create' } })
    server.sandboxIds.add(sbx.sandboxId)
  })
  after(async () => {
    if (sbx) await sbx.kill()
  })

  test('stdout, stderr and exit code 0', async () => {
    const r = await sbx.commands.run('echo out; echo err >&2')
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'out\n')
    assert.equal(r.stderr, 'err\n')
  })

  test('non-zero exit → CommandExitError with exitCode, stdout and stderr', async () => {
    const err = await rejectsWith(sbx.commands.run('echo partial; echo oops >&2; exit 3'), CommandExitError)
    assert.equal(err.name, 'CommandExitError')
    assert.equal(err.exitCode, 3)
    assert.equal(err.stdout, 'partial\n')
    assert.equal(err.stderr, 'oops\n')
    assert.match(err.message, /exit status 3/)
    const missing = await rejectsWith(sbx.commands.run('no-such-command-xyz'), CommandExitError)
    assert.equal(missing.exitCode, 127)
    assert.match(missing.stderr, /not found/)
  })

  test('envs: sandbox-wide, per command, per command overrides sandbox-wide', async () => {
    const r = await sbx.commands.run('echo "$SANDBOX_WIDE|$PER_CMD|$OVERRIDE_ME"', { envs: { PER_CMD: 'x y', OVERRIDE_ME: 'cmd' } })
    assert.equal(r.stdout, 'from-create|x y|cmd\n')
    const r2 = await sbx.commands.run('echo "$PER_CMD|$OVERRIDE_ME"')
    assert.equal(r2.stdout, '|create\n', 'per-command envs must not leak into later commands')
  })

  test('cwd, and the default cwd is the home directory', async () => {
    assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n')
    assert.equal((await sbx.commands.run('pwd')).stdout, '/home/user\n')
    await assert.rejects(sbx.commands.run('pwd', { cwd: '/no/such/dir' }))
  })

  test("default user is 'user' (uid 1000, home /home/user); user: 'root' is root", async () => {
    const u = await sbx.commands.run('whoami; id -u; echo "$HOME"')
    assert.equal(u.stdout, 'user\n1000\n/home/user\n')
    const r = await sbx.commands.run('whoami; id -u; echo "$HOME"', { user: 'root' })
    assert.equal(r.stdout, 'root\n0\n/root\n')
    // The user cannot do what only root can.
    const denied = await rejectsWith(sbx.commands.run('touch /etc/should-fail'), CommandExitError)
    assert.notEqual(denied.exitCode, 0)
    await sbx.commands.run('touch /etc/root-can && rm /etc/root-can', { user: 'root' })
  })

  test('onStdout and onStderr receive the output as it comes', async () => {
    const out = []
    const errs = []
    const stamps = []
    const r = await sbx.commands.run('for i in 1 2 3; do echo line$i; echo e$i >&2; sleep 0.2; done', {
      onStdout: (d) => {
        out.push(d)
        stamps.push(Date.now())
      },
      onStderr: (d) => errs.push(d),
    })
    assert.equal(out.join(''), 'line1\nline2\nline3\n')
    assert.equal(errs.join(''), 'e1\ne2\ne3\n')
    assert.equal(r.stdout, 'line1\nline2\nline3\n')
    assert.ok(out.length >= 2, 'output arrives in several chunks, not at the end')
    assert.ok(stamps.at(-1) - stamps[0] >= 250, 'chunks are streamed while the command runs')
  })

  test('background: wait() returns the result; kill() stops the process', async () => {
    const h = await sbx.commands.run('sleep 0.3; echo done; exit 4', { background: true })
    assert.ok(Number.isInteger(h.pid) && h.pid > 1, `pid ${h.pid}`)
    const err = await rejectsWith(h.wait(), CommandExitError)
    assert.equal(err.exitCode, 4)
    assert.equal(err.stdout, 'done\n')

    const ok = await sbx.commands.run('echo bg-ok', { background: true })
    assert.equal((await ok.wait()).stdout, 'bg-ok\n')

    const t0 = Date.now()
    const long = await sbx.commands.run('sleep 600', { background: true })
    const listed = await sbx.commands.list()
    assert.ok(listed.some((p) => p.pid === long.pid), `pid ${long.pid} missing from commands.list()`)
    assert.equal(await long.kill(), true)
    const killed = await rejectsWith(long.wait(), CommandExitError)
    assert.notEqual(killed.exitCode, 0)
    assert.match(killed.error ?? '', /kill/i)
    assert.ok(Date.now() - t0 < 10_000)
    const listedAfter = await sbx.commands.list()
    assert.ok(!listedAfter.some((p) => p.pid === long.pid), 'killed process is still listed')
    assert.equal(await sbx.commands.kill(long.pid), false)
  })

  test('stdin: true + sendStdin', async () => {
    const h = await sbx.commands.run('read a; read b; echo "got:$a:$b"', { background: true, stdin: true })
    await sbx.commands.sendStdin(h.pid, 'first\n')
    await sbx.commands.sendStdin(h.pid, new TextEncoder().encode('second line\n'))
    const r = await h.wait()
    assert.equal(r.stdout, 'got:first:second line\n')
  })

  test('10+ MB of output arrive intact and in order', async () => {
    const n = 1_500_000
    const r = await sbx.commands.run(`seq 1 ${n}`, { timeoutMs: 120_000 })
    let expected = ''
    for (let i = 1; i <= n; i++) expected += `${i}\n`
    assert.ok(expected.length > 10_000_000)
    assert.equal(r.stdout.length, expected.length)
    assert.ok(r.stdout === expected, 'stdout differs from `seq` output')

    // Binary-ish data through base64: compare hashes computed on both sides.
    const b = await sbx.commands.run('head -c 8000000 /dev/urandom > /tmp/rnd && base64 -w 0 /tmp/rnd && echo && sha256sum /tmp/rnd >&2', { timeoutMs: 120_000 })
    const bytes = Buffer.from(b.stdout.trim(), 'base64')
    assert.equal(bytes.length, 8_000_000)
    assert.equal(createHash('sha256').update(bytes).digest('hex'), b.stderr.split(' ')[0])
  })

  test('command timeoutMs → TimeoutError, and the process is killed', async () => {
    const t0 = Date.now()
    await rejectsWith(sbx.commands.run('sleep 30; echo never', { timeoutMs: 1_000 }), TimeoutError)
    const took = Date.now() - t0
    assert.ok(took >= 900 && took < 10_000, `timeout took ${took} ms`)
    await eventually(async () => {
      const ps = await sbx.commands.run('ps -eo args')
      assert.ok(!ps.stdout.includes('sleep 30'), `sleep 30 still runs:\n${ps.stdout}`)
    })
  })
})

describe('files', () => {
  let sbx
  before(async () => {
    sbx = await Sandbox.create(server.novita())
    server.sandboxIds.add(sbx.sandboxId)
  })
  after(async () => {
    if (sbx) await sbx.kill()
  })

  test('text round trip; owned by the default user; visible to commands', async () => {
    const text = 'héllo wörld ✓\nsecond line\n'
    const info = await sbx.files.write('/home/user/hello.txt', text)
    assert.equal(info.path, '/home/user/hello.txt')
    assert.equal(info.name, 'hello.txt')
    assert.equal(await sbx.files.read('/home/user/hello.txt'), text)
    assert.equal((await sbx.commands.run('cat /home/user/hello.txt')).stdout, text)
    assert.equal((await sbx.commands.run('stat -c %U /home/user/hello.txt')).stdout, 'user\n')
    // A file written by a command reads back through the files API.
    await sbx.commands.run('printf "from-cmd" > /tmp/from-cmd.txt')
    assert.equal(await sbx.files.read('/tmp/from-cmd.txt'), 'from-cmd')
    // Overwrite replaces the content.
    await sbx.files.write('/home/user/hello.txt', 'short')
    assert.equal(await sbx.files.read('/home/user/hello.txt'), 'short')
    // Writing creates missing parent directories.
    await sbx.files.write('/home/user/deep/er/file.txt', 'deep')
    assert.equal(await sbx.files.read('/home/user/deep/er/file.txt'), 'deep')
    // An empty file.
    await sbx.files.write('/home/user/empty.txt', '')
    assert.equal(await sbx.files.read('/home/user/empty.txt'), '')
  })

  test('binary round trip', async () => {
    const all = new Uint8Array(256).map((_, i) => i)
    const data = Buffer.concat([Buffer.from(all), randomBytes(3 * 1024 * 1024 + 7)])
    await sbx.files.write('/tmp/blob.bin', data.buffer.slice(data.byteOffset, data.byteOffset + data.length))
    const back = await sbx.files.read('/tmp/blob.bin', { format: 'bytes' })
    assert.ok(back instanceof Uint8Array)
    assert.equal(back.length, data.length)
    assert.ok(Buffer.from(back).equals(data), 'bytes differ after the round trip')
    const sum = (await sbx.commands.run('sha256sum /tmp/blob.bin')).stdout.split(' ')[0]
    assert.equal(sum, createHash('sha256').update(data).digest('hex'))
  })

  test('list, exists, makeDir twice, rename, remove', async () => {
    assert.equal(await sbx.files.makeDir('/home/user/dir'), true)
    assert.equal(await sbx.files.makeDir('/home/user/dir'), false)
    await sbx.files.write('/home/user/dir/a.txt', 'aaa')
    await sbx.files.write('/home/user/dir/b.txt', 'bbbbb')
    assert.equal(await sbx.files.makeDir('/home/user/dir/sub'), true)
    await sbx.files.write('/home/user/dir/sub/c.txt', 'c')

    const entries = await sbx.files.list('/home/user/dir')
    const byName = Object.fromEntries(entries.map((e) => [e.name, e]))
    assert.deepEqual(Object.keys(byName).sort(), ['a.txt', 'b.txt', 'sub'])
    assert.equal(byName['a.txt'].type, 'file')
    assert.equal(byName['a.txt'].path, '/home/user/dir/a.txt')
    assert.equal(Number(byName['b.txt'].size), 5)
    assert.equal(byName.sub.type, 'dir')

    const deep = await sbx.files.list('/home/user/dir', { depth: 2 })
    assert.ok(deep.some((e) => e.path === '/home/user/dir/sub/c.txt'), 'depth 2 lists sub/c.txt')

    assert.equal(await sbx.files.exists('/home/user/dir/a.txt'), true)
    assert.equal(await sbx.files.exists('/home/user/dir/nope.txt'), false)

    const moved = await sbx.files.rename('/home/user/dir/a.txt', '/home/user/dir/renamed.txt')
    assert.equal(moved.path, '/home/user/dir/renamed.txt')
    assert.equal(await sbx.files.exists('/home/user/dir/a.txt'), false)
    assert.equal(await sbx.files.read('/home/user/dir/renamed.txt'), 'aaa')

    await sbx.files.remove('/home/user/dir/renamed.txt')
    assert.equal(await sbx.files.exists('/home/user/dir/renamed.txt'), false)
    await sbx.files.remove('/home/user/dir')
    assert.equal(await sbx.files.exists('/home/user/dir'), false)
    assert.equal(await sbx.files.exists('/home/user/dir/sub/c.txt'), false)
  })

  test('reading a missing file → FileNotFoundError', async () => {
    const err = await rejectsWith(sbx.files.read('/home/user/does-not-exist.txt'), FileNotFoundError)
    assert.equal(err.name, 'FileNotFoundError')
    await rejectsWith(sbx.files.list('/no/such/dir'), FileNotFoundError)
  })

  test('files are written as the chosen user', async () => {
    await sbx.files.write('/tmp/by-user.txt', 'u')
    await sbx.files.write('/etc/by-root.txt', 'r', { user: 'root' })
    const r = await sbx.commands.run('stat -c %U /tmp/by-user.txt /etc/by-root.txt')
    assert.equal(r.stdout, 'user\nroot\n')
  })
})
