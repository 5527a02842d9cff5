// Isolation smoke checks: what a sandbox can see of the host.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { Sandbox, CommandExitError } from 'novita-sandbox'
import { startServer, stopAndCheck, rejectsWith } from './helpers.mjs'

let server
let sbx
before(async () => {
  server = await startServer()
  sbx = await Sandbox.create(server.novita())
  server.sandboxIds.add(sbx.sandboxId)
})
after(async () => {
  if (sbx) await sbx.kill()
  if (server) await stopAndCheck(server)
})

const root = (cmd) => sbx.commands.run(cmd, { user: 'root' })

test('hostname is the sandbox ID', async () => {
  assert.equal((await sbx.commands.run('hostname')).stdout, `${sbx.sandboxId}\n`)
})

test("the host's /root and the data dir are not visible", async () => {
  const marker = `/root/.sandbank-isolation-${randomBytes(6).toString('hex')}`
  writeFileSync(marker, 'host secret')
  try {
    await rejectsWith(root(`test -e ${marker}`), CommandExitError)
    await rejectsWith(root(`test -e ${server.dataDir}`), CommandExitError)
    const listing = (await root('ls -a /root')).stdout.split('\n')
    assert.ok(!listing.some((n) => n.startsWith('.sandbank-isolation-')), listing.join(' '))
    const hostOnly = readdirSync('/root').filter((n) => !['.bashrc', '.profile', '.bash_logout'].includes(n))
    for (const n of hostOnly) assert.ok(!listing.includes(n), `the host's /root/${n} is visible in the sandbox`)
  } finally {
    rmSync(marker, { force: true })
  }
  // Files written in the sandbox do not appear on the host.
  await root('echo inside > /root/inside-only.txt')
  assert.equal(existsSync('/root/inside-only.txt'), false)
})

test("host secrets are not readable: /etc/shadow is not the host's", async () => {
  if (!existsSync('/etc/shadow')) return
  const host = readFileSync('/etc/shadow', 'utf8')
  const inside = await sbx.commands.run('cat /etc/shadow 2>/dev/null; true', { user: 'root' })
  assert.notEqual(inside.stdout, host)
  const rootHash = /^root:([^:]*):/m.exec(host)?.[1]
  if (rootHash && rootHash.length > 2) assert.ok(!inside.stdout.includes(rootHash), 'the host root password hash is visible')
})

test('ps shows only the sandbox processes, with the guest as PID 1', async () => {
  const bg = await sbx.commands.run('sleep 300', { background: true })
  try {
    const r = await root('ps -e -o pid=,ppid=,comm=')
    const procs = r.stdout.trim().split('\n').map((l) => {
      const [pid, ppid, ...comm] = l.trim().split(/\s+/)
      return { pid: Number(pid), ppid: Number(ppid), comm: comm.join(' ') }
    })
    const pids = new Set(procs.map((p) => p.pid))
    assert.ok(pids.has(1), `no PID 1:\n${r.stdout}`)
    assert.ok(procs.some((p) => p.comm === 'sleep'), `our sleep is missing:\n${r.stdout}`)
    for (const p of procs) {
      assert.ok(p.pid === 1 || pids.has(p.ppid), `process ${p.pid} (${p.comm}) has a parent ${p.ppid} outside the sandbox`)
    }
    assert.ok(procs.length < 15, `${procs.length} processes visible:\n${r.stdout}`)
    for (const comm of ['node', 'systemd', 'cargo', 'sshd']) {
      assert.ok(!procs.some((p) => p.comm === comm), `host process ${comm} is visible`)
    }
  } finally {
    await bg.kill()
  }
})

/** The network interfaces a sandbox sees. */
const interfaces = async (s) =>
  (await s.commands.run('cat /proc/net/dev')).stdout.split('\n').slice(2).map((l) => l.split(':')[0].trim()).filter(Boolean)

test("the network namespace is the sandbox's own: loopback and pasta's tap; loopback only without internet access", async (t) => {
  // Internet access (the SDK's default): none of the host's devices, only the tap pasta made.
  const ifaces = await interfaces(sbx)
  assert.equal(ifaces.length, 2, ifaces.join(' '))
  assert.equal(ifaces[0], 'lo')
  assert.equal((await sbx.commands.run(`cat /sys/class/net/${ifaces[1]}/tun_flags`)).exitCode, 0, `${ifaces[1]} is a tap`)
  const offline = await Sandbox.create({ ...server.novita(), allowInternetAccess: false })
  server.sandboxIds.add(offline.sandboxId)
  t.after(() => offline.kill())
  assert.deepEqual(await interfaces(offline), ['lo'])
})

test('two sandboxes do not share files or processes', async (t) => {
  const other = await Sandbox.create(server.novita())
  server.sandboxIds.add(other.sandboxId)
  t.after(() => other.kill())
  await sbx.files.write('/tmp/only-in-first.txt', '1')
  assert.equal(await other.files.exists('/tmp/only-in-first.txt'), false)
  const bg = await sbx.commands.run('sleep 301', { background: true })
  try {
    const ps = await other.commands.run('ps -eo args')
    assert.ok(!ps.stdout.includes('sleep 301'), ps.stdout)
  } finally {
    await bg.kill()
  }
})
