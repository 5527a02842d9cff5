// A typed example of every call of the `sandbank` surface; `npm run typecheck` runs
// `tsc --strict --noEmit` over it (never executed).
import SandboxDefault, {
  Sandbox,
  SandboxPaginator,
  SnapshotPaginator,
  CommandHandle,
  CommandExitError,
  SandboxError,
  TimeoutError,
  InvalidArgumentError,
  NotEnoughSpaceError,
  NotFoundError,
  FileNotFoundError,
  SandboxNotFoundError,
  AuthenticationError,
  TemplateError,
  RateLimitError,
  FileType,
  FilesystemEventType,
  Pty,
  WatchHandle,
  getSignature,
  version,
  serverBinaryPath,
  type CommandResult,
  type EntryInfo,
  type ProcessInfo,
  type SandboxInfo,
  type SandboxOpts,
  type SnapshotArchiveOpts,
  type SnapshotExportInfo,
  type SnapshotInfo,
  type CreateSnapshotOpts,
  type SnapshotListOpts,
  type WriteInfo,
  type ConnectionOpts,
  type FilesystemEvent,
  type PtyCreateOpts,
  type SandboxBetaCreateOpts,
  type SandboxInfoLifecycle,
  type SandboxLifecycle,
  type SandboxMetrics,
  type SandboxState,
  type SandboxUrlOpts,
  type WatchOpts,
  type SandboxForkOpts,
  type SandboxCloneOpts,
  type SandboxCloneResult,
  type CloneResult,
  Template,
  TemplateBase,
  ReadyCmd,
  waitForPort,
  waitForURL,
  waitForProcess,
  waitForFile,
  waitForTimeout,
  LogEntry,
  LogEntryStart,
  LogEntryEnd,
  defaultBuildLogger,
  BuildError,
  FileUploadError,
  type BuildInfo,
  type BuildOptions,
  type TemplateBuilder,
  type TemplateBuildStatusResponse,
  type TemplateClass,
  type TemplateFinal,
  type TemplateFromImage,
  type TemplateTag,
  type TemplateTagInfo,
  type LogEntryLevel,
} from 'sandbank'
import CodeInterpreterDefault, {
  Sandbox as CodeInterpreter,
  CodeInterpreterSandbox,
  Execution,
  ExecutionError,
  OutputMessage,
  Result,
  type Context,
  type CreateCodeContextOpts,
  type Logs,
  type RunCodeOpts,
  type RunCodeLanguage,
} from 'sandbank/code-interpreter'

