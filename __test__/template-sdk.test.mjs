// sandbank's own `Template` (builder and build API) against e2b's: the same definition serializes
// to the same JSON (file hashes included), Dockerfile and ready commands; on a real server a
// template built through sandbank and through e2b shares its layers, and the sandboxes of both
// have what the steps made. A rebuild is cached, a failing step rejects with a BuildError that
// carries the step, its log and the call site, and bad input is named.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as e2b from 'e2b'
import * as sb from 'sandbank'
import { guestProcessesOfServer, startServer, stopAndCheck } from './helpers.mjs'

const { Template, BuildError, TemplateError, InvalidArgumentError, LogEntry, LogEntryStart, LogEntryEnd, Sandbox } = sb

let ctx
before(() => {
  // A build context as e2b's own tests make one: files, a nested directory, links that resolve
  // (relative, absolute) and one that does not, a file .dockerignore leaves out.
  ctx = mkdtempSync(join(tmpdir(), 'sandbank-template-sdk-'))
  mkdirSync(join(ctx, 'folder', 'sub'), { recursive: true })
  mkdirSync(join(ctx, 'links'))
  writeFileSync(join(ctx, 'folder', 'test.txt'), 'copied content\n')
  writeFileSync(join(ctx, 'folder', 'sub', 'nested.txt'), 'nested\n')
  writeFileSync(join(ctx, 'app.py'), 'print("app")\n')
  writeFileSync(join(ctx, 'debug.log'), 'left out\n')
  writeFileSync(join(ctx, '.dockerignore'), '# logs stay home\n*.log\n')
  symlinkSync('../folder/test.txt', join(ctx, 'links', 'relative'))
  symlinkSync(join(ctx, 'app.py'), join(ctx, 'links', 'absolute'))
  symlinkSync('/nonexistent', join(ctx, 'links', 'broken'))
})
after(() => {
  if (ctx) rmSync(ctx, { recursive: true, force: true })
})

const unique = (prefix) => `${prefix}-${randomBytes(4).toString('hex')}`

/** One definition, through either SDK's exports (`sdk.Template`, `sdk.waitForPort`). */
function everyStep(sdk) {
  return sdk
    .Template({ fileContextPath: ctx })
    .fromBaseImage()
    .copy('folder', 'data')
    .copy(['app.py', 'folder/*'], '/opt/app/', { user: 'root', mode: 0o700, forceUpload: true, gzip: false })
    .copyItems([
      { src: '.', dest: '/all' },
      { src: 'links/*', dest: '/links' },
      { src: 'links/*', dest: '/resolved', resolveSymlinks: true },
    ])
    .runCmd(['echo a', 'echo b'], { user: 'root' })
    .aptInstall(['cowsay', 'vim'], { noInstallRecommends: true, fixMissing: true })
    .pipInstall()
    .pipInstall('numpy', { g: false })
    .npmInstall(['a', 'b'], { g: true, dev: true })
    .bunInstall('x', { dev: true })
    .skipCache()
    .gitClone('https://example.com/r.git', '/app repo', { branch: "it's", depth: 1, user: 'u' })
    .setEnvs({ A: '1', B: 'two words' })
    .setEnvs({})
    .setWorkdir('/srv')
    .setUser('root')
    .makeDir(['/a', '/b c'], { mode: 0o755 })
    .makeSymlink('/a', '/l', { force: true })
    .remove('/x', { recursive: true, force: true })
    .rename('/p', '/q', { force: true })
    .setStartCmd('python3 -m http.server 8000', sdk.waitForPort(8000))
}

const DOCKERFILE = `# syntax=docker/dockerfile:1
FROM e2bdev/base
ARG GREETING=hello
ENV WHO=world
WORKDIR /srv/app
COPY --chown=user:user folder/test.txt app.py ./
RUN echo "$GREETING $WHO" > greeting.txt \\
  && echo done
USER root
CMD ["sleep", "20"]
`

