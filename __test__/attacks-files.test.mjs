// The files API acts with the rights of the user it names (issue 21, finding 4): a sandbox user
// cannot use it to read or write what that user may not, whatever symlink they planted. Through
// the published novita-sandbox and e2b SDKs against a real server.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox as NovitaSandbox } from 'novita-sandbox'
import { Sandbox as E2bSandbox } from 'e2b'
import { startServer, stopAndCheck } from './helpers.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
})

for (const [sdk, Sandbox, opts] of [
  ['novita-sandbox', NovitaSandbox, () => server.novita()],
  ['e2b', E2bSandbox, () => server.e2b()],
]) {
  describe(`files API with the user's rights (${sdk})`, () => {
    let sbx
    before(async () => {
      sbx = await Sandbox.create({ ...opts(), timeoutMs: 120_000 })
      server.sandboxIds.add(sbx.sandboxId)
    })
    after(async () => {
      if (sbx) await sbx.kill()
    })
    const root = (cmd) => sbx.commands.run(cmd, { user: 'root' })
    /** The SDK's error for a call, as `name: message` (or 'ok'). */
    const outcome = (p) => p.then(() => 'ok', (e) => `${e.name}: ${e.message}`)

    test('a symlink to /etc/shadow does not let `user` overwrite it', async () => {
      const before = (await root('sha256sum /etc/shadow')).stdout
      await sbx.commands.run('ln -sf /etc/shadow /home/user/notes.txt')
      const r = await outcome(sbx.files.write('/home/user/notes.txt', 'root::0:0:::::\n', { user: 'user' }))
      assert.match(r, /denied/i, r)
      assert.equal((await root('sha256sum /etc/shadow')).stdout, before, '/etc/shadow was changed')
    })

    test('a symlinked parent directory does not let `user` create files in /etc', async () => {
      await sbx.commands.run('ln -sfn /etc /home/user/etc-link')
      const r = await outcome(sbx.files.write('/home/user/etc-link/passwd-planted', 'evil::0:0::/:/bin/sh\n', { user: 'user' }))
      assert.match(r, /denied/i, r)
      assert.equal((await root('test -e /etc/passwd-planted && echo there || echo absent')).stdout, 'absent\n')
      const rename = await outcome(sbx.files.rename('/home/user/etc-link/hostname', '/home/user/stolen'))
      assert.match(rename, /denied/i, rename)
      const mkdir = await outcome(sbx.files.makeDir('/home/user/etc-link/newdir'))
      assert.match(mkdir, /denied/i, mkdir)
      const rm = await outcome(sbx.files.remove('/home/user/etc-link/hostname'))
      assert.match(rm, /denied/i, rm)
      assert.equal((await root('test -e /etc/hostname && echo there')).stdout, 'there\n')
    })

    test('`user` cannot read a root-only file; root can; new files belong to who wrote them', async () => {
      await root('echo top secret > /root-only.txt && chmod 600 /root-only.txt')
      const r = await outcome(sbx.files.read('/root-only.txt'))
      assert.match(r, /denied/i, r)
      const list = await outcome(sbx.files.list('/root'))
      assert.match(list, /denied/i, list)
      assert.equal(await sbx.files.read('/root-only.txt', { user: 'root' }), 'top secret\n')
      await sbx.files.write('/tmp/by-user/deep/f.txt', 'u')
      assert.equal((await sbx.commands.run('stat -c %U:%G /tmp/by-user /tmp/by-user/deep /tmp/by-user/deep/f.txt')).stdout, 'user:user\n'.repeat(3))
      await sbx.files.write('/tmp/by-root.txt', 'r', { user: 'root' })
      assert.equal((await sbx.commands.run('stat -c %U /tmp/by-root.txt')).stdout, 'root\n')
      // A read-only place, or a symlink loop, is the caller's error (a 4xx), not the server's (500).
      await sbx.commands.run('ln -sfn /home/user/loop /home/user/loop')
      for (const [path, user, words] of [['/proc/sys/kernel/hostname', 'root', /403.*read-only/i], ['/home/user/loop/x', 'user', /400|symbolic links/i]]) {
        const r = await outcome(sbx.files.write(path, 'x', { user }))
        assert.match(r, words, `${path}: ${r}`)
      }
      // A signed URL carries its user too.
      const url = await sbx.downloadUrl('/root-only.txt', { user: 'user' })
      assert.equal((await fetch(url)).status, 403)
    })
  })
}