async function everything(): Promise<void> {
  const conn: ConnectionOpts = { apiKey: 'k', apiUrl: 'http://127.0.0.1:3000', sandboxUrl: 'http://127.0.0.1:3000', requestTimeoutMs: 30_000, headers: { 'X-Trace': '1' }, domain: 'example.com' }
  const opts: SandboxOpts = { ...conn, metadata: { a: 'b' }, envs: { X: 'y' }, timeoutMs: 60_000, secure: true, allowInternetAccess: true, lifecycle: { onTimeout: 'kill' }, diskSizeMB: 1024 }

  const a: Sandbox = await Sandbox.create()
  const b: Sandbox = await Sandbox.create(opts)
  const c: Sandbox = await Sandbox.create('base', opts)
  const d: Sandbox = await SandboxDefault.create({ template: 'base' })
  const e: Sandbox = await Sandbox.connect(a.sandboxId, { timeoutMs: 10_000, ...conn })
  const same: Sandbox = await e.connect({ timeoutMs: 1_000 })
  const id: string = a.sandboxId
  const domain: string = a.sandboxDomain
  const host: string = a.getHost(8080)
  const token: string | undefined = a.trafficAccessToken

  const killed: boolean = await Sandbox.kill(id, conn)
  const nothing: void = await b.kill()
  await c.kill({ requestTimeoutMs: 5_000 })
  await Sandbox.setTimeout(id, 60_000, conn)
  await d.setTimeout(60_000)
  const info: SandboxInfo = await Sandbox.getInfo(id, conn)
  const info2: SandboxInfo = await a.getInfo()
  const started: Date = info.startedAt
  const mem: number = info2.memoryMB
  const running: boolean = await a.isRunning({ requestTimeoutMs: 1_000 })

  const pager: SandboxPaginator = Sandbox.list({ ...conn, query: { metadata: { a: 'b' }, state: ['running', 'paused'] }, limit: 10, nextToken: 'x' })
  const more: boolean = pager.hasNext
  const next: string | undefined = pager.nextToken
  const page: SandboxInfo[] = await pager.nextItems()
  for await (const s of Sandbox.list()) {
    const sid: string = s.sandboxId
  }

  // Lifecycle: pause, resume (connect), betaCreate with the deprecated autoPause
  const lifecycle: SandboxLifecycle = { onTimeout: 'pause', autoResume: true }
  const paused: Sandbox = await Sandbox.create({ ...conn, lifecycle, allowInternetAccess: false, secure: false })
  const beta: SandboxBetaCreateOpts = { ...conn, autoPause: true }
  const betaSbx: Sandbox = await Sandbox.betaCreate(beta)
  const betaSbx2: Sandbox = await Sandbox.betaCreate('base', { lifecycle: { onTimeout: 'kill' } })
  const didPause: boolean = await Sandbox.pause(id, conn)
  const didPause2: boolean = await paused.pause()
  const didPause3: boolean = await paused.betaPause({ requestTimeoutMs: 5_000 })
  const didPause4: boolean = await Sandbox.betaPause(id)
  const resumed: Sandbox = await paused.connect({ timeoutMs: 60_000 })
  const state: SandboxState = (await resumed.getInfo()).state
  const lc: SandboxInfoLifecycle | undefined = info.lifecycle
  const onTimeout: 'pause' | 'kill' | undefined = lc?.onTimeout
  const autoResume: boolean | undefined = lc?.autoResume
  const internet: boolean | undefined = info.allowInternetAccess
  const full = await Sandbox.getFullInfo(id, conn)
  const envdToken: string | undefined = full.envdAccessToken
  const fullState: SandboxState = full.state

  // Metrics
  const metrics: SandboxMetrics[] = await Sandbox.getMetrics(id, { ...conn, start: new Date(Date.now() - 60_000), end: new Date() })
  const metrics2: SandboxMetrics[] = await a.getMetrics()
  const m0: SandboxMetrics | undefined = metrics[0]
  const when: Date | undefined = m0?.timestamp
  const usage: number = (m0?.cpuUsedPct ?? 0) + (m0?.cpuCount ?? 0) + (m0?.memUsed ?? 0) + (m0?.memTotal ?? 0) + (m0?.diskUsed ?? 0) + (m0?.diskTotal ?? 0)

  // Signed file URLs
  const urlOpts: SandboxUrlOpts = { user: 'root', useSignatureExpiration: 60 }
  const up: string = await a.uploadUrl()
  const up2: string = await a.uploadUrl('/tmp/up.txt', urlOpts)
  const down: string = await a.downloadUrl('/tmp/up.txt', { user: 'user' })
  const sig: { signature: string; expiration: number | null } = await getSignature({ path: '/tmp/a', operation: 'read', user: undefined, expirationInSeconds: 30, envdAccessToken: 't' })

  // PTY
  const ptyOpts: PtyCreateOpts = { cols: 80, rows: 24, onData: (d: Uint8Array) => void d, envs: { A: 'b' }, cwd: '/tmp', user: 'root', timeoutMs: 0, requestTimeoutMs: 5_000 }
  const ptyModule: Pty = a.pty
  const term: CommandHandle = await a.pty.create(ptyOpts)
  await a.pty.sendInput(term.pid, new TextEncoder().encode('ls\n'))
  await a.pty.resize(term.pid, { cols: 100, rows: 40 })
  const term2: CommandHandle = await a.pty.connect(term.pid, { onData: async (d) => void d.byteLength, timeoutMs: 0 })
  await term2.disconnect()
  const ptyKilled: boolean = await a.pty.kill(term.pid, { requestTimeoutMs: 1_000 })

  // Directory watches
  const watchOpts: WatchOpts = { recursive: true, timeoutMs: 0, user: 'root', requestTimeoutMs: 5_000, onExit: (err?: Error) => void err }
  const watch: WatchHandle = await a.files.watchDir('/tmp', (ev: FilesystemEvent) => {
    const n: string = ev.name
    const created: boolean = ev.type === FilesystemEventType.CREATE || ev.type === 'write'
    void [n, created]
  }, watchOpts)
  const watch2: WatchHandle = await a.files.watchDir('/tmp', async () => {})
  await watch.stop()
  await watch2.stop()

  // What the types refuse
  // @ts-expect-error unknown onTimeout
  await Sandbox.create({ lifecycle: { onTimeout: 'hibernate' } })
  // @ts-expect-error pty.create needs cols, rows and onData
  await a.pty.create({ cols: 80 })
  // @ts-expect-error sendInput takes bytes
  await a.pty.sendInput(term.pid, 'ls')
  // @ts-expect-error autoPause is only an option of betaCreate
  await Sandbox.create({ autoPause: true })

  // Snapshots
  const snap: SnapshotInfo = await a.createSnapshot()
  const snap2: SnapshotInfo = await Sandbox.createSnapshot(id, conn)
  const snapId: string = snap.snapshotId
  const created: Date | undefined = snap.createdAt
  const size: number | undefined = snap2.sizeBytes
  const names: string[] | undefined = snap.names
  const parent: string | undefined = snap.parentSnapshotId
  const mode: string | undefined = snap.mode
  const origin: string | undefined = snap.sandboxId
  const fromSnap: Sandbox = await Sandbox.create(snap.snapshotId, conn)
  const snaps: SnapshotPaginator = Sandbox.listSnapshots({ sandboxId: id, limit: 5, nextToken: undefined, ...conn })
  const mine: SnapshotPaginator = a.listSnapshots({ limit: 5 })
  const snapPage: SnapshotInfo[] = await mine.nextItems()
  for await (const s of snaps) {
    const sid: string = s.snapshotId
  }
  const deleted: boolean = await Sandbox.deleteSnapshot(snap.snapshotId, conn)
  // Names, labels, expiry
  const snapOpts: CreateSnapshotOpts = { ...conn, name: 'after-setup', metadata: { branch: 'main' }, ttlMs: 86_400_000 }
  const named: SnapshotInfo = await a.createSnapshot(snapOpts)
  const named2: SnapshotInfo = await Sandbox.createSnapshot(id, { name: 'n2', ...conn })
  const labels: Record<string, string> | undefined = named.metadata
  const expires: Date | undefined = named2.expiresAt
  const fromName: Sandbox = await Sandbox.create('after-setup', conn)
  const listOpts: SnapshotListOpts = { ...conn, name: 'after-setup', metadata: { branch: 'main' }, limit: 10 }
  const labelled: SnapshotInfo[] = await Sandbox.listSnapshots(listOpts).nextItems()
  const mineLabelled: SnapshotPaginator = a.listSnapshots({ metadata: { branch: 'main' }, name: 'n2' })
  // Export and import
  const archiveOpts: SnapshotArchiveOpts = { ...conn, timeoutMs: 600_000 }
  const exported: SnapshotExportInfo = await Sandbox.exportSnapshot('after-setup', '/tmp/after-setup.sbsnap', archiveOpts)
  const archiveBytes: number = exported.sizeBytes
  const archivePath: string = exported.path
  const imported: SnapshotInfo = await Sandbox.importSnapshot('/tmp/after-setup.sbsnap', conn)
  const imported2: SnapshotInfo = await Sandbox.importSnapshot(archivePath)

  // Fork (e2b) and clone (Novita): copies with the sandbox's memory
  const forkOpts: SandboxForkOpts = { ...conn, count: 2, timeoutMs: 60_000 }
  const forks: Array<Sandbox | Error> = await a.fork(forkOpts)
  const forks2: Array<Sandbox | Error> = await Sandbox.fork(id, { count: 1, ...conn })
  const forks3: Array<Sandbox | Error> = await a.fork()
  for (const f of forks) {
    if (f instanceof Sandbox) {
      const fr: CommandResult = await f.commands.run('echo fork')
    } else {
      const why: string = f.message
    }
  }
  class MySandbox extends Sandbox {
    mine(): string {
      return this.sandboxId
    }
  }
  const myForks: Array<MySandbox | Error> = await MySandbox.fork(id)
  const mine0 = myForks[0]
  if (!(mine0 instanceof Error)) mine0.mine()
  const cloneOpts: SandboxCloneOpts = { ...conn, count: 2, strict: true, timeoutMs: 60_000, nodeId: 'n1' }
  const cloned: SandboxCloneResult<Sandbox> = await Sandbox.clone(id, cloneOpts)
  const clonedMine: CloneResult<MySandbox> = await MySandbox.clone(id)
  const clones: MySandbox[] = clonedMine.sandboxes
  const cloneCount: number = cloned.count
  const cloneSnap: string | undefined = cloned.snapshotTemplateId
  // @ts-expect-error count is a number
  await a.fork({ count: '2' })
  // @ts-expect-error clone is a static (Novita's), not a method
  await a.clone()
  // @ts-expect-error a fork's entries may be errors
  const onlySandboxes: Sandbox[] = await a.fork()

  // Commands
  const r: CommandResult = await a.commands.run('echo hi')
  const r2: CommandResult = await a.commands.run('echo hi', {
    envs: { A: 'b' },
    cwd: '/tmp',
    user: 'root',
    timeoutMs: 0,
    requestTimeoutMs: 10_000,
    onStdout: (data: string) => console.log(data),
    onStderr: async (data: string) => console.error(data),
  })
  const exit: number = r.exitCode
  const out: string = r2.stdout
  const h: CommandHandle = await a.commands.run('sleep 10', { background: true, stdin: true })
  const pid: number = h.pid
  const code: number | undefined = h.exitCode
  const sofar: string = h.stdout + h.stderr
  const err: string | undefined = h.error
  await a.commands.sendStdin(h.pid, 'data\n')
  await a.commands.sendStdin(h.pid, new Uint8Array([1, 2]))
  const list: ProcessInfo[] = await a.commands.list()
  const h2: CommandHandle = await a.commands.connect(pid, { onStdout: (s) => void s, timeoutMs: 0 })
  await h2.disconnect()
  const k1: boolean = await h.kill()
  const k2: boolean = await a.commands.kill(pid)
  const waited: CommandResult = await h.wait()
  const either: CommandHandle | CommandResult = await a.commands.run('true', { background: Math.random() > 0.5 })

  // Files
  const text: string = await a.files.read('/tmp/a')
  const text2: string = await a.files.read('/tmp/a', { format: 'text', user: 'root' })
  const bytes: Uint8Array = await a.files.read('/tmp/a', { format: 'bytes' })
  const blob: Blob = await a.files.read('/tmp/a', { format: 'blob' })
  const stream: ReadableStream<Uint8Array> = await a.files.read('/tmp/a', { format: 'stream' })
  const w1: WriteInfo = await a.files.write('/tmp/a', 'text')
  const w2: WriteInfo = await a.files.write('/tmp/b', new ArrayBuffer(8), { user: 'root', useOctetStream: true })
  const w3: WriteInfo = await a.files.write('/tmp/c', new Blob(['x']))
  const w4: WriteInfo = await a.files.write('/tmp/d', stream)
  const ws: WriteInfo[] = await a.files.write([{ path: '/tmp/e', data: 'e' }, { path: '/tmp/f', data: new ArrayBuffer(1) }])
  const ws2: WriteInfo[] = await a.files.writeFiles([{ path: '/tmp/g', data: 'g' }])
  const entries: EntryInfo[] = await a.files.list('/tmp', { depth: 2 })
  const isFile: boolean = entries[0]?.type === FileType.FILE
  const exists: boolean = await a.files.exists('/tmp/a')
  const made: boolean = await a.files.makeDir('/tmp/dir')
  const moved: EntryInfo = await a.files.rename('/tmp/a', '/tmp/a2')
  await a.files.remove('/tmp/a2')
  const st: EntryInfo = await a.files.getInfo('/tmp')
  const modified: Date | undefined = st.modifiedTime

  // Errors
  try {
    await a.commands.run('exit 3')
  } catch (x) {
    if (x instanceof CommandExitError) {
      const n: number = x.exitCode
      const o: string = x.stdout + x.stderr
      const m: string | undefined = x.error
    }
    if (x instanceof SandboxError) console.log(x.name, x.message)
  }
  const errors: Error[] = [
    new SandboxError('x'),
    new TimeoutError('x'),
    new InvalidArgumentError('x'),
    new NotEnoughSpaceError('x'),
    new NotFoundError('x'),
    new FileNotFoundError('x'),
    new SandboxNotFoundError('x'),
    new AuthenticationError('x'),
    new TemplateError('x'),
    new RateLimitError('x'),
    new CommandExitError({ exitCode: 1, stdout: '', stderr: '', error: 'exit status 1' }),
  ]
  const v: string = version() + serverBinaryPath()
  void [envdToken, fullState, betaSbx, betaSbx2, didPause, didPause2, didPause3, didPause4, state, onTimeout, autoResume, internet, metrics2, when, usage, up, up2, down, sig, ptyModule, ptyKilled]
  void [b, e, same, domain, host, token, killed, nothing, running, started, mem, more, next, page, created, size, names, parent, mode, origin, fromSnap, snapId, snapPage, deleted, exit, out, code, sofar, err, list, k1, k2, waited, either, text, text2, bytes, blob, w1, w2, w3, w4, ws, ws2, isFile, exists, made, moved, modified, errors, v]
}

