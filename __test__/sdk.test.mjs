// One suite, run twice against the same `sandbank serve`: through the published `novita-sandbox`
// and through `sandbank`. Same calls, same expected results, same error classes (by name) and
// messages; a last test runs one scripted session through both and compares the outcomes.
// Every sandbox and snapshot a test creates is killed / deleted by it.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { runInNewContext } from 'node:vm'
import * as novita from 'novita-sandbox'
import * as sandbank from 'sandbank'
import { startServer, stopAndCheck, eventually } from './helpers.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

/** Asserts `promise` rejects with the SDK's class `name` (instanceof that SDK's class). */
async function rejectsAs(sdk, promise, name, message) {
  let err
  try {
    await promise
  } catch (e) {
    err = e
  }
  assert.ok(err, `expected a ${name}, but the call succeeded`)
  assert.ok(err instanceof sdk[name], `expected a ${name}, got ${err?.name}: ${err?.message}`)
  assert.equal(err.name, name)
  if (message instanceof RegExp) assert.match(err.message, message)
  else if (message !== undefined) assert.equal(err.message, message)
  return err
}

const SDKS = { 'novita-sandbox': novita, sandbank }

for (const [sdkName, sdk] of Object.entries(SDKS)) {
  const { Sandbox } = sdk
  describe(`through ${sdkName}`, () => {
    const opts = (extra = {}) => server.novita(extra)
    async function create(t, extra = {}, template) {
      const sbx = template ? await Sandbox.create(template, opts(extra)) : await Sandbox.create(opts(extra))
      server.sandboxIds.add(sbx.sandboxId)
      t.after(() => Sandbox.kill(sbx.sandboxId, opts()))
      return sbx
    }

    test('create, getInfo, getHost, isRunning, kill semantics', async (t) => {
      const sbx = await create(t, { metadata: { owner: 'sdk-test', 'a b': 'c&d' }, envs: { GREETING: 'hi there' }, timeoutMs: 120_000 })
      assert.match(sbx.sandboxId, /^[a-z0-9]{20}$/)
      // The server reports localhost:<its port>: the name form is `8080-<id>.localhost:<port>`;
      // sandbank's own getHost publishes the port on loopback (README "Sandbox ports").
      assert.equal(sbx.sandboxDomain, `localhost:${new URL(server.url).port}`)
      if (sdkName === 'sandbank') assert.match(sbx.getHost(8080), /^127\.0\.0\.1:\d+$/)
      else assert.equal(sbx.getHost(8080), `8080-${sbx.sandboxId}.${sbx.sandboxDomain}`)
      const info = await sbx.getInfo()
      assert.equal(info.sandboxId, sbx.sandboxId)
      assert.equal(info.templateId, 'base')
      assert.equal(info.state, 'running')
      assert.deepEqual(info.metadata, { owner: 'sdk-test', 'a b': 'c&d' })
      assert.ok(info.startedAt instanceof Date && info.endAt instanceof Date)
      const ttl = info.endAt - info.startedAt
      assert.ok(ttl > 115_000 && ttl < 125_000, `ttl ${ttl}`)
      assert.deepEqual(await Sandbox.getInfo(sbx.sandboxId, opts()), info)
      assert.equal((await sbx.commands.run('echo "$GREETING"')).stdout, 'hi there\n')
      assert.equal(await sbx.isRunning(), true)
      assert.equal(await sbx.kill(), undefined, 'instance kill resolves to nothing')
      await rejectsAs(sdk, Sandbox.getInfo(sbx.sandboxId, opts()), 'SandboxNotFoundError', `Sandbox ${sbx.sandboxId} not found`)
      assert.equal(await Sandbox.kill(sbx.sandboxId, opts()), false)
      await rejectsAs(sdk, Sandbox.setTimeout(sbx.sandboxId, 10_000, opts()), 'SandboxNotFoundError', `Sandbox ${sbx.sandboxId} not found`)
      await rejectsAs(sdk, Sandbox.connect('nosuchsandbox0000000', opts()), 'SandboxNotFoundError', 'Paused sandbox nosuchsandbox0000000 not found')
    })

    test("an instance call's connection options go over the sandbox's, for that call only", async (t) => {
      const sbx = await create(t)
      const wrong = { apiKey: 'sk_wrong' }
      await rejectsAs(sdk, sbx.getInfo(wrong), 'AuthenticationError')
      await rejectsAs(sdk, sbx.setTimeout(60_000, wrong), 'AuthenticationError')
      await rejectsAs(sdk, sbx.pause(wrong), 'AuthenticationError')
      await rejectsAs(sdk, sbx.createSnapshot(wrong), 'AuthenticationError')
      await rejectsAs(sdk, sbx.listSnapshots(wrong).nextItems(), 'AuthenticationError')
      await rejectsAs(sdk, sbx.kill(wrong), 'AuthenticationError')
      // Options that name no server keep the sandbox's key and URLs.
      const timeout = { requestTimeoutMs: 10_000 }
      assert.equal((await sbx.getInfo(timeout)).state, 'running')
      await sbx.setTimeout(60_000, timeout)
      assert.deepEqual(await sbx.listSnapshots({ ...timeout, limit: 1 }).nextItems(), [])
      await sbx.kill(timeout)
      assert.equal(await Sandbox.kill(sbx.sandboxId, opts()), false)
    })

    test('static kill → true; connect; setTimeout moves endAt', async (t) => {
      const sbx = await create(t, { timeoutMs: 60_000 })
      const again = await Sandbox.connect(sbx.sandboxId, opts())
      assert.equal(again.sandboxId, sbx.sandboxId)
      assert.equal(await again.connect(), again)
      assert.equal((await again.commands.run('echo via-connect')).stdout, 'via-connect\n')
      await sbx.setTimeout(600_000)
      const left = (await sbx.getInfo()).endAt - Date.now()
      assert.ok(left > 590_000 && left < 610_000, `left ${left}`)
      await Sandbox.setTimeout(sbx.sandboxId, 100_000, opts())
      const left2 = (await Sandbox.getInfo(sbx.sandboxId, opts())).endAt - Date.now()
      assert.ok(left2 > 90_000 && left2 < 110_000, `left ${left2}`)
      assert.equal(await Sandbox.kill(sbx.sandboxId, opts()), true)
    })

    test('list: metadata and state filters, pages of 1, past-the-end error', async (t) => {
      const tag = randomBytes(4).toString('hex')
      const ids = []
      for (let i = 0; i < 3; i++) ids.push((await create(t, { metadata: { suite: tag, idx: String(i) } })).sandboxId)
      ids.sort()
      const all = await Sandbox.list({ ...opts(), query: { metadata: { suite: tag } } }).nextItems()
      assert.deepEqual(all.map((s) => s.sandboxId).sort(), ids)
      for (const s of all) {
        assert.equal(s.state, 'running')
        assert.ok(s.startedAt instanceof Date)
      }
      assert.deepEqual(await Sandbox.list({ ...opts(), query: { metadata: { suite: tag }, state: ['paused'] } }).nextItems(), [])
      const pager = Sandbox.list({ ...opts(), query: { metadata: { suite: tag } }, limit: 1 })
      assert.equal(pager.hasNext, true)
      assert.equal(pager.nextToken, undefined)
      const seen = []
      while (pager.hasNext) {
        const items = await pager.nextItems()
        assert.ok(items.length <= 1)
        seen.push(...items.map((s) => s.sandboxId))
        if (pager.hasNext) assert.equal(typeof pager.nextToken, 'string')
      }
      assert.deepEqual(seen.sort(), ids)
      assert.equal(pager.nextToken, undefined)
      await assert.rejects(pager.nextItems(), (e) => e.constructor === Error && e.message === 'No more items to fetch')
    })

    describe('commands', () => {
      let sbx
      before(async () => {
        sbx = await Sandbox.create({ ...opts(), envs: { SANDBOX_WIDE: 'from-create', OVERRIDE_ME: 'create' } })
        server.sandboxIds.add(sbx.sandboxId)
      })
      after(async () => {
        if (sbx) await sbx.kill()
      })

      test('result, CommandExitError, envs, cwd, user', async () => {
        assert.deepEqual(await sbx.commands.run('echo out; echo err >&2'), { exitCode: 0, error: undefined, stdout: 'out\n', stderr: 'err\n' })
        const err = await rejectsAs(sdk, sbx.commands.run('echo partial; echo oops >&2; exit 3'), 'CommandExitError', 'exit status 3')
        assert.ok(err instanceof sdk.SandboxError)
        assert.deepEqual([err.exitCode, err.stdout, err.stderr, err.error], [3, 'partial\n', 'oops\n', 'exit status 3'])
        const r = await sbx.commands.run('echo "$SANDBOX_WIDE|$PER_CMD|$OVERRIDE_ME"', { envs: { PER_CMD: 'x y', OVERRIDE_ME: 'cmd' } })
        assert.equal(r.stdout, 'from-create|x y|cmd\n')
        assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n')
        assert.equal((await sbx.commands.run('pwd')).stdout, '/home/user\n')
        assert.equal((await sbx.commands.run('whoami')).stdout, 'user\n')
        assert.equal((await sbx.commands.run('whoami', { user: 'root' })).stdout, 'root\n')
      })

      test('onStdout / onStderr stream while the command runs', async () => {
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
        assert.ok(stamps.at(-1) - stamps[0] >= 250, 'chunks arrive while the command runs')
      })

      test('background handle: pid, wait, kill, list, stdin, connect, disconnect', async () => {
        const h = await sbx.commands.run('sleep 0.3; echo done; exit 4', { background: true })
        if (sdk.CommandHandle) assert.ok(h instanceof sdk.CommandHandle)
        assert.ok(Number.isInteger(h.pid) && h.pid > 1)
        assert.equal(h.exitCode, undefined)
        const err = await rejectsAs(sdk, h.wait(), 'CommandExitError', 'exit status 4')
        assert.equal(err.stdout, 'done\n')
        assert.equal(h.exitCode, 4)
        assert.equal(h.stdout, 'done\n')

        const long = await sbx.commands.run('sleep 600', { background: true })
        const listed = await sbx.commands.list()
        const p = listed.find((x) => x.pid === long.pid)
        assert.ok(p, 'listed')
        assert.equal(p.cmd, '/bin/bash')
        assert.deepEqual(p.args, ['-l', '-c', 'sleep 600'])
        const connected = await sbx.commands.connect(long.pid)
        assert.equal(connected.pid, long.pid)
        await connected.disconnect()
        assert.equal(await long.kill(), true)
        const killed = await rejectsAs(sdk, long.wait(), 'CommandExitError')
        assert.match(killed.error ?? '', /kill/)
        assert.equal(await sbx.commands.kill(long.pid), false)

        const s = await sbx.commands.run('read a; read b; echo "got:$a:$b"', { background: true, stdin: true })
        await sbx.commands.sendStdin(s.pid, 'first\n')
        await sbx.commands.sendStdin(s.pid, new TextEncoder().encode('second line\n'))
        assert.equal((await s.wait()).stdout, 'got:first:second line\n')
      })

      test('command timeoutMs → TimeoutError', async () => {
        const e = await rejectsAs(sdk, sbx.commands.run('sleep 30', { timeoutMs: 1_000 }), 'TimeoutError')
        assert.ok(e instanceof sdk.SandboxError)
        await eventually(async () => assert.ok(!(await sbx.commands.run('ps -eo args')).stdout.includes('sleep 30')))
      })

      test('8 MB of output arrive intact', async () => {
        const r = await sbx.commands.run('seq 1 1000000', { timeoutMs: 120_000 })
        let expected = ''
        for (let i = 1; i <= 1_000_000; i++) expected += `${i}\n`
        assert.equal(r.stdout.length, expected.length)
        assert.ok(r.stdout === expected)
      })
    })

    describe('files', () => {
      let sbx
      before(async () => {
        sbx = await Sandbox.create(opts())
        server.sandboxIds.add(sbx.sandboxId)
      })
      after(async () => {
        if (sbx) await sbx.kill()
      })

      test('read formats, write forms', async () => {
        const text = 'héllo wörld ✓\n'
        assert.deepEqual(await sbx.files.write('/home/user/hello.txt', text), { name: 'hello.txt', type: 'file', path: '/home/user/hello.txt' })
        assert.equal(await sbx.files.read('/home/user/hello.txt'), text)
        const bytes = await sbx.files.read('/home/user/hello.txt', { format: 'bytes' })
        assert.ok(bytes instanceof Uint8Array)
        assert.equal(Buffer.from(bytes).toString(), text)
        const blob = await sbx.files.read('/home/user/hello.txt', { format: 'blob' })
        assert.ok(blob instanceof Blob)
        assert.equal(await blob.text(), text)
        const stream = await sbx.files.read('/home/user/hello.txt', { format: 'stream' })
        const parts = []
        for await (const c of stream) parts.push(Buffer.from(c))
        assert.equal(Buffer.concat(parts).toString(), text)
        assert.equal(await sbx.files.read('/home/user/hello.txt', { format: 'text', user: 'root' }), text)

        const data = randomBytes(2 * 1024 * 1024 + 3)
        await sbx.files.write('/tmp/blob.bin', data.buffer.slice(data.byteOffset, data.byteOffset + data.length))
        const sum = (await sbx.commands.run('sha256sum /tmp/blob.bin')).stdout.split(' ')[0]
        assert.equal(sum, createHash('sha256').update(data).digest('hex'))
        await sbx.files.write('/tmp/b.txt', new Blob(['from a blob']))
        assert.equal(await sbx.files.read('/tmp/b.txt'), 'from a blob')
        await sbx.files.write('/tmp/s.txt', new Blob(['from ', 'a stream']).stream())
        assert.equal(await sbx.files.read('/tmp/s.txt'), 'from a stream')
        const many = await sbx.files.write([
          { path: '/tmp/m1.txt', data: 'one' },
          { path: '/tmp/m2.txt', data: new TextEncoder().encode('two').buffer },
        ])
        assert.deepEqual(many.map((w) => w.path), ['/tmp/m1.txt', '/tmp/m2.txt'])
        assert.deepEqual(await sbx.files.write([]), [])
        assert.equal((await sbx.commands.run('cat /tmp/m1.txt /tmp/m2.txt')).stdout, 'onetwo')
        await sbx.files.write('/home/user/empty.txt', '')
        assert.equal(await sbx.files.read('/home/user/empty.txt'), '')
        await assert.rejects(sbx.files.write('/x', ['a']), /Cannot specify both path and array of files/)
      })

      test('list, exists, makeDir, rename, remove, getInfo, errors', async () => {
        assert.equal(await sbx.files.makeDir('/home/user/dir'), true)
        assert.equal(await sbx.files.makeDir('/home/user/dir'), false)
        await sbx.files.write('/home/user/dir/a.txt', 'aaa')
        await sbx.files.write('/home/user/dir/sub/c.txt', 'c')
        const entries = await sbx.files.list('/home/user/dir')
        const byName = Object.fromEntries(entries.map((e) => [e.name, e]))
        assert.deepEqual(Object.keys(byName).sort(), ['a.txt', 'sub'])
        assert.equal(byName['a.txt'].type, 'file')
        assert.equal(byName['a.txt'].size, 3)
        assert.equal(byName['a.txt'].owner, 'user')
        assert.ok(byName['a.txt'].modifiedTime instanceof Date)
        assert.equal(byName.sub.type, 'dir')
        assert.ok((await sbx.files.list('/home/user/dir', { depth: 2 })).some((e) => e.path === '/home/user/dir/sub/c.txt'))
        const info = await sbx.files.getInfo('/home/user/dir/a.txt')
        assert.deepEqual(info, byName['a.txt'])
        assert.equal(await sbx.files.exists('/home/user/dir/a.txt'), true)
        assert.equal(await sbx.files.exists('/home/user/dir/nope'), false)
        const moved = await sbx.files.rename('/home/user/dir/a.txt', '/home/user/dir/b.txt')
        assert.equal(moved.path, '/home/user/dir/b.txt')
        await sbx.files.remove('/home/user/dir')
        assert.equal(await sbx.files.exists('/home/user/dir'), false)
        await rejectsAs(sdk, sbx.files.read('/home/user/missing.txt'), 'FileNotFoundError')
        await rejectsAs(sdk, sbx.files.list('/no/such/dir'), 'FileNotFoundError')
        await rejectsAs(sdk, sbx.files.list('/tmp', { depth: 0 }), 'InvalidArgumentError', 'depth should be at least one')
      })
    })

    test('snapshots: create, start from it, list (static and instance), delete', async (t) => {
      const sbx = await create(t)
      await sbx.files.write('/home/user/state.txt', `${sdkName}\n`)
      const snap = await sbx.createSnapshot()
      assert.match(snap.snapshotId, /^[a-z0-9]+:default$/)
      t.after(() => Sandbox.deleteSnapshot(snap.snapshotId, opts()))
      const copy = await create(t, {}, snap.snapshotId)
      assert.equal((await copy.commands.run('cat /home/user/state.txt')).stdout, `${sdkName}\n`)
      const snap2 = await Sandbox.createSnapshot(sbx.sandboxId, opts())
      t.after(() => Sandbox.deleteSnapshot(snap2.snapshotId, opts()))
      const mine = []
      const pager = sbx.listSnapshots({ limit: 1 })
      while (pager.hasNext) mine.push(...(await pager.nextItems()).map((s) => s.snapshotId))
      assert.deepEqual(mine, [snap2.snapshotId, snap.snapshotId], 'newest first, across pages')
      const stat = await Sandbox.listSnapshots({ ...opts(), sandboxId: sbx.sandboxId }).nextItems()
      assert.deepEqual(stat.map((s) => s.snapshotId), mine)
      await rejectsAs(sdk, Sandbox.deleteSnapshot(snap.snapshotId, opts()), 'SandboxError', /^400: cannot delete template '[a-z0-9]+' because there are running sandboxes using it/)
      await copy.kill()
      assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, opts()), true)
      assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, opts()), false)
      await rejectsAs(sdk, Sandbox.createSnapshot('nosuchsandbox0000000', opts()), 'SandboxNotFoundError', 'Sandbox nosuchsandbox0000000 not found')
      await rejectsAs(sdk, Sandbox.getInfo('x', opts({ apiKey: 'wrong' })), 'AuthenticationError', 'Unauthorized, please check your credentials. - Invalid API key')
    })
  })
}

