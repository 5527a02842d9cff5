// `sandbox.pty` and `sandbox.files.watchDir` through `sandbank` and the published
// `novita-sandbox`, against a real `sandbank serve`: the same calls give the same results and
// error classes. Then, through `sandbank` only: a process that used terminals and watches exits by
// itself once it let go of them (however it let go). Every sandbox, terminal and watch a test
// starts is stopped by it.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import * as novita from 'novita-sandbox'
import * as sandbank from 'sandbank'
import { startServer, stopAndCheck, rejectsWith, eventually, repoRoot } from './helpers.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

const enc = new TextEncoder()
const SDKS = { 'novita-sandbox': novita, sandbank }

for (const [sdkName, sdk] of Object.entries(SDKS)) {
  const { Sandbox } = sdk
  describe(`through ${sdkName}`, () => {
    /** Creates a sandbox that is killed when test `t` ends. */
    async function create(t) {
      const sbx = await Sandbox.create(server.novita())
      server.sandboxIds.add(sbx.sandboxId)
      t.after(() => Sandbox.kill(sbx.sandboxId, server.novita()))
      return sbx
    }

    test('pty: create, sendInput, resize, connect, list, kill', async (t) => {
      const sbx = await create(t)
      let out = ''
      const chunks = []
      const dec = new TextDecoder()
      const term = await sbx.pty.create({
        cols: 80,
        rows: 24,
        onData: (d) => {
          chunks.push(d)
          out += dec.decode(d, { stream: true })
        },
      })
      t.after(() => sbx.pty.kill(term.pid).catch(() => {}))
      assert.ok(Number.isInteger(term.pid) && term.pid > 1)
      assert.equal(term.exitCode, undefined)

      await sbx.pty.sendInput(term.pid, enc.encode('echo "$TERM $LANG $(stty size)"\n'))
      await eventually(() => assert.match(out, /xterm-256color C\.UTF-8 24 80\r\n/), { timeoutMs: 20_000 })
      assert.ok(chunks.every((c) => c instanceof Uint8Array), 'onData gets bytes')
      assert.equal(term.stdout, '', 'terminal output is not stdout')

      await sbx.pty.resize(term.pid, { cols: 132, rows: 43 })
      await sbx.pty.sendInput(term.pid, enc.encode('stty size\n'))
      await eventually(() => assert.match(out, /[\r\n]43 132\r\n/), { timeoutMs: 20_000 })

      // Bytes pass through unchanged, in both directions.
      await sbx.pty.sendInput(term.pid, enc.encode("printf 'caf\\303\\251 \\342\\234\\223\\n'\n"))
      await eventually(() => assert.match(out, /café ✓\r\n/), { timeoutMs: 20_000 })

      let seen = ''
      const other = await sbx.pty.connect(term.pid, { onData: (d) => (seen += new TextDecoder().decode(d)) })
      assert.equal(other.pid, term.pid)
      await sbx.pty.sendInput(term.pid, enc.encode('echo "sum=$((40+2))"\n'))
      await eventually(() => assert.match(seen, /sum=42\r\n/), { timeoutMs: 20_000 })
      const listed = await sbx.commands.list()
      assert.ok(listed.some((p) => p.pid === term.pid && p.cmd === '/bin/bash' && p.args.join(' ') === '-i -l'), JSON.stringify(listed))

      assert.equal(await sbx.pty.kill(term.pid), true)
      const err = await rejectsWith(term.wait(), sdk.CommandExitError)
      assert.equal(err.exitCode, -1)
      assert.equal(term.exitCode, -1)
      await rejectsWith(other.wait(), sdk.CommandExitError)
      assert.equal(await sbx.pty.kill(term.pid), false)
      await rejectsWith(sbx.pty.sendInput(term.pid, enc.encode('x')), sdk.NotFoundError)
      await rejectsWith(sbx.pty.resize(term.pid, { cols: 10, rows: 10 }), sdk.NotFoundError)
    })

    test('pty: user, cwd, envs; the shell exiting ends the handle with its code', async (t) => {
      const sbx = await create(t)
      let out = ''
      const term = await sbx.pty.create({ cols: 100, rows: 30, user: 'root', cwd: '/tmp', envs: { FOO: 'bar baz', TERM: 'vt100' }, onData: (d) => (out += Buffer.from(d).toString()) })
      await sbx.pty.sendInput(term.pid, enc.encode('echo "<$(whoami) $PWD $FOO $TERM>"; exit 3\n'))
      const err = await rejectsWith(term.wait(), sdk.CommandExitError)
      assert.equal(err.exitCode, 3)
      assert.match(out, /<root \/tmp bar baz vt100>/)

      const ok = await sbx.pty.create({ cols: 80, rows: 24, onData: () => {} })
      await sbx.pty.sendInput(ok.pid, enc.encode('exit\n'))
      const r = await ok.wait()
      assert.equal(r.exitCode, 0)
    })

    test('pty: timeoutMs ends the terminal', async (t) => {
      const sbx = await create(t)
      const term = await sbx.pty.create({ cols: 80, rows: 24, onData: () => {}, timeoutMs: 1_500 })
      await rejectsWith(term.wait(), sdk.TimeoutError)
      await eventually(async () => assert.ok(!(await sbx.commands.list()).some((p) => p.pid === term.pid)))
    })

    test('watchDir: recursive events, non-recursive scope, stop → onExit(TimeoutError)', async (t) => {
      const sbx = await create(t)
      await sbx.files.makeDir('/tmp/w/sub')
      const events = []
      const flat = []
      const exits = []
      const handle = await sbx.files.watchDir('/tmp/w', (e) => events.push(e), { recursive: true, onExit: (e) => exits.push(e ?? null) })
      const handle2 = await sbx.files.watchDir('/tmp/w', (e) => flat.push(e), { timeoutMs: 0 })
      t.after(() => handle.stop())
      t.after(() => handle2.stop())
      await sbx.files.write('/tmp/w/a.txt', 'data')
      await sbx.commands.run('echo more > /tmp/w/sub/b.txt; chmod 600 /tmp/w/a.txt; mv /tmp/w/a.txt /tmp/w/a2.txt; rm /tmp/w/sub/b.txt')
      const has = (list, name, type) => list.some((e) => e.name === name && e.type === type)
      await eventually(() => {
        for (const [name, type] of [
          ['a.txt', sdk.FilesystemEventType.CREATE],
          ['a.txt', sdk.FilesystemEventType.WRITE],
          ['sub/b.txt', 'create'],
          ['sub/b.txt', 'write'],
          ['a.txt', 'chmod'],
          ['a.txt', 'rename'],
          ['a2.txt', 'create'],
          ['sub/b.txt', 'remove'],
        ]) {
          assert.ok(has(events, name, type), `no ${type} event for ${name} in ${JSON.stringify(events)}`)
        }
        assert.ok(has(flat, 'a2.txt', 'create'), JSON.stringify(flat))
      })
      assert.ok(!flat.some((e) => e.name.startsWith('sub/')), `a non-recursive watch sees no subdirectory events: ${JSON.stringify(flat)}`)
      for (const e of events) assert.deepEqual(Object.keys(e).sort(), ['name', 'type'])

      await handle.stop()
      await eventually(() => assert.equal(exits.length, 1))
      assert.ok(exits[0] instanceof sdk.TimeoutError, `onExit got ${exits[0]?.name}: ${exits[0]?.message}`)
      const count = events.length
      await sbx.files.write('/tmp/w/late.txt', 'late')
      await eventually(() => assert.ok(has(flat, 'late.txt', 'create')))
      assert.equal(events.length, count, 'no events after stop')
      await handle.stop() // a second stop is harmless
    })

    test('watchDir: timeoutMs → onExit(TimeoutError); errors for a missing path and a file', async (t) => {
      const sbx = await create(t)
      let exit
      const exited = new Promise((r) => (exit = r))
      await sbx.files.watchDir('/tmp', () => {}, { timeoutMs: 1_000, onExit: exit })
      const e = await exited
      assert.ok(e instanceof sdk.TimeoutError, `${e?.name}: ${e?.message}`)
      assert.match(e.message, /timeoutMs/)
      await rejectsWith(sbx.files.watchDir('/tmp/no/such/dir', () => {}), sdk.FileNotFoundError)
      await sbx.files.write('/tmp/plain.txt', 'x')
      await rejectsWith(sbx.files.watchDir('/tmp/plain.txt', () => {}), sdk.InvalidArgumentError)
    })
  })
}

