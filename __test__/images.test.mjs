// Builds from OCI images (`fromImage(…)`) through the published e2b SDK against a real server and
// a real registry on loopback holding an image made here (fixtures/oci-registry.mjs): the image
// is pulled, its layers applied with their whiteouts, set up for sandboxes (the user `user`), and
// its sandboxes run on it; a second build finds it pulled; an image the registry has not fails
// the build naming it. No internet.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { BuildError, Sandbox, Template } from 'e2b'
import { startServer, stopAndCheck } from './helpers.mjs'
import { pushTestImage, removePulledImages, startRegistry } from './fixtures/oci-registry.mjs'

let server
let registry
let image
before(async () => {
  registry = await startRegistry()
  image = pushTestImage(registry)
  server = await startServer()
})
after(async () => {
  if (server) await stopAndCheck(server)
  if (registry) {
    removePulledImages(process.env.SANDBANK_IMAGES_DIR ?? server.imagesDir, registry)
    await registry.stop()
  }
})

const unique = (prefix) => `${prefix}-${randomBytes(4).toString('hex')}`

async function build(template, name, logs = []) {
  return Template.build(template, name, { ...server.e2b(), onBuildLogs: (l) => logs.push(l.message) })
}

const sh = async (sbx, cmd, opts) => (await sbx.commands.run(cmd, opts)).stdout

describe('templates from OCI images', () => {
  test('an image pulled from a registry runs, with its layers, whiteouts and variables', async (t) => {
    const name = unique('from-image')
    const logs = []
    await build(Template().fromImage(image).runCmd('echo "built as $(whoami)" > /data/step.txt', { user: 'root' }), name, logs)
    assert.ok(logs.some((l) => l.includes(`Pulling ${image}`)), logs.join('\n'))

    const sbx = await Sandbox.create(name, server.e2b())
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill())
    assert.equal(await sh(sbx, 'cat /data/kept.txt /data/added.txt /data/step.txt'), 'from layer 1\nfrom layer 2\nbuilt as root\n')
    assert.equal(await sh(sbx, 'test -e /data/gone.txt && echo there || echo gone'), 'gone\n', 'the whiteout removed it')
    assert.equal(await sh(sbx, 'echo "$IMAGE_VAR"'), 'set by the image\n')
    // The image had only root: `user` was made for it, and is who commands run as.
    assert.equal(await sh(sbx, 'whoami; id -u; echo "$HOME"; stat -c %U /home/user'), 'user\n1000\n/home/user\nuser\n')
    assert.equal(await sh(sbx, 'whoami', { user: 'root' }), 'root\n')
    // Files made in a sandbox go to its own layer, not to the pulled image.
    await sh(sbx, 'echo mine > /data/kept.txt', { user: 'root' })
    const other = await Sandbox.create(name, server.e2b())
    server.sandboxIds.add(other.sandboxId)
    t.after(() => other.kill())
    assert.equal(await sh(other, 'cat /data/kept.txt'), 'from layer 1\n')
  })

  test('a second build finds the image pulled and its steps cached', async () => {
    const template = () => Template().fromImage(image).runCmd('echo cached > /tmp/c.txt')
    await build(template(), unique('first'))
    const logs = []
    await build(template(), unique('second'), logs)
    assert.ok(logs.some((l) => l.includes('is here already')), logs.join('\n'))
    assert.ok(logs.some((l) => l.startsWith('CACHED')), logs.join('\n'))
  })

  test('a private image is pulled with the registry\'s credentials, and refused without', async (t) => {
    const auth = { username: 'builder', password: `pw-${randomBytes(6).toString('hex')}` }
    const locked = await startRegistry({ auth })
    t.after(async () => {
      removePulledImages(process.env.SANDBANK_IMAGES_DIR ?? server.imagesDir, locked)
      await locked.stop()
    })
    const privateImage = pushTestImage(locked, 'sandbank-test/private', '1', { auth })
    await assert.rejects(build(Template().fromImage(privateImage), unique('anonymous')), (e) => {
      assert.ok(e instanceof BuildError, `${e?.constructor?.name}: ${e}`)
      assert.match(e.message, /refused access/)
      assert.ok(!e.message.includes(auth.password))
      return true
    })
    await assert.rejects(build(Template().fromImage(privateImage, { ...auth, password: 'wrong' }), unique('wrong')), /refused access/)
    const name = unique('private')
    await build(Template().fromImage(privateImage, auth), name)
    const sbx = await Sandbox.create(name, server.e2b())
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill())
    assert.equal(await sh(sbx, 'cat /data/added.txt'), 'from layer 2\n')
  })

  test('an image the registry does not have fails the build, naming it', async () => {
    const missing = `${registry.host}/sandbank-test/none:1`
    await assert.rejects(build(Template().fromImage(missing), unique('missing')), (e) => {
      assert.ok(e instanceof BuildError, `${e?.constructor?.name}: ${e}`)
      assert.match(e.message, /sandbank-test\/none:1/)
      assert.match(e.message, /not found/)
      return true
    })
    await assert.rejects(build(Template().fromImage('Not A Reference'), unique('bad')), (e) => {
      assert.ok(e instanceof BuildError, `${e?.constructor?.name}: ${e}`)
      assert.match(e.message, /"Not A Reference": not an image reference/)
      return true
    })
  })
})