describe('the builder sends what e2b sends', () => {
  test('every step, file hashes included, serializes to the same JSON and Dockerfile', async () => {
    const [theirs, ours] = [everyStep(e2b), everyStep(sb)]
    assert.equal(await Template.toJSON(ours), await e2b.Template.toJSON(theirs))
    assert.equal(await ours.toJSON(false), await theirs.toJSON(false))
    assert.equal(Template.toDockerfile(ours), e2b.Template.toDockerfile(theirs))
    const json = JSON.parse(await Template.toJSON(ours))
    assert.equal(json.steps.filter((s) => s.type === 'COPY').every((s) => /^[0-9a-f]{64}$/.test(s.filesHash)), true)
    // From another template, with registry credentials, and the default context: the directory
    // of the file that calls Template(), as in e2b.
    const more = (sdk) =>
      sdk.Template().skipCache().fromTemplate('base').copy('helpers.mjs', '/h').setReadyCmd(sdk.waitForURL("http://localhost/a b'", 201))
    assert.equal(await Template.toJSON(more(sb)), await e2b.Template.toJSON(more(e2b)))
    const creds = (sdk) => sdk.Template().fromImage('registry.example/img:1', { username: 'u', password: 'p' }).fromTemplate('t')
    assert.equal(await Template.toJSON(creds(sb), false), await e2b.Template.toJSON(creds(e2b), false))
    const aws = (sdk) => sdk.Template().fromAWSRegistry('ecr/img', { accessKeyId: 'a', secretAccessKey: 's', region: 'r' })
    assert.equal(await Template.toJSON(aws(sb)), await e2b.Template.toJSON(aws(e2b)))
    for (const [name, arg] of [['waitForPort', 80], ['waitForURL', 'http://x/?q=1'], ['waitForProcess', 'my daemon'], ['waitForFile', '/tmp/ready'], ['waitForTimeout', 2500]]) {
      assert.equal(sb[name](arg).getCmd(), e2b[name](arg).getCmd(), name)
    }
  })

  test('a Dockerfile, as text or as a path, makes the same steps', async () => {
    writeFileSync(join(ctx, 'Dockerfile'), DOCKERFILE)
    for (const source of [DOCKERFILE, join(ctx, 'Dockerfile')]) {
      const ours = Template({ fileContextPath: ctx }).fromDockerfile(source)
      const theirs = e2b.Template({ fileContextPath: ctx }).fromDockerfile(source)
      assert.equal(await Template.toJSON(ours), await e2b.Template.toJSON(theirs))
    }
    assert.throws(() => Template().fromDockerfile('FROM a\nFROM b\n'), /^Error: Multi-stage Dockerfiles are not supported$/)
    assert.throws(() => Template().fromDockerfile('RUN true\n'), /^Error: Dockerfile must contain a FROM instruction$/)
    assert.throws(() => Template().fromDockerfile('FROM a\nCOPY only\n'), /Dockerfile line 2: COPY needs a source and a destination, got "only"/)
  })

  test('bad input fails as in e2b, naming it', async () => {
    const same = (make, cls) => {
      let mine
      let theirs
      assert.throws(() => make(sb), (e) => ((mine = e), e instanceof cls))
      assert.throws(() => make(e2b), (e) => ((theirs = e), true))
      assert.equal(mine.message, theirs.message)
      assert.equal(mine.name, theirs.name)
      assert.match(mine.stack, /template-sdk\.test\.mjs/, 'the stack is the call site')
    }
    same((sdk) => sdk.Template().fromBaseImage().copy('/etc/passwd', '/x'), TemplateError)
    same((sdk) => sdk.Template().fromBaseImage().copy('folder/../../x', '/x'), TemplateError)
    same((sdk) => sdk.Template().fromBaseImage().copyItems([{ src: 'ok', dest: '/' }, { src: '../up', dest: '/' }]), TemplateError)
    same((sdk) => sdk.Template().fromImage('img', { username: 'u' }), InvalidArgumentError)
    same((sdk) => sdk.Template().fromBaseImage().addMcpServer('exa'), BuildError)
    assert.throws(() => Template.toDockerfile(Template().fromTemplate('base')), /Cannot convert template built from another template/)
    await assert.rejects(Template.toJSON(Template({ fileContextPath: ctx }).fromBaseImage().copy('missing.txt', '/x')), {
      message: `No files found in ${join(ctx, 'missing.txt')}`,
    })
    await assert.rejects(Template.build(Template().fromBaseImage(), ''), (e) => e instanceof TemplateError && e.message === 'Name must be provided')
    await assert.rejects(Template.build(e2b.Template().fromBaseImage(), 'x'), /Expected a template made with sandbank's Template\(\)/)
    // The error classes are e2b's: BuildError is no SandboxError, FileUploadError is a BuildError.
    for (const name of ['BuildError', 'FileUploadError']) {
      const [mine, theirs] = [new sb[name]('m'), new e2b[name]('m')]
      assert.deepEqual([mine.name, mine instanceof sb.BuildError, mine instanceof sb.SandboxError], [theirs.name, theirs instanceof e2b.BuildError, theirs instanceof e2b.SandboxError])
    }
    // The factory and the class are one.
    assert.ok(Template() instanceof Template && new Template() instanceof sb.TemplateBase)
    const { build } = Template
    assert.equal(typeof build, 'function')
  })

  test('log lines and the default logger', () => {
    const e = new LogEntry(new Date(0), 'info', '\u001b[31mred\u001b[0m text')
    assert.equal(e.message, 'red text')
    assert.equal(String(e), '[1970-01-01T00:00:00.000Z] [info] red text')
    assert.ok(new LogEntryStart(new Date(), 'Build started') instanceof LogEntry)
    const printed = []
    const write = process.stdout.write
    process.stdout.write = (s) => printed.push(String(s)) > 0
    try {
      const logger = sb.defaultBuildLogger({ minLevel: 'info' })
      logger(new LogEntryStart(new Date(), 'Build started'))
      logger(new LogEntry(new Date(), 'debug', 'hidden'))
      logger(new LogEntry(new Date(), 'warn', 'shown'))
      logger(new LogEntryEnd(new Date(), 'Build finished'))
    } finally {
      process.stdout.write = write
    }
    assert.equal(printed.length, 1, printed.join(''))
    assert.match(printed[0], /^\d+\.\ds\s* \| .* WARN {2}shown\n$/)
  })
})

describe('builds on a real server', () => {
  let server
  before(async () => {
    server = await startServer()
  })
  after(async () => {
    if (server) await stopAndCheck(server)
  })

  async function sandbox(t, sdk, template) {
    const sbx = await sdk.Sandbox.create(template, server.e2b())
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill())
    return sbx
  }

  /** Builds through `sdk`; resolves to [BuildInfo, log messages]. */
  async function build(sdk, template, name, opts = {}) {
    const logs = []
    const info = await sdk.Template.build(template, name, { ...server.e2b(), onBuildLogs: (l) => logs.push(l), ...opts })
    return [info, logs]
  }

  /** What the probe definition below made, as a sandbox of it sees it. */
  const PROBE = 'whoami; pwd; cat /home/user/data/test.txt /home/user/data/sub/nested.txt; stat -c "%U %a" /opt/app/app.py; echo "$GREETING"; cat /srv/work/ran.txt; readlink /home/user/links/relative; ls /home/user/all'
  const probeTemplate = (sdk) =>
    sdk
      .Template({ fileContextPath: ctx })
      .fromBaseImage()
      .copy('folder', 'data')
      .copy('links/*', 'links')
      .copy('app.py', '/opt/app/app.py', { user: 'root', mode: 0o700 })
      .copy('.', 'all')
      .setEnvs({ GREETING: 'hello world' })
      .setWorkdir('/srv/work')
      .runCmd('echo "ran as $(whoami) in $(pwd)" > ran.txt')
      .setUser('root')

  test('one definition through both SDKs: the same steps, layers and sandboxes', async (t) => {
    const [ours, oursLog] = await build(sb, probeTemplate(sb), unique('sandbank'))
    assert.deepEqual(Object.keys(ours), ['alias', 'name', 'tags', 'templateId', 'buildId'])
    assert.deepEqual(ours.tags, ['default'])
    assert.ok(oursLog[0] instanceof LogEntryStart && oursLog.at(-1) instanceof LogEntryEnd)
    const messages = oursLog.map((l) => l.message)
    assert.ok(messages.includes("Uploaded 'folder'") && messages.includes("Uploaded 'app.py'"), messages.join('\n'))
    assert.ok(!messages.some((m) => m.startsWith('CACHED')), messages.join('\n'))

    // e2b's build of the same definition finds every file and every layer sandbank's made.
    const [theirs, theirLog] = await build(e2b, probeTemplate(e2b), unique('e2b'))
    const their = theirLog.map((l) => l.message)
    for (const src of ['folder', 'links/*', 'app.py', '.']) assert.ok(their.includes(`Skipping upload of '${src}', already cached`), their.join('\n'))
    for (const n of [1, 2, 3, 4, 6, 7, 8]) assert.ok(their.includes(`CACHED [${n}/8]`), their.join('\n'))
    // The SDK's own lines are e2b's (e2b logs uploads as they end: compared as sets).
    const own = (log) => log.filter((m) => /^(Build started|Uploaded '|Skipping upload of '|All file uploads completed|Starting building|Waiting for logs|Build finished)/.test(m)).sort()
    assert.deepEqual(own(messages.map((m) => m.replace(/^Uploaded '(.*)'$/, "Skipping upload of '$1', already cached"))), own(their))

    const [a, b] = [await sandbox(t, sb, ours.name), await sandbox(t, e2b, theirs.name)]
    const seen = (await a.commands.run(PROBE)).stdout
    assert.equal(seen, (await b.commands.run(PROBE)).stdout)
    assert.match(seen, /^root\n\/srv\/work\ncopied content\nnested\nroot 700\nhello world\nran as user in \/srv\/work\n\.\.\/folder\/test\.txt\n/)
    assert.ok(!seen.includes('debug.log') && seen.includes('app.py'), '.dockerignore leaves debug.log out: ' + seen)
  })

  test('a rebuild is cached; skipCache builds again', async (t) => {
    const name = unique('cache')
    const steps = () => Template().fromBaseImage().runCmd('date +%s%N > /home/user/one').runCmd('echo two > /home/user/two')
    await build(sb, steps(), name)
    const first = (await (await sandbox(t, sb, name)).commands.run('cat one')).stdout
    const [, again] = await build(sb, steps(), name)
    const cached = again.map((l) => l.message)
    assert.ok(cached.includes('CACHED [1/2]') && cached.includes('CACHED [2/2]'), cached.join('\n'))
    assert.equal((await (await sandbox(t, sb, name)).commands.run('cat one')).stdout, first)
    const [, forced] = await build(sb, steps(), name, { skipCache: true })
    assert.ok(!forced.some((l) => l.message.startsWith('CACHED')), forced.map((l) => l.message).join('\n'))
    assert.notEqual((await (await sandbox(t, sb, name)).commands.run('cat one')).stdout, first)
  })

  test('a failing step rejects with a BuildError carrying its step, log and call site', async () => {
    const logs = []
    const template = Template().fromBaseImage().runCmd('true').runCmd('echo out-marker; echo err-marker >&2; exit 7')
    const failing = new Error().stack.split('\n')[1].match(/:(\d+):\d+\)?$/)[1] - 1
    await assert.rejects(Template.build(template, unique('fails'), { ...server.e2b(), onBuildLogs: (l) => logs.push(l) }), (e) => {
      assert.ok(e instanceof BuildError && !(e instanceof sb.SandboxError), String(e))
      assert.equal(e.name, 'BuildError')
      assert.match(e.message, /failed to run command 'echo out-marker; echo err-marker >&2; exit 7': command failed: exit status 7/)
      assert.equal(e.step, '2')
      const lines = e.logEntries.map((l) => l.message)
      assert.ok(lines.includes('out-marker') && lines.includes('err-marker'), lines.join('\n'))
      assert.ok(e.logEntries.every((l) => l instanceof LogEntry && l.timestamp instanceof Date))
      assert.match(e.stack, new RegExp(`^BuildError: failed to run command[^\\n]*\\n\\s+at .*template-sdk\\.test\\.mjs:${failing}:`))
      return true
    })
    assert.ok(logs.at(-1) instanceof LogEntryEnd, 'Build finished comes last, also on failure')
    assert.ok(logs.some((l) => l.message === 'out-marker'))
    assert.deepEqual(guestProcessesOfServer(server.dataDir), [], 'no build sandbox stays')
  })

  test('bad input: a missing file and a bad name are named', async () => {
    const missing = Template({ fileContextPath: ctx }).fromBaseImage().copy('no-such-file.txt', '/x')
    const name = unique('missing')
    await assert.rejects(Template.build(missing, name, server.e2b()), {
      name: 'Error',
      message: `No files found in ${join(ctx, 'no-such-file.txt')}`,
    })
    assert.equal(await Template.exists(name, server.e2b()), false, 'files are looked for before the template is made')
    await assert.rejects(Template.build(Template().fromBaseImage(), 'Bad Name!', server.e2b()), (e) => {
      assert.ok(e instanceof BuildError, String(e))
      assert.match(e.message, /^400: Invalid template name "Bad Name!"/)
      return true
    })
    await assert.rejects(Template.build(Template().fromTemplate('no-such-template'), unique('from'), server.e2b()), (e) => {
      assert.ok(e instanceof BuildError && e.step === 'base', String(e))
      assert.match(e.message, /"no-such-template" not found/)
      return true
    })
  })

  test('fromDockerfile: its steps, user, directory and variables are the sandboxes\'', async (t) => {
    // Each COPY names its destination file (a file copied into an existing directory, `./`, is
    // the server's to support).
    const dockerfile = DOCKERFILE.replace('COPY --chown=user:user folder/test.txt app.py ./', 'COPY --chown=user:user folder/test.txt ./test.txt').replace('CMD ["sleep", "20"]\n', '')
    writeFileSync(join(ctx, 'Dockerfile'), dockerfile)
    const name = unique('dockerfile')
    await build(sb, Template({ fileContextPath: ctx }).fromDockerfile(join(ctx, 'Dockerfile')), name)
    const sbx = await sandbox(t, sb, name)
    const r = await sbx.commands.run('whoami; pwd; cat greeting.txt test.txt; stat -c %U test.txt; echo "$WHO $GREETING"')
    assert.equal(r.stdout, 'root\n/srv/app\nhello world\ncopied content\nuser\nworld hello\n')
  })

  test('in the background: status and log by offset; exists; tags', async () => {
    const name = unique('background')
    const info = await Template.buildInBackground(Template().fromBaseImage().runCmd('echo from-background'), `${name}:v1`, server.e2b())
    assert.equal(info.name, `${name}:v1`)
    assert.deepEqual(info.tags, ['v1'])
    const entries = []
    let status
    for (let i = 0; i < 600; i++) {
      status = await Template.getBuildStatus(info, { ...server.e2b(), logsOffset: entries.length })
      entries.push(...status.logEntries)
      if (status.status === 'ready' || status.status === 'error') break
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(status.status, 'ready', JSON.stringify(status))
    assert.equal(status.templateID, info.templateId)
    assert.ok(entries.some((e) => e.message === 'from-background') && entries.every((e) => e instanceof LogEntry), entries.join('\n'))
    assert.equal(await Template.exists(name, server.e2b()), true)
    assert.equal(await Template.aliasExists(unique('nonexistent'), server.e2b()), false)

    assert.deepEqual(await Template.assignTags(`${name}:v1`, 'stable', server.e2b()), { buildId: info.buildId, tags: ['stable'] })
    const tags = await Template.getTags(name, server.e2b())
    assert.deepEqual(tags.map((x) => x.tag).sort(), ['stable', 'v1'])
    assert.ok(tags.every((x) => x.buildId === info.buildId && x.createdAt instanceof Date))
    await Template.removeTags(name, ['stable'], server.e2b())
    assert.deepEqual((await Template.getTags(name, server.e2b())).map((x) => x.tag), ['v1'])
    await assert.rejects(Template.assignTags(`${name}:v1`, ':bad-tag', server.e2b()), (e) => e instanceof TemplateError && /400/.test(e.message))
    await assert.rejects(Template.getTags(unique('nonexistent'), server.e2b()), (e) => e instanceof TemplateError && /^404/.test(e.message))
  })

  test('with nothing configured, a build goes to the local engine like Sandbox.create', async (t) => {
    // SANDBANK_URL names the local engine (the local default's first choice).
    const saved = { url: process.env.SANDBANK_URL, key: process.env.SANDBANK_API_KEY }
    process.env.SANDBANK_URL = server.url
    process.env.SANDBANK_API_KEY = server.apiKey
    t.after(() => {
      for (const [k, v] of [['SANDBANK_URL', saved.url], ['SANDBANK_API_KEY', saved.key]]) {
        if (v === undefined) delete process.env[k]
        else process.env[k] = v
      }
    })
    const name = unique('local')
    const info = await Template.build(Template().fromBaseImage().runCmd('echo local > /home/user/l'), name)
    assert.equal(info.name, name)
    const sbx = await Sandbox.create(name)
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill())
    assert.equal((await sbx.commands.run('cat /home/user/l')).stdout, 'local\n')
  })
})

// The default context is this file's directory (checked above with helpers.mjs).
assert.equal(dirname(fileURLToPath(import.meta.url)).endsWith('__test__'), true)