describe('sandbank only', () => {
  const CHILD = join(repoRoot, '__test__', 'fixtures', 'pty-watch-child.mjs')

  /** Runs the child in `mode`; resolves with its result and how long it took to exit after it finished. */
  function runChild(mode) {
    return new Promise((resolve, reject) => {
      const env = { ...process.env, MODE: mode, SANDBANK_TEST_CONN: JSON.stringify(server.novita()) }
      const p = spawn(process.execPath, [CHILD], { env, cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      let err = ''
      p.stdout.on('data', (d) => (out += d))
      p.stderr.on('data', (d) => (err += d))
      const killer = setTimeout(() => p.kill('SIGKILL'), 60_000)
      p.on('error', reject)
      p.on('exit', (code, signal) => {
        clearTimeout(killer)
        const exitedAt = Date.now()
        const lines = out.trim().split('\n').map((l) => JSON.parse(l))
        for (const l of lines) if (l.sandboxId) server.sandboxIds.add(l.sandboxId)
        const result = lines.at(-1)
        if (!result || !('ok' in result)) return reject(new Error(`child printed no result (exit ${code ?? signal}); stdout: ${out}\nstderr: ${err}`))
        resolve({ code, signal, result, sandboxId: lines[0]?.sandboxId, stderr: err, exitLagMs: exitedAt - result.doneAt })
      })
    })
  }

  for (const [mode, check] of [
    ['stop-and-kill', (r) => assert.deepEqual([r.exited, r.thrown], ['TimeoutError', 'CommandExitError'])],
    ['disconnect', (r) => assert.equal(r.exited, 'TimeoutError')],
    ['kill-sandbox', (r) => assert.notEqual(r.exited, null, 'the watch ended when its sandbox went away')],
    ['throwing-callback', (r) => assert.equal(r.failed, 'callback failed', 'a throwing onEvent ends the watch with its error')],
  ]) {
    test(`Node exits by itself after terminals and watches end (${mode})`, async (t) => {
      const c = await runChild(mode)
      if (c.sandboxId) t.after(() => sandbank.Sandbox.kill(c.sandboxId, server.novita()))
      assert.equal(c.code, 0, `child: ${JSON.stringify(c.result)}\n${c.stderr}`)
      assert.equal(c.result.ok, true, JSON.stringify(c.result))
      assert.equal(c.result.sawEvent, true, 'the watch saw the file the terminal wrote')
      check(c.result)
      assert.ok(c.exitLagMs < 3_000, `the child took ${c.exitLagMs} ms to exit after its work`)
    })
  }
})