async function templates(conn: ConnectionOpts): Promise<void> {
  const start: TemplateFromImage = Template({ fileContextPath: '.', fileIgnorePatterns: ['*.log'] })
  const builder: TemplateBuilder = start
    .skipCache()
    .fromBaseImage()
    .copy('app', '/app', { user: 'root', mode: 0o755, forceUpload: true, resolveSymlinks: true, gzip: false })
    .copy(['a', new URL('file:///tmp/b')], '/x')
    .copyItems([{ src: 'c', dest: '/c', mode: 0o644 }])
    .runCmd('make')
    .runCmd(['a', 'b'], { user: 'root' })
    .aptInstall('vim', { noInstallRecommends: true })
    .pipInstall(['numpy'], { g: false })
    .npmInstall('tsx', { g: true, dev: false })
    .bunInstall()
    .gitClone('https://example.com/r.git', '/r', { branch: 'main', depth: 1 })
    .setEnvs({ A: '1' })
    .setWorkdir('/app')
    .setUser('user')
    .makeDir(['/d'], { mode: 0o700 })
    .makeSymlink('/d', '/e', { force: true })
    .remove('/tmp/x', { recursive: true, force: true })
    .rename('/a', '/b')
  const others: TemplateBuilder[] = [
    Template().fromImage('python:3', { username: 'u', password: 'p' }),
    Template().fromTemplate('base'),
    Template().fromDockerfile('FROM e2bdev/base'),
    Template().fromPythonImage('3.12'),
    Template().fromNodeImage(),
    Template().fromUbuntuImage('24.04'),
    Template().fromDebianImage(),
    new Template().fromAWSRegistry('img', { accessKeyId: 'a', secretAccessKey: 's', region: 'r' }),
    new TemplateBase().fromGCPRegistry('img', { serviceAccountJSON: {} }),
  ]
  const ready: ReadyCmd[] = [waitForPort(8000), waitForURL('http://localhost', 201), waitForProcess('x'), waitForFile('/f'), waitForTimeout(5000)]
  const final: TemplateFinal = builder.setStartCmd('serve', waitForPort(8000))
  const final2: TemplateFinal = builder.setReadyCmd('true')
  const log = defaultBuildLogger({ minLevel: 'debug' as LogEntryLevel })
  const opts: BuildOptions = { ...conn, alias: 'old-style', cpuCount: 2, memoryMB: 1024, skipCache: true, tags: ['v1'], onBuildLogs: log }
  const info: BuildInfo = await Template.build(final, 'my-template:v1', { ...conn, onBuildLogs: (l: LogEntry) => console.log(l.level, l.message, l.timestamp.getTime()) })
  const old: BuildInfo = await Template.build(builder, opts)
  const bg: BuildInfo = await Template.buildInBackground(builder, 'my-template', conn)
  const status: TemplateBuildStatusResponse = await Template.getBuildStatus(bg, { ...conn, logsOffset: 0 })
  const failedStep: string | undefined = status.reason?.step
  const exists: boolean = (await Template.exists('my-template', conn)) && (await Template.aliasExists('x'))
  const assigned: TemplateTagInfo = await Template.assignTags('my-template:v1', ['stable'], conn)
  await Template.removeTags('my-template', 'stable', conn)
  const tags: TemplateTag[] = await Template.getTags(info.templateId, conn)
  const json: string = await Template.toJSON(builder as TemplateClass, false)
  const dockerfile: string = Template.toDockerfile(builder)
  const markers: LogEntry[] = [new LogEntryStart(new Date(), 'Build started'), new LogEntryEnd(new Date(), 'Build finished')]
  try {
    await Template.build(builder, 'x')
  } catch (e) {
    if (e instanceof FileUploadError) console.log('upload', e.message)
    if (e instanceof BuildError) console.log(e.step, e.logEntries.map((l) => l.message), e.stack)
  }
  void [others, ready, final2, old, failedStep, exists, assigned, tags, json, dockerfile, markers, info.alias, info.name, info.tags, info.buildId]
}

