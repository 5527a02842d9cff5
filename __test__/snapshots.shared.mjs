// The snapshot suite, written once and run through both published SDKs: `snapshots.test.mjs`
// (novita-sandbox) and `snapshots-e2b.test.mjs` (e2b). Both SDKs share the API shape used here
// (`Sandbox.create(template, opts)`, `createSnapshot`, `listSnapshots`, `deleteSnapshot`).
// Not a test file itself: it only defines tests when a test file calls `snapshotSuite`.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { startServer, stopAndCheck, assertNoLeftovers, rejectsWith, eventually, overlayLowers, layersRoot, tracker } from './helpers.mjs'

export const SNAPSHOT_ID = /^[a-z0-9]{20}:default$/

/**
 * @param {object} sdk
 * @param {string} sdk.label           'novita' | 'e2b'
 * @param {any} sdk.Sandbox            the SDK's Sandbox class
 * @param {any} sdk.SandboxError       the SDK's base error class
 * @param {boolean} sdk.canName        whether `createSnapshot({ name })` exists (E2B)
 */
export function snapshotSuite({ label, Sandbox, SandboxError, canName }) {
  let server
  before(async () => {
    server = await startServer()
  })
  after(async () => {
    if (server) await stopAndCheck(server)
  })
  const opts = (extra = {}) => server[label === 'e2b' ? 'e2b' : 'novita'](extra)

  const track = (t) => tracker(t, server, Sandbox, opts)

  /** Snapshot layer directories on disk (`<data>/layers/<id>`), and what `.staging` holds. */
  const layerDirs = () => readdirSync(join(layersRoot(server), 'layers')).filter((n) => !n.startsWith('.')).sort()
  const stagingLeft = () => {
    const st = join(layersRoot(server), 'layers', '.staging')
    return existsSync(st) ? readdirSync(st) : []
  }
  const bare = (id) => id.replace(/:default$/, '')
  /** The raw API's view of the snapshots (all pages), for the fields the SDKs drop. */
  async function rawList(query = '') {
    const out = []
    let token = ''
    for (;;) {
      const r = await server.fetch(`/snapshots?limit=100${query}${token ? `&nextToken=${encodeURIComponent(token)}` : ''}`)
      assert.equal(r.status, 200)
      out.push(...(await r.json()))
      token = r.headers.get('x-next-token')
      if (!token) return out
    }
  }
  async function allPages(paginator) {
    const out = []
    while (paginator.hasNext) out.push(...(await paginator.nextItems()))
    return out.map((s) => s.snapshotId)
  }
  const run = async (sbx, cmd, extra = {}) => {
    const r = await sbx.commands.run(cmd, { timeoutMs: 60_000, ...extra })
    assert.equal(r.exitCode, 0, `${cmd}: ${r.stderr}`)
    return r.stdout
  }

  describe(`${label}: snapshots`, () => {
    test('the product docs flow: create, write, snapshot (both ways), start from it, origin carries on', async (t) => {
      const k = track(t)
      const sandbox = await k.create()
      const infoBefore = await sandbox.getInfo()

      // A command started before the snapshot and still running during and after it.
      const lines = []
      const bg = await sandbox.commands.run('for i in $(seq 1 30); do echo tick $i; sleep 0.05; done', {
        background: true,
        onStdout: (d) => lines.push({ at: performance.now(), d }),
      })
      await sandbox.commands.run('echo ready > /tmp/status.txt')
      await eventually(() => assert.ok(lines.length >= 2, 'the background command prints'))

      const snapshot = k.snap(await sandbox.createSnapshot())
      const snappedAt = performance.now()
      assert.match(snapshot.snapshotId, SNAPSHOT_ID)
      const byId = k.snap(await Sandbox.createSnapshot(sandbox.sandboxId, opts()))
      assert.match(byId.snapshotId, SNAPSHOT_ID)
      assert.notEqual(byId.snapshotId, snapshot.snapshotId)

      // The origin carried on: same ID, same end time, the background command ran to the end
      // with no line lost, and printed after the snapshot.
      const done = await bg.wait()
      assert.equal(done.exitCode, 0)
      const ticks = done.stdout.trim().split('\n')
      assert.deepEqual(ticks, Array.from({ length: 30 }, (_, i) => `tick ${i + 1}`))
      assert.ok(lines.some((l) => l.at > snappedAt), 'output arrived after the snapshot')
      const infoAfter = await sandbox.getInfo()
      assert.equal(infoAfter.sandboxId, sandbox.sandboxId)
      assert.equal(infoAfter.state, 'running')
      assert.equal(infoAfter.endAt.getTime(), infoBefore.endAt.getTime(), 'the end time did not move')
      assert.equal(await run(sandbox, 'echo still here'), 'still here\n')

      // Start from it: with the tag, and without.
      const newSandbox = await k.create(snapshot.snapshotId)
      assert.notEqual(newSandbox.sandboxId, sandbox.sandboxId)
      const result = await newSandbox.commands.run('cat /tmp/status.txt')
      assert.equal(result.stdout, 'ready\n')
      assert.equal((await newSandbox.getInfo()).templateId, bare(snapshot.snapshotId))
      const untagged = await k.create(bare(byId.snapshotId))
      assert.equal(await run(untagged, 'cat /tmp/status.txt'), 'ready\n')
      assert.equal((await untagged.getInfo()).templateId, bare(byId.snapshotId))

      // What the raw API says about it (fields the SDKs drop).
      const [raw] = (await rawList(`&sandboxID=${sandbox.sandboxId}`)).filter((s) => s.snapshotID === snapshot.snapshotId)
      assert.ok(raw, 'listed')
      assert.deepEqual(raw.names, [])
      assert.equal(raw.sandboxID, sandbox.sandboxId)
      assert.equal(raw.parentSnapshotID ?? null, null, 'no parent')
      assert.equal(raw.mode, 'full', 'with memory by default: the test setup provides CRIU')
      assert.ok(raw.sizeBytes >= 6 && raw.sizeBytes < 1 << 20, `sizeBytes ${raw.sizeBytes}`)
      assert.ok(Math.abs(Date.parse(raw.createdAt) - Date.now()) < 60_000, `createdAt ${raw.createdAt}`)

      // Killing the origin does not delete the snapshot.
      await sandbox.kill()
      const again = await k.create(snapshot.snapshotId)
      assert.equal(await run(again, 'cat /tmp/status.txt'), 'ready\n')
      // A snapshot of an unknown sandbox is a not-found error.
      await assert.rejects(Sandbox.createSnapshot(sandbox.sandboxId, opts()), (e) => /not found|doesn't exist/i.test(e.message))
    })

    if (canName) {
      test('a named snapshot: names, and the name works as a template', async (t) => {
        const k = track(t)
        const sbx = await k.create()
        await run(sbx, 'echo named > /home/user/n.txt')
        const name = `snap-${Date.now().toString(36)}`
        const named = k.snap(await sbx.createSnapshot({ name }))
        assert.match(named.snapshotId, SNAPSHOT_ID)
        assert.deepEqual(named.names, [name])
        const fromName = await k.create(name)
        assert.equal(await run(fromName, 'cat /home/user/n.txt'), 'named\n')
        assert.equal((await fromName.getInfo()).templateId, bare(named.snapshotId))
        const listed = await Sandbox.listSnapshots({ ...opts(), sandboxId: sbx.sandboxId }).nextItems()
        assert.deepEqual(listed.map((s) => [s.snapshotId, s.names]), [[named.snapshotId, [name]]])
        // The same name again: a clash (409) while the snapshot that has it lives; once it is
        // deleted, the name is free.
        await run(sbx, 'echo named-2 > /home/user/n.txt')
        await assert.rejects(sbx.createSnapshot({ name }), (e) => /409/.test(e.message) && e.message.includes(`"${name}"`))
        const other = await sbx.createSnapshot()
        assert.equal(await Sandbox.deleteSnapshot(other.snapshotId, opts()), true)
        await Sandbox.kill(fromName.sandboxId, opts())
        assert.equal(await Sandbox.deleteSnapshot(name, opts()), true)
        const newer = k.snap(await sbx.createSnapshot({ name }))
        assert.deepEqual(newer.names, [name])
        const fromName2 = await k.create(name)
        assert.equal(await run(fromName2, 'cat /home/user/n.txt'), 'named-2\n')
        // An invalid name is refused.
        await assert.rejects(sbx.createSnapshot({ name: 'bad/name' }), (e) => /400|invalid/i.test(e.message))
        // A template's name would be shadowed by the template: refused.
        await assert.rejects(sbx.createSnapshot({ name: 'base' }), (e) => /a template has that name/.test(e.message))
        assert.equal(await Sandbox.deleteSnapshot('base', opts()), false, 'base is no snapshot')
      })
    }

    test('list: one sandbox, all, filtered; page by page with limit 1', async (t) => {
      const k = track(t)
      const [a, b] = await Promise.all([k.create(), k.create()])
      const a1 = k.snap(await a.createSnapshot())
      const b1 = k.snap(await b.createSnapshot())
      const a2 = k.snap(await Sandbox.createSnapshot(a.sandboxId, opts()))
      const newestFirst = [a2, b1, a1].map((s) => s.snapshotId)

      assert.deepEqual(await allPages(a.listSnapshots()), [a2.snapshotId, a1.snapshotId])
      assert.deepEqual(await allPages(b.listSnapshots({ limit: 20 })), [b1.snapshotId])
      assert.deepEqual(await allPages(Sandbox.listSnapshots(opts())), newestFirst)
      assert.deepEqual(await allPages(Sandbox.listSnapshots({ ...opts(), sandboxId: a.sandboxId, limit: 20 })), [a2.snapshotId, a1.snapshotId])
      assert.deepEqual(await allPages(Sandbox.listSnapshots({ ...opts(), sandboxId: 'nosuchsandbox0000000' })), [])

      // Page by page.
      const p = Sandbox.listSnapshots({ ...opts(), limit: 1 })
      assert.equal(p.hasNext, true)
      const pages = []
      while (p.hasNext) {
        const items = await p.nextItems()
        assert.equal(items.length, 1, `page ${pages.length + 1} holds one item`)
        pages.push(items[0].snapshotId)
        if (pages.length < 3) assert.ok(p.nextToken, 'a next token while more remain')
      }
      assert.deepEqual(pages, newestFirst)
      assert.equal(p.hasNext, false)
      await assert.rejects(p.nextItems(), /No more items to fetch/)

      // The cursor is stable under inserts and deletes between pages.
      const q = Sandbox.listSnapshots({ ...opts(), limit: 1 })
      assert.deepEqual((await q.nextItems()).map((s) => s.snapshotId), [a2.snapshotId])
      const late = k.snap(await b.createSnapshot()) // newer than the cursor: not in the later pages
      assert.equal(await Sandbox.deleteSnapshot(b1.snapshotId, opts()), true) // not yet seen: gone
      const rest = []
      while (q.hasNext) rest.push(...(await q.nextItems()).map((s) => s.snapshotId))
      assert.deepEqual(rest, [a1.snapshotId])
      assert.deepEqual(await allPages(Sandbox.listSnapshots(opts())), [late.snapshotId, a2.snapshotId, a1.snapshotId])

      // A garbage token is a 400 JSON error.
      const r = await server.fetch('/snapshots?nextToken=not-a-token')
      assert.equal(r.status, 400)
      assert.equal((await r.json()).code, 400)
      await assert.rejects(allPages(Sandbox.listSnapshots({ ...opts(), nextToken: 'not-a-token' })), (e) => e instanceof SandboxError || /400/.test(e.message))
    })

    test('delete: refused while in use (naming the sandbox), then true, then false', async (t) => {
      const k = track(t)
      const origin = await k.create()
      await run(origin, 'echo ready > /tmp/status.txt')
      const { snapshotId } = await origin.createSnapshot()
      const newSandbox = await k.create(snapshotId)
      assert.ok(layerDirs().includes(bare(snapshotId)), 'its layer is on disk')

      const err = await rejectsWith(Sandbox.deleteSnapshot(snapshotId, opts()), SandboxError)
      assert.match(err.message, /^400: /)
      assert.ok(err.message.includes(newSandbox.sandboxId), err.message)
      assert.equal(await run(newSandbox, 'cat /tmp/status.txt'), 'ready\n', 'unaffected by the refused delete')

      await newSandbox.kill()
      assert.equal(await Sandbox.deleteSnapshot(snapshotId, opts()), true)
      assert.equal(await Sandbox.deleteSnapshot(snapshotId, opts()), false)
      assert.equal(await Sandbox.deleteSnapshot(bare(snapshotId), opts()), false)
      assert.equal(await Sandbox.deleteSnapshot('nosuchsnapshot000000:default', opts()), false)
      await assert.rejects(Sandbox.create(snapshotId, opts()))
      assert.deepEqual(await allPages(origin.listSnapshots()), [])
      assert.ok(!layerDirs().includes(bare(snapshotId)), 'its layer is removed')
      // The origin is unaffected by it all.
      assert.equal(await run(origin, 'cat /tmp/status.txt'), 'ready\n')
    })

    test('a chain: a snapshot of a sandbox made from a snapshot keeps both generations', async (t) => {
      const k = track(t)
      const g1 = await k.create()
      await run(g1, 'echo one > /home/user/gen1.txt && echo v1 > /tmp/shared && echo bye > /home/user/gone.txt')
      const s1 = await g1.createSnapshot()
      const g2 = await k.create(s1.snapshotId)
      await run(g2, 'cat /home/user/gen1.txt && echo two > /home/user/gen2.txt && echo v2 > /tmp/shared && rm /home/user/gone.txt')
      const s2 = await g2.createSnapshot()
      const [raw2] = await rawList(`&sandboxID=${g2.sandboxId}`)
      assert.equal(raw2.parentSnapshotID, s1.snapshotId)
      // (On the btrfs store the size is its quota group's: one 16 KB tree block for a few small files.)
      assert.ok(raw2.sizeBytes < 64 << 10, `only the new layer counts: ${raw2.sizeBytes}`)

      const g3 = await k.create(s2.snapshotId)
      assert.equal(await run(g3, 'cat /home/user/gen1.txt /home/user/gen2.txt /tmp/shared; test ! -e /home/user/gone.txt && echo gone'), 'one\ntwo\nv2\ngone\n')

      // The older generation can go while the newer one needs its layer: the layer stays.
      await g2.kill()
      assert.equal(await Sandbox.deleteSnapshot(s1.snapshotId, opts()), true)
      assert.ok(layerDirs().includes(bare(s1.snapshotId)), 'the deleted parent layer is kept for its child')
      const g4 = await k.create(s2.snapshotId)
      assert.equal(await run(g4, 'cat /home/user/gen1.txt /home/user/gen2.txt'), 'one\ntwo\n')

      await g3.kill()
      await g4.kill()
      assert.equal(await Sandbox.deleteSnapshot(s2.snapshotId, opts()), true)
      assert.deepEqual(layerDirs(), [], 'every layer is collected after the last snapshot goes')
    })

    test('a long chain (20 generations) is flattened and stays faithful', async (t) => {
      const k = track(t)
      let sbx = await k.create()
      const snaps = []
      const N = 20
      for (let i = 1; i <= N; i++) {
        // Each generation adds a file, deletes the one from two generations back, rewrites a
        // directory wholesale (opaque dir) and appends to a log.
        await run(
          sbx,
          `echo g${i} > /home/user/g${i}; rm -f /home/user/g${i - 2}; rm -rf /home/user/dir; mkdir /home/user/dir; echo ${i} > /home/user/dir/only${i}; echo ${i} >> /home/user/log` +
            (i === 1 ? '; rm /home/user/.profile' : ''),
        )
        const s = k.snap(await sbx.createSnapshot())
        snaps.push(s)
        await sbx.kill()
        sbx = await k.create(s.snapshotId)
      }
      const out = await run(sbx, 'cd /home/user && ls -A | sort | tr "\\n" " "; echo; ls dir; cat log | tr "\\n" " "')
      const [files, dir, log] = out.split('\n')
      assert.equal(files.trim(), `.bash_logout .bashrc dir g${N - 1} g${N} log`)
      assert.equal(dir, `only${N}`)
      assert.equal(log.trim(), Array.from({ length: N }, (_, i) => i + 1).join(' '))
      // Its overlays stack at most 16 snapshot layers over what a fresh sandbox has.
      const fresh = await k.create()
      const layers = overlayLowers(sbx.sandboxId) - overlayLowers(fresh.sandboxId)
      assert.ok(layers >= 1 && layers <= 16, `a sandbox stacks ${layers} snapshot layers`)
    })

    test('what a snapshot captures: files, deletions, modes, owners, links, empty dirs, sparse 1 GB, /usr/local, /tmp, /home/user', async (t) => {
      const k = track(t)
      const origin = await k.create()
      assert.equal(await run(origin, 'ls -A /home/user | sort | tr "\\n" " "'), '.bash_logout .bashrc .profile ')
      // As the default user (uid 1000).
      await run(
        origin,
        [
          'cd /home/user',
          'echo new > new.txt',
          'echo appended >> .bashrc',
          'rm .profile',
          'mkdir -p empty/nested',
          'ln -s new.txt link-to-new && ln -s /no/such/target dangling',
          'echo linked > hard1 && ln hard1 hard2',
          'echo in-tmp > /tmp/t.txt && chmod 600 /tmp/t.txt',
          'mkfifo /tmp/fifo',
          'python3 -c "import os; os.setxattr(\'new.txt\', \'user.note\', b\'kept\')"',
        ].join(' && '),
      )
      // As root.
      await run(
        origin,
        [
          'cd /home/user',
          'echo secret > perm.txt && chown 1234:2345 perm.txt && chmod 4750 perm.txt',
          'truncate -s 1G sparse.img && dd if=/dev/urandom of=sparse.img bs=1M count=1 seek=512 conv=notrunc status=none',
          'mkdir -p /usr/local/bin && printf "#!/bin/sh\\necho tool ran\\n" > /usr/local/bin/sbtool && chmod 755 /usr/local/bin/sbtool',
          'rm -rf /etc/apt && mkdir /etc/apt && echo only > /etc/apt/only',
          'rm -rf /var/spool',
        ].join(' && '),
        { user: 'root' },
      )
      const manifest = [
        'cd /home/user',
        // name, type, mode, owner, size, links, mtime (not for dirs), link target
        'for f in new.txt .bashrc perm.txt empty empty/nested link-to-new dangling hard1 hard2 sparse.img /tmp/t.txt /tmp/fifo /usr/local/bin/sbtool /etc/apt /etc/apt/only; do stat -c "%n|%F|%a|%u:%g|%s|%h|%N" "$f"; done',
        'for f in new.txt .bashrc perm.txt hard1 /tmp/t.txt /usr/local/bin/sbtool /etc/apt/only; do stat -c "%n %Y" "$f"; done',
        'sha256sum new.txt .bashrc perm.txt hard1 /tmp/t.txt /usr/local/bin/sbtool /etc/apt/only',
        'dd if=sparse.img bs=1M skip=512 count=1 status=none | sha256sum',
        'test hard1 -ef hard2 && echo hard-linked',
        'test ! -e .profile && echo profile-deleted',
        'test ! -e /var/spool && echo spool-deleted',
        'ls -A /etc/apt',
        'python3 -c "import os; print(os.getxattr(\'new.txt\', \'user.note\'))"',
        'tail -1 .bashrc',
        'sbtool',
      ].join('; ')
      const want = await run(origin, manifest, { user: 'root' })
      if (process.env.SANDBANK_TEST_VERBOSE) console.log(want)
      assert.match(want, /hard-linked\nprofile-deleted\nspool-deleted\nonly\nb'kept'\nappended\ntool ran\n$/)
      assert.match(want, /sparse\.img\|regular file\|644\|0:0\|1073741824\|/)
      assert.match(want, /perm\.txt\|regular file\|4750\|1234:2345\|7\|/)
      assert.match(want, /new\.txt\|regular file\|644\|1000:1000\|/)

      const snap = k.snap(await origin.createSnapshot())
      const clone = await k.create(snap.snapshotId)
      const got = await run(clone, manifest, { user: 'root' })
      assert.equal(got, want)
      const allocated = Number(await run(clone, 'du -B1 /home/user/sparse.img | cut -f1', { user: 'root' }))
      assert.ok(allocated >= 1 << 20 && allocated < 8 << 20, `the sparse file allocates ${allocated} bytes in the new sandbox`)
      const [raw] = await rawList(`&sandboxID=${origin.sandboxId}`)
      assert.ok(raw.sizeBytes >= 1 << 20 && raw.sizeBytes < 8 << 20, `sizeBytes ${raw.sizeBytes} counts data, not holes`)
      const onDisk = Number(execFileSync('du', ['-s', '-B1', join(layersRoot(server), 'layers', bare(snap.snapshotId))], { encoding: 'utf8' }).split('\t')[0])
      assert.ok(onDisk < 16 << 20, `the layer takes ${onDisk} bytes on disk`)
      // The new sandbox's own changes stay its own.
      await run(clone, 'echo clone > /home/user/new.txt')
      assert.equal(await run(origin, 'cat /home/user/new.txt'), 'new\n')
    })

    test('one instant: files written while the snapshot is taken are consistent with each other', async (t) => {
      const k = track(t)
      const origin = await k.create()
      // A writer bumps a counter in /home/user/w/a, then in /home/user/w/z (copied later, in
      // name order), in a tight loop; plus some bulk so that the copy takes a moment. `1<>`
      // writes in place without truncating, so each file always holds a whole number.
      await run(origin, 'mkdir -p /home/user/w && head -c 20971520 /dev/urandom > /home/user/w/m-bulk && echo 0 > /home/user/w/a && echo 0 > /home/user/w/z')
      // It stops in a copy (another hostname) started from a snapshot with memory: the copy's
      // files then hold what the snapshot took (an iteration cut in two is finished, a and z equal).
      const writer = await origin.commands.run('h0=$(cat /etc/hostname); i=0; while read h </etc/hostname && [ "$h" = "$h0" ] && [ $i -lt 200000 ]; do i=$((i+1)); echo $i 1<>/home/user/w/a; echo $i 1<>/home/user/w/z; done', { background: true })
      await new Promise((r) => setTimeout(r, 300))
      const snaps = []
      for (let i = 0; i < 3; i++) snaps.push(k.snap(await origin.createSnapshot()))
      await writer.kill()
      const seen = []
      for (const s of snaps) {
        const clone = await k.create(s.snapshotId)
        const [a, z] = (await run(clone, 'cat /home/user/w/a /home/user/w/z')).trim().split('\n').map(Number)
        // At any one instant z is a's value or one behind; a copy that was not frozen would
        // read a early and z later (z > a).
        assert.ok(a > 0 && (z === a || z === a - 1), `a=${a} z=${z}: not one instant`)
        seen.push(a)
        await clone.kill()
      }
      assert.ok(seen[0] < seen[1] && seen[1] < seen[2], `the writer ran through the snapshots: ${seen}`)
    })

    test('snapshots survive a server restart', async (t) => {
      const k = track(t)
      const origin = await k.create()
      await run(origin, 'echo durable > /home/user/d.txt')
      const s1 = await origin.createSnapshot()
      const s2 = await Sandbox.createSnapshot(origin.sandboxId, opts())
      const child = await k.create(s1.snapshotId)
      await run(child, 'echo second-gen >> /home/user/d.txt')
      const s3 = await child.createSnapshot()
      const before = await rawList()

      // Stop (SIGTERM) with sandboxes running, start again on the same data dir.
      const dataDir = server.dataDir
      const stopped = await server.stop()
      assert.equal(stopped.code, 0)
      assertNoLeftovers(server)
      server = await startServer({ dataDir })
      server.sandboxIds = new Set([origin.sandboxId, child.sandboxId])

      assert.deepEqual(await rawList(), before, 'the same snapshots, with the same fields')
      assert.deepEqual(await allPages(Sandbox.listSnapshots(opts())), [s3, s2, s1].map((s) => s.snapshotId))
      assert.deepEqual(await allPages(Sandbox.listSnapshots({ ...opts(), sandboxId: origin.sandboxId })), [s2, s1].map((s) => s.snapshotId))
      const a = await k.create(s1.snapshotId)
      const b = await k.create(s3.snapshotId)
      assert.equal(await run(a, 'cat /home/user/d.txt'), 'durable\n')
      assert.equal(await run(b, 'cat /home/user/d.txt'), 'durable\nsecond-gen\n')
      await a.kill()
      await b.kill()
      for (const s of [s3, s2, s1]) assert.equal(await Sandbox.deleteSnapshot(s.snapshotId, opts()), true)
      assert.deepEqual(layerDirs(), [])
      assert.deepEqual(stagingLeft(), [])
    })

    test('afterwards: no layer, no staging leftovers', async () => {
      assert.deepEqual(await rawList(), [])
      assert.deepEqual(layerDirs(), [])
      assert.deepEqual(stagingLeft(), [])
    })
  })
}