describe('disk limits (the btrfs store)', () => {
  test('the default limit and diskSizeMB: past it a write fails inside and an upload is a NotEnoughSpaceError; bad values are refused', async () => {
    const limited = await startServer({ extraArgs: ['--store', 'btrfs', '--disk-limit-mb', '48'] })
    const copy = await startServer({ extraArgs: ['--store', 'copy'] })
    const made = []
    try {
      const mb = (n) => 'x'.repeat(n << 20)
      // novita-sandbox: the server's default limit.
      const a = await novita.Sandbox.create(limited.novita())
      made.push(a)
      assert.equal((await a.getMetrics())[0].diskTotal, 48 << 20)
      await rejectsAs(novita, a.files.write('/home/user/big', mb(64)), 'NotEnoughSpaceError')
      assert.equal(await a.files.exists('/home/user/big'), false, 'the partial upload is removed')
      const dd = await a.commands.run('dd if=/dev/zero of=/home/user/dd bs=1M count=64 2>&1 || true')
      assert.match(dd.stdout, /Disk quota exceeded/)
      await a.commands.run('rm /home/user/dd')
      await a.files.write('/home/user/fits', mb(16))

      // sandbank: a sandbox's own limit.
      const b = await sandbank.Sandbox.create({ ...limited.novita(), diskSizeMB: 16 })
      made.push(b)
      assert.equal((await b.getMetrics())[0].diskTotal, 16 << 20)
      await rejectsAs(sandbank, b.files.write('/home/user/big', mb(24)), 'NotEnoughSpaceError')
      await b.files.write('/home/user/fits', mb(8))
      for (const bad of [0, 2.5, -1, Number.NaN]) {
        await rejectsAs(sandbank, sandbank.Sandbox.create({ ...limited.novita(), diskSizeMB: bad }), 'InvalidArgumentError', new RegExp(`diskSizeMB .*got ${bad}$`))
      }
      const raw = await limited.fetch('/sandboxes', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ templateID: 'base', diskSizeMB: 0 }) })
      assert.deepEqual(await raw.json(), { code: 400, message: 'diskSizeMB must be at least 1, got 0' })

      // Where sandboxes have no disk limit (the copy store), asking for one is refused, saying why.
      await rejectsAs(sandbank, sandbank.Sandbox.create({ ...copy.novita(), diskSizeMB: 16 }), 'SandboxError', /diskSizeMB 16: this server's sandboxes have no disk limit/)
    } finally {
      for (const sbx of made) await sbx.kill()
      await stopAndCheck(limited)
      await stopAndCheck(copy)
    }
  })
})

