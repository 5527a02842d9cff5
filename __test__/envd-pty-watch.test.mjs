// The published `novita-sandbox` SDK against a real `sandbank serve`: pseudo-terminals
// (`sandbox.pty`) and directory watches (`sandbox.files.watchDir`). Every sandbox, process and
// watch a test starts is stopped by it.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readlinkSync } from 'node:fs'
import { Sandbox, CommandExitError, FileNotFoundError, InvalidArgumentError } from 'novita-sandbox'
import { startServer, stopAndCheck, rejectsWith, eventually, guestProcessesOf } from './helpers.mjs'

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

const enc = new TextEncoder()

describe('pty', () => {
  test('create, sendInput, resize, connect and kill', async (t) => {
    const sbx = await create(t)
    let out = ''
    const dec = new TextDecoder()
    const term = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => (out += dec.decode(d, { stream: true })) })
    t.after(() => sbx.pty.kill(term.pid).catch(() => {}))
    assert.ok(term.pid > 0)

    await sbx.pty.sendInput(term.pid, enc.encode('echo hi\n'))
    // The typed line is echoed by the terminal; the command's own output is a line of its own.
    await eventually(() => assert.match(out, /[\r\n]hi\r\n/), { timeoutMs: 20_000 })

    await sbx.pty.sendInput(term.pid, enc.encode('echo "$TERM $(stty size)"\n'))
    await eventually(() => assert.match(out, /xterm-256color 24 80\r\n/), { timeoutMs: 20_000 })
    await sbx.pty.resize(term.pid, { cols: 100, rows: 40 })
    await sbx.pty.sendInput(term.pid, enc.encode('stty size\n'))
    await eventually(() => assert.match(out, /[\r\n]40 100\r\n/), { timeoutMs: 20_000 })

    // A second client sees the same terminal.
    let seen = ''
    const other = await sbx.pty.connect(term.pid, { onData: (d) => (seen += new TextDecoder().decode(d)) })
    await sbx.pty.sendInput(term.pid, enc.encode('echo "sum=$((40+2))"\n'))
    await eventually(() => assert.match(seen, /sum=42\r\n/), { timeoutMs: 20_000 })
    const listed = await sbx.commands.list()
    assert.ok(listed.some((p) => p.pid === term.pid && p.cmd === '/bin/bash' && p.args.join(' ') === '-i -l'), JSON.stringify(listed))

    assert.equal(await sbx.pty.kill(term.pid), true)
    const err = await rejectsWith(term.wait(), CommandExitError)
    assert.equal(err.exitCode, -1)
    await rejectsWith(other.wait(), CommandExitError)
    assert.ok(!(await sbx.commands.list()).some((p) => p.pid === term.pid))
    assert.equal(await sbx.pty.kill(term.pid), false)
  })
})

/** How many inotify descriptors the sandbox's `sandbank guest` processes (envd among them) hold, seen from the host. */
function envdInotifyFds(sbx) {
  const guests = guestProcessesOf(sbx.sandboxId)
  assert.ok(guests.length > 0, `no guest process for ${sbx.sandboxId}`)
  let n = 0
  for (const { pid } of guests) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`).includes('inotify')) n++
      }
    } catch {}
  }
  return n
}

describe('watchDir', () => {
  test('sees writes made by commands, recursively; stop ends it', async (t) => {
    const sbx = await create(t)
    await sbx.files.makeDir('/tmp/watched/sub')
    const events = []
    let exited = false
    const handle = await sbx.files.watchDir('/tmp/watched', (e) => events.push(e), {
      recursive: true,
      onExit: () => (exited = true),
    })
    t.after(() => handle.stop())
    assert.equal(envdInotifyFds(sbx), 1)

    await sbx.commands.run('echo data > /tmp/watched/a.txt; echo more > /tmp/watched/sub/b.txt; mkdir -p /tmp/watched/new/dir; echo x > /tmp/watched/new/dir/c.txt')
    await sbx.commands.run('chmod 600 /tmp/watched/a.txt; mv /tmp/watched/a.txt /tmp/watched/a2.txt; rm /tmp/watched/sub/b.txt')
    const has = (name, type) => events.some((e) => e.name === name && e.type === type)
    await eventually(() => {
      for (const [name, type] of [
        ['a.txt', 'create'],
        ['a.txt', 'write'],
        ['sub/b.txt', 'write'],
        ['new', 'create'],
        ['new/dir/c.txt', 'create'],
        ['a.txt', 'chmod'],
        ['a.txt', 'rename'],
        ['a2.txt', 'create'],
        ['sub/b.txt', 'remove'],
      ]) {
        assert.ok(has(name, type), `no ${type} event for ${name} in ${JSON.stringify(events)}`)
      }
    })

    await handle.stop()
    await eventually(() => assert.ok(exited, 'onExit was called'))
    // envd closed the watch when the client went away; later writes reach nobody.
    await eventually(() => assert.equal(envdInotifyFds(sbx), 0))
    const count = events.length
    await sbx.commands.run('echo late > /tmp/watched/late.txt')
    await new Promise((r) => setTimeout(r, 300))
    assert.equal(events.length, count)
  })

  test('a missing path and a file are errors', async (t) => {
    const sbx = await create(t)
    await rejectsWith(sbx.files.watchDir('/tmp/no/such/dir', () => {}), FileNotFoundError)
    await sbx.files.write('/tmp/plain.txt', 'x')
    await rejectsWith(sbx.files.watchDir('/tmp/plain.txt', () => {}), InvalidArgumentError)
  })
})
