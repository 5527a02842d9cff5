// Snapshot export and import, through `sandbank` (the SDK and the CLI) on real `sandbank serve`s:
// export → delete → import → start with the files intact (a file deleted over a lower layer, a
// directory replaced, a symlink, modes, root's files), an archive exported on one server started
// on another with its own data directory, the CLI (`snapshots export`, `snapshots import --json`),
// truncated, bit-flipped and foreign files refused with a clear error and nothing left behind, and
// a server killed with SIGKILL in the middle of an import leaving nothing after its restart.
// Every sandbox and snapshot a test creates is killed / deleted by it, its temporary files
// removed, and each server checked for leftovers when it stops.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Sandbox, SandboxError } from 'sandbank'
import { eventually, layersRoot, sandbankBinary, serverGenerations, startServer, stopAndCheck, tracker } from './helpers.mjs'

const unique = (prefix) => `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`

/** A temporary directory for test `t`'s archives, removed when it ends. */
function scratch(t) {
  const dir = mkdtempSync(join(tmpdir(), 'sandbank-archive-test-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function run(sbx, cmd, extra = {}) {
  const r = await sbx.commands.run(cmd, { timeoutMs: 120_000, ...extra })
  assert.equal(r.exitCode, 0, `${cmd}: ${r.stderr}`)
  return r.stdout
}

/** `sandbank <args>` against `server`: {status, stdout, stderr}. */
function cli(server, args) {
  const env = { ...process.env, SANDBANK_URL: server.url, SANDBANK_API_KEY: server.apiKey }
  const r = spawnSync(sandbankBinary(), args, { env, encoding: 'utf8', timeout: 120_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

async function listed(server) {
  return (await (await server.fetch('/snapshots')).json()).map((s) => s.snapshotID)
}

function staging(server) {
  const dir = join(layersRoot(server), 'layers', '.staging')
  return existsSync(dir) ? readdirSync(dir) : []
}

/**
 * A snapshot of two layers: the first with files, a directory and a symlink (and a file of
 * root's), the second over it deleting a file, replacing the directory (an opaque directory) and
 * appending to a file. Returns the snapshot (named, labelled).
 */
async function layeredSnapshot(k) {
  const one = await k.create('base')
  await run(one, [
    'cd /home/user',
    'printf base > keep.txt && chmod 640 keep.txt',
    'echo gone > gone.txt',
    'mkdir -p dir && echo x > dir/x',
    'ln -s keep.txt link',
  ].join(' && '))
  await run(one, 'printf secret > /etc/archive-root.txt && chmod 600 /etc/archive-root.txt', { user: 'root' })
  const lower = k.snap(await one.createSnapshot())
  await k.kill(one)
  const two = await k.create(lower.snapshotId)
  await run(two, [
    'cd /home/user',
    'rm gone.txt',
    'rm -rf dir && mkdir dir && echo new > dir/y',
    'printf -- -two >> keep.txt',
  ].join(' && '))
  const name = unique('archived')
  const top = k.snap(await two.createSnapshot({ name, metadata: { origin: 'archive-test' } }))
  await k.kill(two)
  return { lower, top, name }
}

/** What a sandbox started from the layered snapshot must see. */
async function checkFiles(sbx) {
  const out = await run(sbx, [
    'cd /home/user',
    'cat keep.txt; echo',
    'test ! -e gone.txt && echo no-gone',
    'ls dir',
    'cat dir/y',
    'readlink link',
    'stat -c "%a %U" keep.txt',
  ].join(' && '))
  assert.deepEqual(out.trim().split('\n'), ['base-two', 'no-gone', 'y', 'new', 'keep.txt', '640 user'])
  assert.equal(await run(sbx, 'cat /etc/archive-root.txt; echo; stat -c "%a %U" /etc/archive-root.txt', { user: 'root' }), 'secret\n600 root\n')
}

/**
 * An archive in the format (crates/engine/src/snapshot_archive.rs) with the manifest of the
 * decompressed archive `plain` (its template and base image: this server's) and one layer of a
 * block device node at /root/disk, its digest right.
 */
function craftedArchive(plain, dir) {
  const magic = Buffer.from('sandbank-snapshot-archive\n')
  assert.ok(plain.subarray(0, magic.length).equals(magic))
  let at = magic.length + 1 // the 'M'
  const parts = []
  for (;;) {
    const len = plain.readUInt32BE(at)
    at += 4
    if (len === 0) break
    parts.push(plain.subarray(at, at + len))
    at += len
  }
  const manifest = JSON.parse(Buffer.concat(parts).toString('utf8'))
  manifest.layers = 1
  const layer = join(dir, 'crafted-layer')
  execFileSync('mkdir', ['-p', join(layer, 'root')])
  execFileSync('mknod', [join(layer, 'root', 'disk'), 'b', '7', '0'])
  const tar = execFileSync('tar', ['--create', '--file=-', '--format=posix', '--numeric-owner', '--directory', layer, '.'], { maxBuffer: 1 << 26 })
  const section = (kind, bytes) => {
    const len = Buffer.alloc(4)
    len.writeUInt32BE(bytes.length)
    return Buffer.concat([Buffer.from(kind), len, bytes, Buffer.alloc(4)])
  }
  const body = Buffer.concat([magic, section('M', Buffer.from(JSON.stringify(manifest))), section('L', tar), Buffer.from('D')])
  const digest = createHash('sha256').update(body).digest('hex')
  const trailer = Buffer.from(JSON.stringify({ sha256: digest }))
  const len = Buffer.alloc(4)
  len.writeUInt32BE(trailer.length)
  const whole = Buffer.concat([body, len, trailer, Buffer.alloc(4)])
  return spawnSync('zstd', ['-q', '-c', '--check'], { input: whole, maxBuffer: 1 << 26 }).stdout
}

describe('snapshot export and import', () => {
  let server
  let other
  before(async () => {
    server = await startServer()
    // A second server with a data directory of its own (the same base images).
    other = await startServer()
  })
  after(async () => {
    if (server) await stopAndCheck(server)
    if (other) await stopAndCheck(other)
  })

  test('export → delete → import → start: the files intact; and the archive starts on another server', async (t) => {
    const k = tracker(t, server, Sandbox)
    const dir = scratch(t)
    const { lower, top, name } = await layeredSnapshot(k)
    const file = join(dir, 'snap.sbsnap')
    const exported = await Sandbox.exportSnapshot(name, file, k.opts())
    assert.equal(exported.path, file)
    assert.equal(exported.sizeBytes, statSync(file).size)
    assert.ok(!existsSync(`${file}.partial`))

    // Gone from this server, layers and all.
    assert.equal(await Sandbox.deleteSnapshot(top.snapshotId, k.opts()), true)
    assert.equal(await Sandbox.deleteSnapshot(lower.snapshotId, k.opts()), true)
    k.forget(top)
    k.forget(lower)
    const layers = readdirSync(join(layersRoot(server), 'layers')).filter((n) => !n.startsWith('.'))
    assert.deepEqual(layers, [], 'the layers went with the snapshots')

    const imported = k.snap(await Sandbox.importSnapshot(file, k.opts()))
    assert.notEqual(imported.snapshotId, top.snapshotId, 'a new ID')
    assert.deepEqual(imported.names, [name], 'its name, free here again')
    assert.deepEqual(imported.metadata, { origin: 'archive-test' })
    assert.equal(imported.mode, 'filesystem')
    assert.equal(imported.sandboxId, 'imported')
    const all = await Sandbox.listSnapshots({ ...k.opts(), name }).nextItems()
    assert.deepEqual(all.map((s) => s.snapshotId), [imported.snapshotId], 'listed as imported')
    const sbx = await k.create(name)
    await checkFiles(sbx)

    // Another server, another data directory: it starts there too.
    const o = tracker(t, other, Sandbox)
    const there = o.snap(await Sandbox.importSnapshot(file, o.opts()))
    assert.deepEqual(there.names, [name])
    await checkFiles(await o.create(there.snapshotId))

    // Imported again where its name is taken: imported without it.
    const again = o.snap(await Sandbox.importSnapshot(file, o.opts()))
    assert.deepEqual(again.names ?? [], [])
    assert.deepEqual(staging(server), [])
    assert.deepEqual(staging(other), [])
  })

  test('the CLI: snapshots export ID --output FILE, snapshots import FILE --json', async (t) => {
    const k = tracker(t, server, Sandbox)
    const dir = scratch(t)
    const sbx = await k.create('base')
    await run(sbx, 'echo cli > /home/user/cli.txt')
    const snap = k.snap(await sbx.createSnapshot({ metadata: { via: 'cli' } }))
    const file = join(dir, 'cli.sbsnap')
    const ex = cli(server, ['snapshots', 'export', snap.snapshotId, '--output', file])
    assert.equal(ex.status, 0, ex.stderr)
    assert.ok(statSync(file).size > 0)
    const im = cli(other, ['snapshots', 'import', file, '--json'])
    assert.equal(im.status, 0, im.stderr)
    const obj = JSON.parse(im.stdout)
    assert.match(obj.snapshotID, /^[a-z0-9]{20}:default$/)
    assert.deepEqual(obj.metadata, { via: 'cli' })
    assert.equal(obj.mode, 'filesystem')
    assert.equal(obj.sandboxID, 'imported')
    const o = tracker(t, other, Sandbox)
    o.snap({ snapshotId: obj.snapshotID })
    assert.ok((await listed(other)).includes(obj.snapshotID))
    const plain = cli(other, ['snapshots', 'import', file])
    assert.equal(plain.status, 0, plain.stderr)
    const id = plain.stdout.trim()
    o.snap({ snapshotId: id })
    assert.match(id, /^[a-z0-9]{20}:default$/)
    const copy = await o.create(id)
    assert.equal(await copy.files.read('/home/user/cli.txt'), 'cli\n')
    // Not there: the CLI says so and fails.
    const missing = cli(server, ['snapshots', 'export', 'no-such-snapshot', '--output', join(dir, 'x')])
    assert.notEqual(missing.status, 0)
    assert.match(missing.stderr, /not found/i)
    assert.ok(!existsSync(join(dir, 'x')) && !existsSync(join(dir, 'x.partial')))
  })

  test('a truncated, a bit-flipped and a foreign file are refused, naming why, and leave nothing', async (t) => {
    const k = tracker(t, server, Sandbox)
    const dir = scratch(t)
    const sbx = await k.create('base')
    // Incompressible content: the archive is large enough to cut and flip anywhere.
    await run(sbx, 'head -c 4000000 /dev/urandom > /home/user/noise')
    const snap = k.snap(await sbx.createSnapshot())
    const file = join(dir, 'good.sbsnap')
    await Sandbox.exportSnapshot(snap.snapshotId, file, k.opts())
    const good = readFileSync(file)
    const before = await listed(server)

    const refused = async (bytes, pattern, label) => {
      const bad = join(dir, `${label}.sbsnap`)
      writeFileSync(bad, bytes)
      await assert.rejects(Sandbox.importSnapshot(bad, k.opts()), (e) => {
        assert.ok(e instanceof SandboxError, `${label}: ${e}`)
        assert.match(e.message, pattern, label)
        assert.match(e.message, /^400/, label)
        return true
      })
      assert.deepEqual(await listed(server), before, `${label}: no new snapshot`)
      assert.deepEqual(staging(server), [], `${label}: staging is empty`)
    }
    await refused(good.subarray(0, Math.floor(good.length * 0.6)), /truncated/, 'truncated')
    await refused(good.subarray(0, good.length - 3), /truncated|corrupted/, 'end cut')
    const flipped = Buffer.from(good)
    flipped[Math.floor(flipped.length / 2)] ^= 0x04
    await refused(flipped, /corrupted/, 'bit-flipped')
    await refused(Buffer.from('just some text, not an archive\n'), /not a sandbank snapshot archive/, 'foreign')
    await refused(Buffer.from(spawnSync('zstd', ['-c'], { input: 'other zstd data' }).stdout), /not a sandbank snapshot archive/, 'foreign zstd')

    // A well-formed frame whose content was changed before it was compressed: zstd's checksum
    // holds, the archive's own digest does not.
    const plain = Buffer.from(spawnSync('zstd', ['-d', '-c', file], { maxBuffer: 1 << 30 }).stdout)
    const changed = Buffer.from(plain)
    changed[Math.floor(changed.length / 2)] ^= 0x01
    await refused(spawnSync('zstd', ['-q', '-c', '--check'], { input: changed, maxBuffer: 1 << 30 }).stdout, /content digest mismatch/, 'digest')
    // A well-formed archive (right digest) whose layer holds a block device: refused by name.
    await refused(craftedArchive(plain, dir), /device node \/root\/disk/, 'device node')

    // The CLI says the same, with a failing status.
    const bad = join(dir, 'cut.sbsnap')
    writeFileSync(bad, good.subarray(0, 1000))
    const r = cli(server, ['snapshots', 'import', bad])
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /truncated/)
    assert.deepEqual(await listed(server), before)
    // And the good one still imports.
    k.snap(await Sandbox.importSnapshot(file, k.opts()))
  })
})

describe('a server killed with SIGKILL during an import', () => {
  test('its restart leaves nothing of it: no snapshot, no layer, staging empty', async (t) => {
    const dir = scratch(t)
    const { first, next: restart } = await serverGenerations(t)
    const k = tracker(t, first, Sandbox)
    const sbx = await k.create('base')
    await run(sbx, 'head -c 64000000 /dev/urandom > /home/user/noise')
    const snap = await sbx.createSnapshot()
    const file = join(dir, 'big.sbsnap')
    await Sandbox.exportSnapshot(snap.snapshotId, file, k.opts())
    await k.kill(sbx)
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, k.opts()), true)
    const archive = readFileSync(file)

    // An upload that sends half the archive, then waits: the server is unpacking it.
    const url = new URL('/snapshots/import', first.url)
    const req = request(url, { method: 'POST', headers: { 'x-api-key': first.apiKey, 'content-type': 'application/zstd' } })
    const answered = new Promise((resolve) => {
      req.on('response', () => resolve('answered'))
      req.on('error', () => resolve(null))
    })
    req.write(archive.subarray(0, Math.floor(archive.length / 2)))
    await eventually(() => assert.ok(staging(first).length > 0, 'the import is staged'), { timeoutMs: 20_000, intervalMs: 20 })
    first.proc.kill('SIGKILL')
    await first.stop()
    first.stopped = true
    assert.equal(await answered, null, 'the request got no answer')
    req.destroy()

    const second = await restart()
    assert.deepEqual(staging(second), [], 'staging emptied at start')
    assert.deepEqual(await listed(second), [], 'no snapshot was published')
    const layers = readdirSync(join(layersRoot(second), 'layers')).filter((n) => !n.startsWith('.'))
    assert.deepEqual(layers, [], 'no layer left')
    // And the whole archive imports on the restarted server.
    const back = await Sandbox.importSnapshot(file, second.novita())
    assert.equal(await Sandbox.deleteSnapshot(back.snapshotId, second.novita()), true)
  })
})
