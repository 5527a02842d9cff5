// The core cases through E2B's published `e2b` SDK (it speaks the same API with its own
// spellings: E2b-Sandbox-Id, POST /v2/sandboxes, …).
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Sandbox, CommandExitError, FileNotFoundError, SandboxNotFoundError, TimeoutError } from 'e2b'
import { startServer, stopAndCheck, rejectsWith, eventually } from './helpers.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

async function create(t, opts = {}) {
  const sbx = await Sandbox.create({ ...server.e2b(), ...opts })
  server.sandboxIds.add(sbx.sandboxId)
  t.after(async () => {
    await Sandbox.kill(sbx.sandboxId, server.e2b())
  })
  return sbx
}

describe('e2b: lifecycle', () => {
  test('create with metadata, envs and timeout; getInfo; kill', async (t) => {
    const sbx = await create(t, { metadata: { via: 'e2b' }, envs: { E2B_VAR: 'v1' }, timeoutMs: 90_000 })
    assert.match(sbx.sandboxId, /^[a-z0-9]{20}$/)
    const info = await Sandbox.getInfo(sbx.sandboxId, server.e2b())
    assert.equal(info.sandboxId, sbx.sandboxId)
    assert.equal(info.state, 'running')
    assert.deepEqual(info.metadata, { via: 'e2b' })
    const ttl = info.endAt.getTime() - info.startedAt.getTime()
    assert.ok(ttl > 85_000 && ttl < 95_000, `endAt - startedAt = ${ttl} ms`)
    assert.equal((await sbx.commands.run('echo $E2B_VAR')).stdout, 'v1\n')
    assert.equal(await sbx.isRunning(), true)

    assert.equal(await sbx.kill(), true)
    await rejectsWith(Sandbox.getInfo(sbx.sandboxId, server.e2b()), SandboxNotFoundError)
    assert.equal(await Sandbox.kill(sbx.sandboxId, server.e2b()), false)
    assert.equal(await Sandbox.kill('nosuchsandbox0000000', server.e2b()), false)
  })

  test('a sandbox made by e2b (POST /v2/sandboxes, no `secure` flag) has a token; its ID alone opens nothing', async (t) => {
    const sbx = await create(t)
    assert.match(sbx.envdAccessToken, /^[0-9a-f]{32}$/, 'the create answer carried a token')
    const bare = { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49983' }
    const read = await fetch(`${server.url}/files?path=/etc/hostname`, { headers: bare })
    assert.equal(read.status, 401)
    assert.equal((await read.json()).code, 401)
    const start = await fetch(`${server.url}/process.Process/Start`, {
      method: 'POST',
      headers: { ...bare, 'content-type': 'application/connect+json', 'connect-protocol-version': '1' },
      body: Buffer.concat([Buffer.from([0, 0, 0, 0, 32]), Buffer.from('{"process":{"cmd":"/bin/true"} }')]),
    })
    assert.equal(start.status, 401)
    // The SDK got the token with the sandbox and sends it: everything works through it.
    await sbx.files.write('/tmp/t.txt', 'ok')
    assert.equal((await sbx.commands.run('cat /tmp/t.txt')).stdout, 'ok')
    const url = await sbx.downloadUrl('/tmp/t.txt')
    assert.equal(await (await fetch(url)).text(), 'ok')
  })

  test('connect to a running sandbox', async (t) => {
    const sbx = await create(t)
    const again = await Sandbox.connect(sbx.sandboxId, server.e2b())
    assert.equal((await again.commands.run('hostname')).stdout.trim(), sbx.sandboxId)
  })

  test('setTimeout and expiry', async (t) => {
    const sbx = await create(t)
    await sbx.setTimeout(2_000)
    const info = await sbx.getInfo()
    assert.ok(info.endAt.getTime() - Date.now() <= 3_000)
    await new Promise((r) => setTimeout(r, 3_000))
    await rejectsWith(Sandbox.getInfo(sbx.sandboxId, server.e2b()), SandboxNotFoundError)
  })

  test('list with a metadata filter and limit 1', async (t) => {
    const tag = randomBytes(4).toString('hex')
    const a = await create(t, { metadata: { tag } })
    const b = await create(t, { metadata: { tag } })
    await create(t, { metadata: { tag: `${tag}x` } })
    const pager = Sandbox.list({ ...server.e2b(), query: { metadata: { tag } }, limit: 1 })
    const seen = []
    while (pager.hasNext) {
      const items = await pager.nextItems()
      assert.ok(items.length <= 1)
      seen.push(...items.map((s) => s.sandboxId))
      assert.ok(seen.length <= 5, 'pagination does not end')
    }
    assert.deepEqual(seen.sort(), [a.sandboxId, b.sandboxId].sort())
  })
})

describe('e2b: commands and files', () => {
  let sbx
  before(async () => {
    sbx = await Sandbox.create(server.e2b())
    server.sandboxIds.add(sbx.sandboxId)
  })
  after(async () => {
    if (sbx) assert.equal(await sbx.kill(), true)
  })

  test('stdout, stderr, exit codes, CommandExitError', async () => {
    const r = await sbx.commands.run('echo out; echo err >&2')
    assert.deepEqual([r.exitCode, r.stdout, r.stderr], [0, 'out\n', 'err\n'])
    const err = await rejectsWith(sbx.commands.run('echo o; echo e >&2; exit 7'), CommandExitError)
    assert.deepEqual([err.exitCode, err.stdout, err.stderr], [7, 'o\n', 'e\n'])
  })

  test('envs, cwd, user', async () => {
    assert.equal((await sbx.commands.run('echo $X', { envs: { X: 'per-cmd' } })).stdout, 'per-cmd\n')
    assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n')
    assert.equal((await sbx.commands.run('whoami; pwd')).stdout, 'user\n/home/user\n')
    assert.equal((await sbx.commands.run('whoami; id -u', { user: 'root' })).stdout, 'root\n0\n')
  })

  test('onStdout, background wait and kill, stdin', async () => {
    const chunks = []
    await sbx.commands.run('echo a; sleep 0.1; echo b', { onStdout: (d) => chunks.push(d) })
    assert.equal(chunks.join(''), 'a\nb\n')

    const h = await sbx.commands.run('sleep 600', { background: true })
    assert.equal(await h.kill(), true)
    await rejectsWith(h.wait(), CommandExitError)

    const s = await sbx.commands.run('read line; echo "[$line]"', { background: true, stdin: true })
    await sbx.commands.sendStdin(s.pid, 'via e2b\n')
    assert.equal((await s.wait()).stdout, '[via e2b]\n')
  })

  test('command timeout → TimeoutError', async () => {
    await rejectsWith(sbx.commands.run('sleep 30', { timeoutMs: 1_000 }), TimeoutError)
  })

  test('files: text and binary round trip, list, exists, makeDir, rename, remove, missing', async () => {
    await sbx.files.write('/home/user/e2b.txt', 'e2b text ✓')
    assert.equal(await sbx.files.read('/home/user/e2b.txt'), 'e2b text ✓')

    const data = randomBytes(1024 * 1024 + 3)
    await sbx.files.write('/tmp/e2b.bin', data.buffer.slice(data.byteOffset, data.byteOffset + data.length))
    const back = await sbx.files.read('/tmp/e2b.bin', { format: 'bytes' })
    assert.ok(Buffer.from(back).equals(data))
    assert.equal((await sbx.commands.run('sha256sum /tmp/e2b.bin')).stdout.split(' ')[0], createHash('sha256').update(data).digest('hex'))

    assert.equal(await sbx.files.makeDir('/home/user/d'), true)
    assert.equal(await sbx.files.makeDir('/home/user/d'), false)
    // An empty directory has a size, as on the cloud's ext4 (a block), also on the btrfs store.
    assert.ok((await sbx.files.getInfo('/home/user/d')).size >= 4096, 'the size of an empty directory')
    await sbx.files.write('/home/user/d/x.txt', 'x')
    assert.deepEqual((await sbx.files.list('/home/user/d')).map((e) => e.name), ['x.txt'])
    assert.equal(await sbx.files.exists('/home/user/d/x.txt'), true)
    await sbx.files.rename('/home/user/d/x.txt', '/home/user/d/y.txt')
    assert.equal(await sbx.files.exists('/home/user/d/x.txt'), false)
    assert.equal(await sbx.files.read('/home/user/d/y.txt'), 'x')
    await sbx.files.remove('/home/user/d')
    assert.equal(await sbx.files.exists('/home/user/d'), false)
    await rejectsWith(sbx.files.read('/home/user/missing.txt'), FileNotFoundError)
  })

  test('relative paths and `~` are in the user\'s home, as envd has them; reported paths are absolute', async () => {
    const info = await sbx.files.write('rel/notes.txt', 'relative')
    assert.equal(info.path, '/home/user/rel/notes.txt')
    assert.equal(await sbx.files.read('/home/user/rel/notes.txt'), 'relative')
    assert.equal(await sbx.files.read('~/rel/notes.txt'), 'relative')
    assert.equal((await sbx.files.getInfo('rel')).path, '/home/user/rel')
    assert.deepEqual((await sbx.files.list('rel')).map((e) => e.path), ['/home/user/rel/notes.txt'])
    assert.equal(await sbx.files.exists('rel/notes.txt'), true)
    assert.equal(await sbx.files.makeDir('rel/sub'), true)
    assert.equal((await sbx.files.rename('rel/notes.txt', 'rel/sub/moved.txt')).path, '/home/user/rel/sub/moved.txt')
    assert.equal((await sbx.commands.run('pwd; cat moved.txt', { cwd: 'rel/sub' })).stdout, '/home/user/rel/sub\nrelative')
    // root's home is /root.
    await sbx.files.write('as-root.txt', 'r', { user: 'root' })
    assert.equal((await sbx.commands.run('cat /root/as-root.txt', { user: 'root' })).stdout, 'r')
    // A directory's mode is its permission bits only (no Go `ModeDir` bit).
    assert.equal((await sbx.files.getInfo('rel')).mode, 0o755)
    // Removing what is gone succeeds, as envd's `os.RemoveAll` does.
    await sbx.files.remove('rel')
    await sbx.files.remove('rel')
    assert.equal(await sbx.files.exists('rel'), false)
  })
})

describe('e2b: pause and resume', () => {
  test('pause (false when already paused), list paused, connect resumes with files and processes', async (t) => {
    const sbx = await create(t)
    await sbx.files.write('/home/user/e2b-paused.txt', 'kept')
    const bg = await sbx.commands.run('sleep 600', { background: true })
    assert.equal(await sbx.pause(), true)
    assert.equal(await Sandbox.pause(sbx.sandboxId, server.e2b()), false)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, server.e2b())).state, 'paused')
    const paused = await Sandbox.list({ ...server.e2b(), query: { state: ['paused'] } }).nextItems()
    assert.deepEqual(paused.map((s) => s.sandboxId), [sbx.sandboxId])

    const back = await Sandbox.connect(sbx.sandboxId, server.e2b())
    assert.equal((await back.getInfo()).state, 'running')
    assert.equal(await back.files.read('/home/user/e2b-paused.txt'), 'kept')
    assert.equal((await back.commands.run(`kill -0 ${bg.pid} && echo alive`)).stdout, 'alive\n')
    await rejectsWith(Sandbox.pause('abcdefghij0123456789', server.e2b()), SandboxNotFoundError)
  })

  const bootId = async (sbx) => (await sbx.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout.trim()
  // By name, not `kill -0`: a new boot numbers its processes from 1 again, so the old pid may now be
  // the very shell that asks.
  const sleeping = async (sbx, pid) =>
    (await sbx.commands.run(`[ "$(cat /proc/${pid}/comm 2>/dev/null)" = sleep ] && echo alive || echo gone`)).stdout

  test('pause({ keepMemory: false }) keeps the files only: connect starts it again, with a new boot id', async (t) => {
    const sbx = await create(t)
    await sbx.files.write('/home/user/fs-only.txt', 'kept')
    const bg = await sbx.commands.run('sleep 600', { background: true })
    // (once bash has exec'd sleep)
    await eventually(async () => assert.equal(await sleeping(sbx, bg.pid), 'alive\n'))
    const before = await bootId(sbx)
    assert.match(before, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    assert.notEqual(before, readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(), 'not the host kernel\'s')
    assert.equal(await sbx.pause({ keepMemory: false }), true)
    assert.equal(await sbx.isRunning(), false)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, server.e2b())).state, 'paused')
    const back = await sbx.connect()
    assert.equal(await back.isRunning(), true)
    assert.equal(await back.files.read('/home/user/fs-only.txt'), 'kept')
    assert.notEqual(await bootId(back), before, 'a new boot')
    assert.equal(await sleeping(back, bg.pid), 'gone\n')
  })

  test('connect with onResume "reboot" starts a memory-paused sandbox again on its files', async (t) => {
    const sbx = await create(t)
    await sbx.files.write('/home/user/r.txt', 'kept')
    const bg = await sbx.commands.run('sleep 600', { background: true })
    // (once bash has exec'd sleep)
    await eventually(async () => assert.equal(await sleeping(sbx, bg.pid), 'alive\n'))
    const before = await bootId(sbx)
    assert.equal(await sbx.pause(), true)
    const back = await Sandbox.connect(sbx.sandboxId, { ...server.e2b(), onResume: 'reboot' })
    assert.equal(await back.files.read('/home/user/r.txt'), 'kept')
    assert.notEqual(await bootId(back), before)
    assert.equal(await sleeping(back, bg.pid), 'gone\n')
  })

  test('lifecycle onTimeout { action: "pause", keepMemory: false }: the timeout pauses it files-only', async (t) => {
    const sbx = await create(t, { timeoutMs: 2_000, lifecycle: { onTimeout: { action: 'pause', keepMemory: false } } })
    await sbx.files.write('/home/user/auto.txt', 'kept')
    const before = await bootId(sbx)
    const until = Date.now() + 15_000
    while ((await Sandbox.getInfo(sbx.sandboxId, server.e2b())).state !== 'paused') {
      assert.ok(Date.now() < until, 'not paused within 15 s')
      await new Promise((r) => setTimeout(r, 200))
    }
    const back = await Sandbox.connect(sbx.sandboxId, { ...server.e2b(), timeoutMs: 60_000 })
    assert.equal(await back.files.read('/home/user/auto.txt'), 'kept')
    assert.notEqual(await bootId(back), before)
    // Files-only with auto-resume is refused by the server too (the SDK checks it first).
    const res = await fetch(`${server.url}/v2/sandboxes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': server.apiKey },
      body: JSON.stringify({ templateID: 'base', autoPause: true, autoPauseMemory: false, autoResume: { enabled: true } }),
    })
    assert.equal(res.status, 400)
    assert.match((await res.json()).message, /autoResume/)
  })
})

// envd 0.6.2–0.6.4 features, which the SDK gates on the advertised envd version: file metadata
// (user.e2b.* xattrs on the sandbox's overlayfs, through its user namespace) and watch events
// carrying their entry. (An import may stand anywhere at the top level; this one is hoisted.)
import { FileType, FilesystemEventType } from 'e2b'

describe('e2b: file metadata and watch entries (envd 0.6.x)', () => {
  let sbx
  before(async () => {
    sbx = await Sandbox.create(server.e2b())
    server.sandboxIds.add(sbx.sandboxId)
  })
  after(async () => {
    if (sbx) assert.equal(await sbx.kill(), true)
  })

  test('the server advertises envd 0.6.4', async () => {
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, server.e2b())).envdVersion, '0.6.4')
  })

  test('files.write(path, data, { metadata }) is kept and reported by write, getInfo, list and rename', async () => {
    const metadata = { author: 'me', purpose: 'upload test' }
    const info = await sbx.files.write('meta/a.txt', 'with metadata', { metadata })
    assert.deepEqual(info.metadata, metadata)
    assert.deepEqual((await sbx.files.getInfo('meta/a.txt')).metadata, metadata)
    assert.deepEqual((await sbx.files.list('meta')).find((e) => e.name === 'a.txt').metadata, metadata)
    // The xattrs themselves, as a process in the sandbox sees them.
    const py = `import os; print(sorted((n, os.getxattr('/home/user/meta/a.txt', n).decode()) for n in os.listxattr('/home/user/meta/a.txt')))`
    assert.equal((await sbx.commands.run(`python3 -c "${py}"`)).stdout, "[('user.e2b.author', 'me'), ('user.e2b.purpose', 'upload test')]\n")

    // Octet-stream uploads and several files at once.
    const octet = await sbx.files.write('meta/b.txt', 'raw', { metadata: { k: 'v' }, useOctetStream: true })
    assert.deepEqual(octet.metadata, { k: 'v' })
    const many = await sbx.files.writeFiles([{ path: 'meta/c.txt', data: 'c' }, { path: 'meta/d.txt', data: 'd' }], { metadata: { batch: '1' } })
    assert.deepEqual(many.map((i) => i.metadata), [{ batch: '1' }, { batch: '1' }])
    assert.deepEqual((await sbx.files.rename('meta/d.txt', 'meta/e.txt')).metadata, { batch: '1' })

    // Overwriting without metadata clears it.
    const plain = await sbx.files.write('meta/a.txt', 'no metadata now')
    assert.equal(plain.metadata, undefined)
    assert.equal((await sbx.files.getInfo('meta/a.txt')).metadata, undefined)
  })

  test('metadata set inside the sandbox as user.e2b.* xattrs is reported', async () => {
    await sbx.files.write('meta/x.txt', 'x')
    await sbx.commands.run(`python3 -c "import os; os.setxattr('/home/user/meta/x.txt', 'user.e2b.by', b'hand'); os.setxattr('/home/user/meta/x.txt', 'user.other', b'no')"`)
    assert.deepEqual((await sbx.files.getInfo('meta/x.txt')).metadata, { by: 'hand' })
  })

  test('watchDir(..., { includeEntry: true }) gives each write event its entry; allowNetworkMounts is taken', async () => {
    await sbx.files.makeDir('watched')
    await sbx.files.write('watched/f.txt', 'one')
    const events = []
    let seen
    const written = new Promise((resolve) => (seen = resolve))
    const handle = await sbx.files.watchDir(
      'watched',
      (e) => {
        events.push(e)
        if (e.type === FilesystemEventType.WRITE && e.name === 'f.txt') seen(e)
      },
      { includeEntry: true, allowNetworkMounts: true },
    )
    try {
      await sbx.files.write('watched/f.txt', 'two, longer')
      const e = await written
      assert.equal(e.entry?.name, 'f.txt')
      assert.equal(e.entry?.path, '/home/user/watched/f.txt')
      assert.equal(e.entry?.type, FileType.FILE)
      assert.equal(e.entry?.owner, 'user')
      await sbx.files.remove('watched/f.txt')
      await waitFor(() => events.some((x) => x.type === FilesystemEventType.REMOVE))
      assert.equal(events.find((x) => x.type === FilesystemEventType.REMOVE).entry, undefined, 'a removed entry has none')
    } finally {
      await handle.stop()
    }
    // Without it, no entry.
    const plainEvents = []
    const plain = await sbx.files.watchDir('watched', (e) => plainEvents.push(e))
    try {
      await sbx.files.write('watched/g.txt', 'g')
      await waitFor(() => plainEvents.some((x) => x.name === 'g.txt' && x.type === FilesystemEventType.WRITE))
      assert.ok(plainEvents.every((x) => x.entry === undefined))
    } finally {
      await plain.stop()
    }
  })
})

async function waitFor(cond, ms = 10_000) {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for a watch event')
    await new Promise((r) => setTimeout(r, 20))
  }
}
