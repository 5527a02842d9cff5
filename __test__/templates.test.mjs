// Template builds through the published e2b SDK's `Template` builder against a real server: the
// steps run in a build sandbox, each one's files a cached layer; a template's sandboxes start
// with what the steps made (files, owners, variables), a rebuild runs only what changed, a start
// command is running in every sandbox of its template, and a failing step or bad input fails
// the build saying which. No step needs the network.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BuildError, Sandbox, Template, waitForPort } from 'e2b'
import { guestProcessesOfServer, startServer, stopAndCheck } from './helpers.mjs'

let server
let ctx
before(async () => {
  server = await startServer()
  // The build's context directory: what COPY steps upload.
  ctx = mkdtempSync(join(tmpdir(), 'sandbank-template-ctx-'))
  mkdirSync(join(ctx, 'folder', 'sub'), { recursive: true })
  writeFileSync(join(ctx, 'folder', 'test.txt'), 'copied content\n')
  writeFileSync(join(ctx, 'folder', 'sub', 'nested.txt'), 'nested\n')
  symlinkSync('test.txt', join(ctx, 'folder', 'link.txt'))
  writeFileSync(join(ctx, 'app.py'), 'print("app")\n')
})
after(async () => {
  if (ctx) rmSync(ctx, { recursive: true, force: true })
  if (server) await stopAndCheck(server)
})

const unique = (prefix) => `${prefix}-${randomBytes(4).toString('hex')}`

async function build(template, name, logs = []) {
  return Template.build(template, name, { ...server.e2b(), onBuildLogs: (l) => logs.push(l.message) })
}

async function sandbox(t, template) {
  const sbx = await Sandbox.create(template, server.e2b())
  server.sandboxIds.add(sbx.sandboxId)
  t.after(() => sbx.kill())
  return sbx
}

const sh = async (sbx, cmd, opts) => (await sbx.commands.run(cmd, opts)).stdout

