// Egress rules (`network: { allowOut, denyOut }` on create, `updateNetwork`) through the published
// e2b SDK against a real server: in force inside the sandbox's own network namespace, out of reach
// of root inside. Only denied destinations are tried (refused inside the sandbox: nothing leaves
// this machine); what is allowed is read back from the sandbox's nftables table on the host. The
// table is checked before any connection is tried, so that a server that lost its rules fails the
// test without sending anything out.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { Sandbox } from 'e2b'
import { guestProcessesOf, startServer, stopAndCheck } from './helpers.mjs'

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
  t.after(() => sbx.kill())
  return sbx
}

/** A TCP connection from inside to `ip:port`: `refused` at once when a rule denies it. */
async function connect(sbx, ip, port = 80, user = 'user') {
  const r = await sbx.commands.run(`timeout 5 bash -c 'echo > /dev/tcp/${ip}/${port}' 2>&1; echo "rc=$?"`, { user })
  return /Connection refused/.test(r.stdout) ? 'refused' : r.stdout.trim()
}

/** The sandbox's egress table as nft lists it, from the host (its guest's network namespace). */
function egressTable(sbx) {
  const pid = guestProcessesOf(sbx.sandboxId)[0]?.pid
  assert.ok(pid, 'the guest process')
  const r = spawnSync('nsenter', ['-t', pid, '-n', 'nft', 'list', 'table', 'inet', 'sandbank_egress'], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout : null
}

describe('egress rules', () => {
  test('denyOut refuses at once; allowOut wins over it; loopback stays open', async (t) => {
    const sbx = await create(t, { network: { denyOut: ['0.0.0.0/0'], allowOut: ['192.0.2.7'] } })
    const table = egressTable(sbx)
    assert.ok(table, 'the table is there')
    const allow = table.indexOf('ip daddr 192.0.2.7 accept')
    const deny = table.indexOf('ip daddr 0.0.0.0/0')
    assert.ok(allow > 0 && deny > allow, `allowed before denied:\n${table}`)
    assert.equal(await connect(sbx, '192.0.2.8'), 'refused')
    assert.equal(await connect(sbx, '198.51.100.1', 443), 'refused')
    // Loopback: a server inside is reached.
    await sbx.commands.run('python3 -m http.server 8123 --bind 127.0.0.1 >/dev/null 2>&1', { background: true })
    const loop = await sbx.commands.run('for i in $(seq 50); do code=$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:8123/) && break; sleep 0.1; done; echo "$code"')
    assert.equal(loop.stdout, '200\n')
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, server.e2b())).sandboxId, sbx.sandboxId)
  })

  test('root inside cannot lift the rules', async (t) => {
    const sbx = await create(t, { network: { denyOut: ['192.0.2.0/24'] } })
    // The host's nft, with its libraries (the base image has none; both are Debian 12's).
    await sbx.commands.run('mkdir -p /tmp/nft', { user: 'root' })
    const libs = spawnSync('ldd', ['/usr/sbin/nft'], { encoding: 'utf8' }).stdout.matchAll(/=> (\/\S+)/g)
    for (const path of ['/usr/sbin/nft', ...[...libs].map((m) => m[1]).filter((p) => !/\/(libc|ld-linux)[.-]/.test(p))]) {
      await sbx.files.write(`/tmp/nft/${basename(path)}`, readFileSync(path), { user: 'root' })
    }
    const nft = 'LD_LIBRARY_PATH=/tmp/nft /lib64/ld-linux-x86-64.so.2 /tmp/nft/nft'
    const r = await sbx.commands.run(`${nft} delete table inet sandbank_egress 2>&1; ${nft} flush ruleset 2>&1; echo done`, { user: 'root' })
    assert.match(r.stdout, /Operation not permitted|not permitted/i, r.stdout)
    assert.ok(egressTable(sbx)?.includes('192.0.2.0/24'), 'still there')
    assert.equal(await connect(sbx, '192.0.2.1', 80, 'root'), 'refused')
  })

  test('updateNetwork replaces the rules; what it leaves out is cleared', async (t) => {
    const sbx = await create(t)
    assert.equal(egressTable(sbx), null, 'no rule: no table')
    await sbx.updateNetwork({ denyOut: ['203.0.113.0/24'] })
    assert.ok(egressTable(sbx)?.includes('203.0.113.0/24'))
    assert.equal(await connect(sbx, '203.0.113.5'), 'refused')
    await sbx.updateNetwork({ denyOut: ['192.0.2.0/24'], allowOut: ['192.0.2.9'] })
    const table = egressTable(sbx)
    assert.ok(table?.includes('192.0.2.9') && !table.includes('203.0.113.0/24'), table)
    assert.equal(await connect(sbx, '192.0.2.10'), 'refused')
    await sbx.updateNetwork({})
    assert.equal(egressTable(sbx), null, 'cleared')
    // A bad entry is refused, naming it, and the rules stay as they were.
    await assert.rejects(sbx.updateNetwork({ denyOut: ['not-an-ip'] }), /not-an-ip/)
  })

  test('the rules outlive a files-only pause (the sandbox starts again with them)', async (t) => {
    const sbx = await create(t, { network: { denyOut: ['192.0.2.0/24'] } })
    assert.equal(await sbx.pause({ keepMemory: false }), true)
    const back = await sbx.connect()
    assert.ok(egressTable(back)?.includes('192.0.2.0/24'), 'the rules came back with it')
    assert.equal(await connect(back, '192.0.2.3'), 'refused')
  })
})