async function codeInterpreter(conn: ConnectionOpts): Promise<void> {
  const sbx: CodeInterpreter = await CodeInterpreter.create({ ...conn, timeoutMs: 60_000 })
  const same: CodeInterpreter = await CodeInterpreterDefault.create('code-interpreter-v1', conn)
  const alias: CodeInterpreterSandbox = same
  const base: Sandbox = sbx // the interpreter's Sandbox is a sandbank Sandbox
  const lang: RunCodeLanguage = 'python'
  const ctxOpts: CreateCodeContextOpts = { cwd: '/tmp', language: lang, requestTimeoutMs: 5000 }
  const ctx: Context = await sbx.createCodeContext(ctxOpts)
  const opts: RunCodeOpts = {
    onStdout: (m: OutputMessage) => console.log(m.line, m.timestamp, m.error),
    onStderr: (m: OutputMessage) => console.log(m.toString()),
    onResult: (r: Result) => console.log(r.png, r.formats()),
    onError: (e: ExecutionError) => console.log(e.name, e.value, e.traceback),
    envs: { A: 'b' },
    timeoutMs: 10_000,
    requestTimeoutMs: 5000,
  }
  const e: Execution = await sbx.runCode('x = 1', { ...opts, language: 'python' })
  const e2: Execution = await sbx.runCode('x', { context: ctx })
  const text: string | undefined = e2.text
  const count: number | undefined = e.executionCount
  const logs: Logs = e.logs
  const r: Result = e.results[0]
  const fields = [r.text, r.html, r.markdown, r.svg, r.png, r.jpeg, r.pdf, r.latex, r.json, r.javascript, r.data, r.chart, r.isMainResult, r.extra, r.raw, r.toJSON()]
  const err: ExecutionError | undefined = e.error
  const contexts: Context[] = await sbx.listCodeContexts()
  await sbx.restartCodeContext(ctx)
  await sbx.restartCodeContext(ctx.id)
  await sbx.removeCodeContext(ctx)
  await sbx.deleteCodeContext(ctx.id)
  void [alias, base, text, count, logs, fields, err, contexts, e.toJSON()]
}

void everything
void templates
void codeInterpreter