describe('templates built with e2b\'s Template', () => {
  test('a template\'s sandboxes have what its steps made: files, owners, links, variables', async (t) => {
    const name = unique('steps')
    const template = Template({ fileContextPath: ctx })
      .fromBaseImage()
      .copy('folder', 'data')
      .copy('app.py', 'data/')
      .copy('app.py', '/home/user/data', { user: 'root' })
      .copy('app.py', '/opt/app/app.py', { user: 'root', mode: 0o700 })
      .runCmd('echo built-by-$(whoami) > /home/user/made.txt')
      .runCmd('touch /root/as-root', { user: 'root' })
      .setEnvs({ GREETING: 'hello world' })
      .makeDir('/home/user/dir/sub')
      .makeSymlink('/home/user/made.txt', '/home/user/made.link')
      .rename('/home/user/data/test.txt', '/home/user/data/renamed.txt')
      .remove('/home/user/dir/sub', { recursive: true })
      .setWorkdir('/srv/work')
      .runCmd('pwd > here.txt && echo "$GREETING" >> here.txt')
      .setUser('root')
      .runCmd('whoami > /tmp/who.txt')
    const info = await build(template, name)
    assert.equal(info.name, name)
    assert.deepEqual(info.tags, ['default'])
    assert.ok(info.templateId && info.buildId, JSON.stringify(info))
    assert.equal(await Template.exists(name, server.e2b()), true)

    const sbx = await sandbox(t, name)
    // The last USER and WORKDIR are its commands' defaults, as in the cloud.
    assert.equal(await sh(sbx, 'whoami; pwd'), 'root\n/srv/work\n')
    assert.equal(await sh(sbx, 'whoami; pwd', { user: 'user', cwd: '/home/user' }), 'user\n/home/user\n')
    const home = (cmd) => sh(sbx, cmd, { user: 'user', cwd: '/home/user' })
    assert.equal(await home('cat data/renamed.txt data/sub/nested.txt; readlink data/link.txt'), 'copied content\nnested\ntest.txt\n')
    assert.equal(await home('stat -c "%U %a" data /opt/app/app.py'), 'user 755\nroot 700\n')
    // A file into a directory that is there, with or without a trailing slash.
    assert.equal(await home('cat data/app.py; stat -c %U data/app.py; test -d data && echo dir'), 'print("app")\nroot\ndir\n')
    assert.equal(await home('cat made.txt; readlink made.link; ls dir; echo "$GREETING"'), 'built-by-user\n/home/user/made.txt\nhello world\n')
    assert.equal(await home('sudo test -e /root/as-root && echo there'), 'there\n')
    assert.equal(await home('cat /srv/work/here.txt; stat -c %U /srv/work; cat /tmp/who.txt'), '/srv/work\nhello world\nuser\nroot\n')
    assert.equal(await home('ls -A /tmp'), 'who.txt\n', 'nothing of the COPY steps is left')
  })

  test('setUser makes the user if the image has none; it is the sandboxes\' default user', async (t) => {
    const name = unique('user')
    const logs = []
    await build(Template().fromBaseImage().setUser('guest').runCmd('whoami; pwd'), name, logs)
    assert.ok(logs.includes('guest') && logs.includes('/home/guest'), logs.join('\n'))
    const sbx = await sandbox(t, name)
    assert.equal(await sh(sbx, 'whoami; pwd'), 'guest\n/home/guest\n')
    assert.equal(await sh(sbx, 'whoami', { user: 'user' }), 'user\n')
  })

  test('a rebuild runs only the steps that changed; skipCache runs them all', async (t) => {
    const name = unique('cache')
    const steps = (second) => Template().fromBaseImage().runCmd('date +%s%N > /home/user/one').runCmd(`date +%s%N > /home/user/${second}`)
    const first = []
    await build(steps('two'), name, first)
    assert.ok(!first.some((l) => l.includes('CACHED')), first.join('\n'))
    const before = await sh(await sandbox(t, name), 'cat one two')

    const again = []
    await build(steps('two'), name, again)
    assert.ok(again.some((l) => l.includes('CACHED [1/2]')) && again.some((l) => l.includes('CACHED [2/2]')), again.join('\n'))
    assert.equal(await sh(await sandbox(t, name), 'cat one two'), before, 'the same layers')

    const changed = []
    await build(steps('three'), name, changed)
    assert.ok(changed.some((l) => l.includes('CACHED [1/2]')), changed.join('\n'))
    assert.ok(!changed.some((l) => l.includes('CACHED [2/2]')), changed.join('\n'))
    const third = await sandbox(t, name)
    assert.equal(await sh(third, 'cat one'), before.split('\n')[0] + '\n', 'the first step was not run again')
    assert.equal(await sh(third, 'test -e two || echo no-two; test -e three && echo three'), 'no-two\nthree\n')

    const forced = []
    await build(Template().skipCache().fromBaseImage().runCmd('date +%s%N > /home/user/one').runCmd('date +%s%N > /home/user/two'), name, forced)
    assert.ok(!forced.some((l) => l.includes('CACHED')), forced.join('\n'))
    assert.notEqual(await sh(await sandbox(t, name), 'cat one'), before.split('\n')[0] + '\n', 'run again')
  })

  test('a template from another template; tags name builds', async (t) => {
    const parent = unique('parent')
    await build(Template().fromBaseImage().runCmd('echo from-parent > /home/user/p').setEnvs({ FROM_PARENT: 'yes' }), parent)
    const child = unique('child')
    await build(Template().fromTemplate(parent).runCmd('echo from-child > /home/user/c'), `${child}:v1`)
    // A build from it is no sandbox of it (GET /templates: spawnCount).
    const listed = await (await server.fetch('/templates')).json()
    assert.equal(listed.find((x) => x.aliases[0] === parent)?.spawnCount, 0, JSON.stringify(listed))
    const sbx = await sandbox(t, `${child}:v1`)
    assert.equal(await sh(sbx, 'cat p c; echo $FROM_PARENT'), 'from-parent\nfrom-child\nyes\n')
    await assert.rejects(Sandbox.create(child, server.e2b()), /not found/, 'only the tag v1 was built')

    const assigned = await Template.assignTags(`${child}:v1`, ['stable', 'latest'], server.e2b())
    assert.deepEqual(assigned.tags, ['stable', 'latest'])
    const tags = (await Template.getTags(child, server.e2b())).map((x) => x.tag).sort()
    assert.deepEqual(tags, ['latest', 'stable', 'v1'])
    assert.equal(await sh(await sandbox(t, `${child}:stable`), 'cat c'), 'from-child\n')
    await Template.removeTags(child, ['latest'], server.e2b())
    assert.deepEqual((await Template.getTags(child, server.e2b())).map((x) => x.tag).sort(), ['stable', 'v1'])
    await assert.rejects(Template.assignTags(`${child}:v1`, [':bad tag'], server.e2b()), /tag/)
  })

  test('a start command is running in every sandbox of its template', async (t) => {
    const name = unique('start')
    await build(
      Template()
        .fromBaseImage()
        .setWorkdir('/home/user/site')
        .runCmd('echo served > index.txt')
        .setStartCmd('python3 -m http.server 8000', waitForPort(8000)),
      name,
    )
    for (const sbx of [await sandbox(t, name), await sandbox(t, name)]) {
      assert.equal(await sh(sbx, 'curl -s http://127.0.0.1:8000/index.txt'), 'served\n')
      // Its envd came back from the template's memory with the template's defaults.
      assert.equal(await sh(sbx, 'pwd'), '/home/user/site\n')
    }
  })

  test('without CRIU (files-only template), a start command runs as each sandbox starts, ready before create returns', async (t) => {
    // A server that cannot take memory: its templates keep their files only.
    const plain = await startServer({ env: { SANDBANK_CRIU: '/nonexistent/criu' } })
    const made = []
    t.after(async () => {
      for (const sbx of made) await sbx.kill()
      await stopAndCheck(plain)
    })
    const name = unique('start-files')
    const logs = []
    await Template.build(
      Template().fromBaseImage().setWorkdir('/home/user/site').runCmd('echo served > index.txt').setStartCmd('python3 -m http.server 8000', waitForPort(8000)),
      name,
      { ...plain.e2b(), onBuildLogs: (l) => logs.push(l.message) },
    )
    assert.ok(logs.some((l) => /run the start command when they start/.test(l)), logs.join('\n'))
    for (let i = 0; i < 2; i++) {
      const sbx = await Sandbox.create(name, plain.e2b())
      plain.sandboxIds.add(sbx.sandboxId)
      made.push(sbx)
      // Ready when create returns: no waiting here.
      assert.equal((await sbx.commands.run('curl -s http://127.0.0.1:8000/index.txt')).stdout, 'served\n')
    }
  })

  test('a failing step fails the build with its log; bad input is named; no build sandbox stays', async () => {
    const logs = []
    await assert.rejects(build(Template().fromBaseImage().runCmd('echo about to fail; exit 3'), unique('fails'), logs), (e) => {
      assert.ok(e instanceof BuildError, String(e))
      assert.match(e.message, /failed to run command 'echo about to fail; exit 3': command failed: exit status 3/)
      return true
    })
    assert.ok(logs.includes('about to fail'), logs.join('\n'))
    await assert.rejects(
      build(Template().fromBaseImage().runCmd('whoami', { user: 'root123' }), unique('user')),
      /failed to run command 'whoami': command failed: unauthenticated: invalid username: 'root123'/,
    )
    await assert.rejects(build(Template().fromTemplate('no-such-template').runCmd('true'), unique('from')), /"no-such-template" not found/)
    // Port 1 of loopback: nothing listens there.
    await assert.rejects(build(Template().fromImage('127.0.0.1:1/none:1').runCmd('true'), unique('image')), /"127.0.0.1:1\/none:1": cannot reach the registry 127.0.0.1:1/)
    await assert.rejects(build(Template().fromBaseImage().runCmd('true'), 'Bad Name!'), /400.*"Bad Name!"/)
    // A COPY whose files were never uploaded (the SDK always uploads them: by hand here).
    const headers = { 'x-api-key': server.apiKey, 'content-type': 'application/json' }
    const made = await (await fetch(`${server.url}/v3/templates`, { method: 'POST', headers, body: JSON.stringify({ name: unique('copy') }) })).json()
    const steps = [{ type: 'COPY', args: ['x.txt', 'x.txt', '', ''], force: false, filesHash: 'ab'.repeat(32) }]
    const start = await fetch(`${server.url}/v2/templates/${made.templateID}/builds/${made.buildID}`, { method: 'POST', headers, body: JSON.stringify({ steps, force: false }) })
    assert.equal(start.status, 202)
    let status
    for (let i = 0; i < 100; i++) {
      status = await (await fetch(`${server.url}/templates/${made.templateID}/builds/${made.buildID}/status`, { headers })).json()
      if (status.status !== 'building') break
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(status.status, 'error', JSON.stringify(status))
    assert.deepEqual(status.reason, { message: `COPY x.txt: its files (hash ${'ab'.repeat(32)}) were never uploaded`, step: '1' })
    // Every build sandbox was killed with its build.
    assert.deepEqual(guestProcessesOfServer(server.dataDir), [])
  })
})