describe('sandbank only', () => {
  test('bytes from another realm (a vm context, as test runners make) upload intact', async (t) => {
    const { Sandbox } = sandbank
    const sbx = await Sandbox.create(server.novita())
    t.after(() => sbx.kill())
    const foreign = runInNewContext('new Uint8Array([0, 1, 2, 253, 254, 255])')
    assert.equal(foreign instanceof Uint8Array, false, 'the array really is from another realm')
    await sbx.files.write('/tmp/ab.bin', foreign.buffer)
    await sbx.files.write('/tmp/u8.bin', foreign)
    for (const name of ['ab', 'u8']) {
      assert.deepEqual([...(await sbx.files.read(`/tmp/${name}.bin`, { format: 'bytes' }))], [0, 1, 2, 253, 254, 255])
    }
  })

  test('SnapshotInfo details; paginator over many pages with for await', async (t) => {
    const { Sandbox } = sandbank
    const sbx = await Sandbox.create(server.novita())
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => Sandbox.kill(sbx.sandboxId, server.novita()))
    const made = []
    t.after(async () => {
      for (const s of made) await Sandbox.deleteSnapshot(s.snapshotId, server.novita())
    })
    for (let i = 0; i < 7; i++) {
      await sbx.files.write('/tmp/n.txt', String(i))
      made.push(await sbx.createSnapshot())
    }
    const first = made[0]
    assert.equal(first.sandboxId, sbx.sandboxId)
    assert.ok(first.createdAt instanceof Date && Math.abs(first.createdAt - Date.now()) < 60_000)
    assert.equal(typeof first.sizeBytes, 'number')
    assert.equal(first.mode, 'full', 'with memory by default: the test setup provides CRIU')
    const pager = Sandbox.listSnapshots({ ...server.novita(), sandboxId: sbx.sandboxId, limit: 2 })
    const seen = []
    let pages = 0
    for await (const s of pager) {
      seen.push(s.snapshotId)
      pages = Math.ceil(seen.length / 2)
    }
    assert.equal(pages, 4)
    assert.deepEqual(seen, made.map((s) => s.snapshotId).reverse())
    assert.equal(pager.hasNext, false)
    await assert.rejects(pager.nextItems(), { message: 'No more items to fetch' })
    // The instance form iterates too.
    const again = []
    for await (const s of sbx.listSnapshots({ limit: 3 })) again.push(s.snapshotId)
    assert.deepEqual(again, seen)
  })

  test('one scripted session through both SDKs gives the same outcomes', async (t) => {
    async function session(sdk) {
      const { Sandbox } = sdk
      const out = []
      const record = async (label, fn) => {
        try {
          const v = await fn()
          out.push([label, 'ok', v])
        } catch (e) {
          out.push([label, 'error', e.name, e.message, e instanceof sdk.SandboxError, e.exitCode])
        }
      }
      const sbx = await Sandbox.create(server.novita({ metadata: { k: 'v' } }))
      server.sandboxIds.add(sbx.sandboxId)
      t.after(() => Sandbox.kill(sbx.sandboxId, server.novita()))
      // `rootIsHostRoot` is sandbank's own, there only when the server runs without a user
      // namespace (`npm test` runs this file in both modes).
      const strip = ({ rootIsHostRoot, ...i }) => {
        assert.equal(rootIsHostRoot, sdk === sandbank && process.env.SANDBANK_TEST_NO_USERNS === '1' ? true : undefined)
        return { ...i, sandboxId: 'ID', startedAt: 'T', endAt: 'T' }
      }
      await record('getInfo', async () => strip(await sbx.getInfo()))
      await record('run', () => sbx.commands.run('echo a; echo b >&2'))
      await record('exit', () => sbx.commands.run('exit 7'))
      await record('missing cmd', () => sbx.commands.run('no-such-cmd-xyz'))
      await record('write', () => sbx.files.write('/tmp/x.txt', 'x'))
      await record('read', () => sbx.files.read('/tmp/x.txt'))
      await record('read missing', () => sbx.files.read('/tmp/none'))
      await record('list', async () => (await sbx.files.list('/tmp')).map((e) => ({ ...e, modifiedTime: typeof e.modifiedTime })))
      await record('makeDir /tmp', () => sbx.files.makeDir('/tmp'))
      await record('remove missing', () => sbx.files.remove('/tmp/none'))
      await record('rename missing', () => sbx.files.rename('/tmp/none', '/tmp/none2'))
      await record('exists', () => sbx.files.exists('/tmp/x.txt'))
      await record('kill pid', () => sbx.commands.kill(999999))
      await record('timeout', () => sbx.commands.run('sleep 5', { timeoutMs: 500 }))
      await record('bad cwd', () => sbx.commands.run('pwd', { cwd: '/no/such' }))
      await record('kill', () => sbx.kill())
      await record('getInfo after kill', () => Sandbox.getInfo(sbx.sandboxId, server.novita()))
      await record('run after kill', () => sbx.commands.run('true'))
      await record('static kill after kill', () => Sandbox.kill(sbx.sandboxId, server.novita()))
      await record('delete missing snapshot', () => Sandbox.deleteSnapshot('nosuchsnapshot:default', server.novita()))
      return JSON.parse(JSON.stringify(out).replaceAll(sbx.sandboxId, 'ID'))
    }
    const a = await session(novita)
    const b = await session(sandbank)
    assert.deepEqual(b, a)
  })
})
