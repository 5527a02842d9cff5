// Sandbox network through the published `novita-sandbox` SDK against a real `sandbank serve`:
// with `allowInternetAccess` (the SDK's default) a sandbox reaches the internet through pasta —
// pip downloads from PyPI, and what it downloaded survives a snapshot — but never the host's own
// loopback, where the API listens; with `allowInternetAccess: false` nothing leaves the sandbox.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readlinkSync } from 'node:fs'
import { Sandbox } from 'novita-sandbox'
import { childProcesses, guestProcessesOf, isAlive, startServer, stopAndCheck } from './helpers.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

/** Creates a sandbox that is killed when test `t` ends. */
async function create(t, template, opts = {}) {
  const sbx = template ? await Sandbox.create(template, { ...server.novita(), ...opts }) : await Sandbox.create({ ...server.novita(), ...opts })
  server.sandboxIds.add(sbx.sandboxId)
  t.after(async () => {
    await Sandbox.kill(sbx.sandboxId, server.novita())
  })
  return sbx
}

/** The server's pasta processes. */
const pastas = () => childProcesses(server.proc.pid).filter((p) => (p.argv[0] ?? '').endsWith('pasta'))

/**
 * The pasta processes serving sandbox `id`: those holding its network namespace (pasta keeps it
 * open as its stdin). Others serve other sandboxes, or the network the server made ahead of time.
 */
function pastasOf(id) {
  const [guest] = guestProcessesOf(id)
  assert.ok(guest, `no guest process for ${id}`)
  const netns = readlinkSync(`/proc/${guest.pid}/ns/net`)
  return pastas().filter((p) => {
    try {
      return readlinkSync(`/proc/${p.pid}/fd/0`) === netns
    } catch {
      return false
    }
  })
}

const WHEEL = '/home/user/pkgs/six-1.16.0-py2.py3-none-any.whl'

describe('allowInternetAccess', () => {
  test('pip downloads a wheel from PyPI; a sandbox started from a snapshot has it', async (t) => {
    const sbx = await create(t) // the SDK sends allow_internet_access: true by default
    assert.equal((await sbx.getInfo()).allowInternetAccess, true)
    const pip = await sbx.commands.run('python3 -m pip download --no-deps --disable-pip-version-check -d /home/user/pkgs six==1.16.0', {
      timeoutMs: 120_000,
    })
    assert.equal(pip.exitCode, 0, pip.stderr)
    const sum = (await sbx.commands.run(`sha256sum ${WHEEL}`)).stdout.split(' ')[0]
    assert.match(sum, /^[0-9a-f]{64}$/)

    const snapshot = await sbx.createSnapshot()
    try {
      const copy = await create(t, snapshot.snapshotId)
      assert.equal((await copy.commands.run(`sha256sum ${WHEEL}`)).stdout.split(' ')[0], sum)
      assert.equal((await copy.commands.run('python3 -m zipfile -l ' + WHEEL)).exitCode, 0, 'the wheel is whole')
      // The resolver configuration belongs to the sandbox, not to the snapshot: it resolves too.
      assert.equal((await copy.getInfo()).allowInternetAccess, true)
      assert.match((await copy.commands.run('getent hosts pypi.org')).stdout, /pypi\.org/)
      await Sandbox.kill(copy.sandboxId, server.novita())
    } finally {
      await Sandbox.deleteSnapshot(snapshot.snapshotId, server.novita())
    }
  })

  test('false: loopback only; PyPI is unreachable, and fails at once', async (t) => {
    const sbx = await create(t, undefined, { allowInternetAccess: false })
    assert.equal((await sbx.getInfo()).allowInternetAccess, false)
    assert.equal((await sbx.commands.run('grep -c : /proc/net/dev')).stdout.trim(), '1', 'lo only')
    const t0 = Date.now()
    const pip = await sbx.commands.run('python3 -m pip download --no-deps --disable-pip-version-check --retries 0 --timeout 5 -d /home/user/pkgs six==1.16.0', {
      timeoutMs: 60_000,
    }).catch((e) => e)
    const pipMs = Date.now() - t0
    assert.notEqual(pip.exitCode, 0, 'pip must fail')
    assert.ok(pipMs < 15_000, `pip took ${pipMs} ms to fail`)
    // Below pip: no name resolution, no route to any address.
    const probe = await sbx.commands.run(
      `python3 -c '
import socket, time
t = time.monotonic()
for target in (("pypi.org", 443), ("151.101.0.223", 443)):
    try:
        socket.create_connection(target, timeout=10); print(target[0], "reached")
    except OSError as e:
        print(target[0], type(e).__name__, e)
print("ms", round((time.monotonic() - t) * 1000))
'`,
    )
    assert.doesNotMatch(probe.stdout, /reached/)
    assert.match(probe.stdout, /151\.101\.0\.223 OSError \[Errno 101\] Network is unreachable/)
    const ms = Number(/^ms (\d+)$/m.exec(probe.stdout)[1])
    assert.ok(ms < 2000, `connection attempts took ${ms} ms to fail:\n${probe.stdout}`)
    assert.deepEqual(pastasOf(sbx.sandboxId), [], 'no pasta for a sandbox without network')
  })

  test("the host's loopback stays out of reach: the API's port on 127.0.0.1 and on the gateway, raw packets", async (t) => {
    const port = Number(new URL(server.url).port)
    const sbx = await create(t)
    const mine = pastasOf(sbx.sandboxId)
    assert.equal(mine.length, 1, 'one pasta for the sandbox')
    await sbx.files.write(
      '/tmp/probe.py',
      `import socket, sys, urllib.request
port = int(sys.argv[1])
gw = [l.split()[2] for l in open("/proc/net/route") if l.split()[1] == "00000000"][0]
gw = socket.inet_ntoa(bytes.fromhex(gw)[::-1])
for host in ("127.0.0.1", gw):
    try:
        urllib.request.urlopen(f"http://{host}:{port}/health", timeout=3)
        print(host, "reached")
    except Exception as e:
        print(host, "failed:", e)
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    print("raw sockets allowed")
except PermissionError as e:
    print("raw sockets refused")
`,
    )
    for (const user of ['user', 'root']) {
      const r = await sbx.commands.run(`python3 /tmp/probe.py ${port}`, { user, timeoutMs: 30_000 })
      assert.doesNotMatch(r.stdout, /reached|allowed/, `as ${user}:\n${r.stdout}${r.stderr}`)
      assert.match(r.stdout, /^127\.0\.0\.1 failed: .*Connection refused/m, r.stdout)
      assert.match(r.stdout, /^\d+\.\d+\.\d+\.\d+ failed: /m, r.stdout)
      assert.match(r.stdout, /^raw sockets refused$/m, r.stdout)
    }

    // pasta runs outside the sandbox's cgroup (a frozen sandbox keeps its network), and goes with it.
    const [pasta] = mine
    assert.doesNotMatch(readFileSync(`/proc/${pasta.pid}/cgroup`, 'utf8'), new RegExp(sbx.sandboxId))
    await sbx.kill()
    assert.equal(isAlive(pasta), false, 'its pasta is gone once kill returns')
  })
})
