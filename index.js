// The public entry of the `sandbank` package: the novita-sandbox 2.1.1 surface (Sandbox, commands,
// files, snapshots, paginators, error classes) over the native addon (`binding.js`).
// This layer only shapes values: option bags → native arguments, native results → the objects
// novita-sandbox returns (Dates, optional keys), `[Kind] message` rejections → error classes, and
// pulled output → onStdout/onStderr callbacks. With nothing configured it uses the local engine
// (see lib/local.js).
'use strict'

const binding = require('./binding.js')
const local = require('./lib/local.js')
const { isAnyArrayBuffer, isNativeError } = require('node:util').types

const { NativeSandbox } = binding

// ── Errors (core/errors.ts) ────────────────────────────────────────────────────────────────

/** Base class for all sandbox errors. */
class SandboxError extends Error {
  constructor(message, stackTrace) {
    super(message)
    this.name = 'SandboxError'
    if (stackTrace) this.stack = stackTrace
  }
}

/** A timeout: sandbox timeout (unavailable), request timeout (canceled), command/watch timeout (deadline_exceeded). */
class TimeoutError extends SandboxError {
  constructor(message, stackTrace) {
    super(message, stackTrace)
    this.name = 'TimeoutError'
  }
}

/** An invalid argument was provided. */
class InvalidArgumentError extends SandboxError {
  constructor(message, stackTrace) {
    super(message, stackTrace)
    this.name = 'InvalidArgumentError'
  }
}

/** There is not enough disk space. */
class NotEnoughSpaceError extends SandboxError {
  constructor(message, stackTrace) {
    super(message, stackTrace)
    this.name = 'NotEnoughSpaceError'
  }
}

/** A resource was not found. @deprecated Use FileNotFoundError or SandboxNotFoundError. */
class NotFoundError extends SandboxError {
  constructor(message, stackTrace) {
    super(message, stackTrace)
    this.name = 'NotFoundError'
  }
}

/** A file or directory was not found inside a sandbox. */
class FileNotFoundError extends NotFoundError {
  constructor(message, stackTrace) {
    super(message, stackTrace)
    this.name = 'FileNotFoundError'
  }
}

/** A sandbox was not found (it does not exist or is no longer running). */
class SandboxNotFoundError extends NotFoundError {
  constructor(message, stackTrace) {
    super(message, stackTrace)
    this.name = 'SandboxNotFoundError'
  }
}

/** Authentication failed. Not a SandboxError, as in novita-sandbox. */
class AuthenticationError extends Error {
  constructor(message) {
    super(message)
    this.name = 'AuthenticationError'
  }
}

/** The template uses an envd version the SDK does not support. */
class TemplateError extends SandboxError {
  constructor(message, stackTrace) {
    super(message, stackTrace)
    this.name = 'TemplateError'
  }
}

/** The API rate limit was exceeded. */
class RateLimitError extends SandboxError {
  constructor(message) {
    super(message)
    this.name = 'RateLimitError'
  }
}

/** A command exited with a non-zero exit code. */
class CommandExitError extends SandboxError {
  constructor(result) {
    super(result.error)
    this.name = 'CommandExitError'
    Object.defineProperty(this, 'result', { value: result, enumerable: false })
  }
  /** The command's exit code. */
  get exitCode() {
    return this.result.exitCode
  }
  /** The error message of the command execution. */
  get error() {
    return this.result.error
  }
  /** The command's stdout. */
  get stdout() {
    return this.result.stdout
  }
  /** The command's stderr. */
  get stderr() {
    return this.result.stderr
  }
}

const ERROR_CLASSES = {
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
}

const TAG = /^\[([A-Za-z]+)\] ([\s\S]*)$/

/** A native rejection (`[Kind] message`) → the matching JS error; anything else unchanged. */
function mapError(e) {
  // isNativeError, not `instanceof Error`: the addon's errors come from the realm that loaded it
  // (under Jest, not the test's realm, whose `Error` is another constructor).
  const m = isNativeError(e) && typeof e.message === 'string' ? TAG.exec(e.message) : null
  if (!m) return e
  const [, kind, message] = m
  if (kind === 'CommandExitError') {
    const r = JSON.parse(message)
    return new CommandExitError(commandResult(r))
  }
  if (kind === 'Error') return new Error(message)
  const Cls = ERROR_CLASSES[kind]
  return Cls ? new Cls(message) : e
}

async function call(promise) {
  try {
    return await promise
  } catch (e) {
    throw mapError(e)
  }
}

function callSync(fn) {
  try {
    return fn()
  } catch (e) {
    throw mapError(e)
  }
}

/** Connection options for a call (the local engine's when nothing is configured). */
async function conn(opts) {
  try {
    return await local.connectionOpts(opts)
  } catch (e) {
    if (e instanceof local.LocalDaemonError) throw new SandboxError(e.message)
    throw e
  }
}

// ── Value shapes ───────────────────────────────────────────────────────────────────────────

const date = (ms) => (ms === null || ms === undefined ? undefined : new Date(ms))
const opt = (v) => (v === null ? undefined : v)

function commandResult(r) {
  return { exitCode: r.exitCode, error: opt(r.error), stdout: r.stdout, stderr: r.stderr }
}

function sandboxInfo(i) {
  return {
    sandboxId: i.sandboxId,
    templateId: i.templateId,
    ...(i.name && { name: i.name }),
    metadata: i.metadata ?? {},
    allowInternetAccess: opt(i.allowInternetAccess),
    envdVersion: i.envdVersion,
    startedAt: new Date(i.startedAt),
    endAt: new Date(i.endAt),
    state: i.state,
    cpuCount: i.cpuCount,
    memoryMB: i.memoryMb,
    network: undefined,
    lifecycle: i.lifecycle ? { onTimeout: i.lifecycle.onTimeout, autoResume: i.lifecycle.autoResume } : undefined,
    volumeMounts: [],
    // Only when it is so: otherwise the info is the cloud SDK's, field for field.
    ...(i.rootIsHostRoot && { rootIsHostRoot: true }),
  }
}

function listedSandboxInfo(i) {
  return {
    sandboxId: i.sandboxId,
    templateId: i.templateId,
    ...(i.name && { name: i.name }),
    metadata: i.metadata ?? {},
    startedAt: new Date(i.startedAt),
    endAt: new Date(i.endAt),
    state: i.state,
    cpuCount: i.cpuCount,
    memoryMB: i.memoryMb,
    envdVersion: i.envdVersion,
    volumeMounts: [],
  }
}

function snapshotInfo(s) {
  const out = { snapshotId: s.snapshotId }
  if (s.names && s.names.length) out.names = s.names
  if (s.sandboxId) out.sandboxId = s.sandboxId
  if (s.parentSnapshotId) out.parentSnapshotId = s.parentSnapshotId
  if (s.createdAt !== null && s.createdAt !== undefined) out.createdAt = new Date(s.createdAt)
  if (s.sizeBytes !== null && s.sizeBytes !== undefined) out.sizeBytes = s.sizeBytes
  if (s.mode) out.mode = s.mode
  return out
}

function entryInfo(e) {
  return {
    name: e.name,
    type: opt(e.type),
    path: e.path,
    size: e.size,
    mode: e.mode,
    permissions: e.permissions,
    owner: e.owner,
    group: e.group,
    modifiedTime: date(e.modifiedTime),
    symlinkTarget: opt(e.symlinkTarget),
  }
}

function writeInfo(w) {
  return { name: w.name, type: opt(w.type), path: w.path }
}

function sandboxMetrics(m) {
  return {
    timestamp: new Date(m.timestamp),
    cpuUsedPct: m.cpuUsedPct,
    cpuCount: m.cpuCount,
    memUsed: m.memUsed,
    memTotal: m.memTotal,
    diskUsed: m.diskUsed,
    diskTotal: m.diskTotal,
  }
}

/** A `Date` (any realm) or epoch milliseconds → milliseconds; anything else is an error naming it. */
function dateMs(name, v) {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'number') return v
  if (Object.prototype.toString.call(v) === '[object Date]') return v.getTime()
  throw new InvalidArgumentError(`Invalid ${name}: expected a Date, got ${typeof v === 'string' ? `"${v}"` : typeof v}`)
}

function metricsOpts(o) {
  if (!o) return undefined
  return { start: dateMs('start', o.start), end: dateMs('end', o.end) }
}

function urlOpts(o) {
  if (!o) return undefined
  return { user: o.user, useSignatureExpiration: o.useSignatureExpiration }
}

function sandboxOpts(o) {
  if (!o) return undefined
  return {
    metadata: o.metadata,
    envs: o.envs,
    timeoutMs: o.timeoutMs,
    secure: o.secure,
    allowInternetAccess: o.allowInternetAccess,
    lifecycle: o.lifecycle,
    autoPause: o.autoPause,
  }
}

// Type checks here avoid `instanceof`: under Jest, a test's ArrayBuffer or Blob comes from another
// realm than this module's globals.

/** Bytes for the native side without copying where possible. */
function toBuffer(data) {
  if (Buffer.isBuffer(data)) return data
  if (isAnyArrayBuffer(data)) return Buffer.from(data)
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  throw new TypeError('Expected a Uint8Array or an ArrayBuffer')
}

function isBlob(data) {
  return typeof data?.arrayBuffer === 'function' && typeof data?.size === 'number' && typeof data?.stream === 'function'
}

/** string | ArrayBuffer | ArrayBufferView | Blob | ReadableStream | AsyncIterable → string | Buffer. */
async function uploadData(data) {
  if (typeof data === 'string') return data
  if (isAnyArrayBuffer(data) || ArrayBuffer.isView(data)) return toBuffer(data)
  if (isBlob(data)) return Buffer.from(await data.arrayBuffer())
  const chunks = []
  if (data && typeof data.getReader === 'function') {
    const reader = data.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(typeof value === 'string' ? Buffer.from(value) : toBuffer(value))
    }
    return Buffer.concat(chunks)
  }
  if (data && typeof data[Symbol.asyncIterator] === 'function') {
    for await (const value of data) chunks.push(typeof value === 'string' ? Buffer.from(value) : toBuffer(value))
    return Buffer.concat(chunks)
  }
  throw new TypeError('Unsupported data type: expected a string, ArrayBuffer, Blob or ReadableStream')
}

// ── Paginators ─────────────────────────────────────────────────────────────────────────────

class BasePaginator {
  #opts
  #native = null
  #make
  #map
  constructor(opts, make, map) {
    this.#opts = opts
    this.#make = make
    this.#map = map
    if (local.isConfigured(opts)) this.#native = callSync(() => make(local.pickConnection(opts)))
  }

  /** `true` while there may be more items to fetch. */
  get hasNext() {
    return this.#native ? this.#native.hasNext : true
  }

  /** The token of the next page, if any. */
  get nextToken() {
    return this.#native ? opt(this.#native.nextToken) : this.#opts?.nextToken
  }

  /** Fetches the next page. Throws `Error('No more items to fetch')` once past the end. */
  async nextItems() {
    if (!this.hasNext) throw new Error('No more items to fetch')
    if (!this.#native) {
      const c = await conn(this.#opts)
      this.#native ??= callSync(() => this.#make(c))
    }
    const items = await call(this.#native.nextItems())
    return items.map(this.#map)
  }

  /** Iterates over every item of every remaining page. */
  async *[Symbol.asyncIterator]() {
    while (this.hasNext) {
      for (const item of await this.nextItems()) yield item
    }
  }
}

/** Pages of `SandboxInfo` (`Sandbox.list()`). */
class SandboxPaginator extends BasePaginator {
  constructor(opts) {
    super(
      opts,
      (c) =>
        NativeSandbox.listSandboxes(
          { metadata: opts?.query?.metadata, state: opts?.query?.state, limit: opts?.limit, nextToken: opts?.nextToken },
          c,
        ),
      listedSandboxInfo,
    )
  }
}

/** Pages of `SnapshotInfo` (`Sandbox.listSnapshots()`, `sandbox.listSnapshots()`). */
class SnapshotPaginator extends BasePaginator {
  constructor(opts) {
    super(
      opts,
      (c) => NativeSandbox.listAllSnapshots({ sandboxId: opts?.sandboxId, limit: opts?.limit, nextToken: opts?.nextToken }, c),
      snapshotInfo,
    )
  }
}

// ── Commands ───────────────────────────────────────────────────────────────────────────────

function commandOpts(o) {
  if (!o) return undefined
  return { cwd: o.cwd, user: o.user, envs: o.envs, stdin: o.stdin, timeoutMs: o.timeoutMs, requestTimeoutMs: o.requestTimeoutMs }
}

/** A running command (or terminal): `pid`, output so far, `wait()`, `kill()`, `disconnect()`. */
class CommandHandle {
  #native
  #pump
  #iterationError
  constructor(native, onStdout, onStderr, streaming, onPty) {
    this.#native = native
    /** The process ID of the command. */
    Object.defineProperty(this, 'pid', { value: native.pid, enumerable: true })
    this.#pump = streaming ? this.#handleEvents(onStdout, onStderr, onPty) : Promise.resolve()
  }

  async #handleEvents(onStdout, onStderr, onPty) {
    try {
      for (;;) {
        const c = await this.#native.nextOutput()
        if (!c) return
        if (c.stdout !== null && c.stdout !== undefined) onStdout?.(c.stdout)
        else if (c.stderr !== null && c.stderr !== undefined) onStderr?.(c.stderr)
        else if (c.pty) onPty?.(new Uint8Array(c.pty.buffer, c.pty.byteOffset, c.pty.length))
      }
    } catch (e) {
      this.#iterationError = mapError(e)
    }
  }

  /** The exit code; `undefined` while the command runs. */
  get exitCode() {
    return opt(this.#native.exitCode)
  }

  /** The error message of a failed command. */
  get error() {
    return opt(this.#native.error)
  }

  /** The stderr received so far. */
  get stderr() {
    return this.#native.stderr
  }

  /** The stdout received so far. */
  get stdout() {
    return this.#native.stdout
  }

  /** Waits for the end; throws `CommandExitError` for a non-zero exit code. */
  async wait() {
    await this.#pump
    if (this.#iterationError) throw this.#iterationError
    return commandResult(await call(this.#native.wait()))
  }

  /** Stops receiving the command's events; the command keeps running. */
  async disconnect() {
    this.#native.disconnect()
  }

  /** Kills the command (SIGKILL); `false` if it was not found. */
  async kill() {
    return call(this.#native.kill())
  }
}

/** `sandbox.commands`. */
class Commands {
  #native
  constructor(native) {
    this.#native = native
  }

  /** Lists the running commands and PTY sessions. */
  async list(opts) {
    const list = await call(this.#native.list(opts?.requestTimeoutMs))
    return list.map((p) => ({ pid: p.pid, ...(p.tag && { tag: p.tag }), args: p.args, envs: p.envs, cmd: p.cmd, ...(p.cwd && { cwd: p.cwd }) }))
  }

  /** Sends data to a command's stdin. */
  async sendStdin(pid, data, opts) {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : toBuffer(data)
    await call(this.#native.sendStdin(pid, buf, opts?.requestTimeoutMs))
  }

  /** Kills a command (SIGKILL); `false` if it was not found. */
  async kill(pid, opts) {
    return call(this.#native.kill(pid, opts?.requestTimeoutMs))
  }

  /** Connects to a running command. */
  async connect(pid, opts) {
    const streaming = !!(opts?.onStdout || opts?.onStderr)
    const h = await call(this.#native.connect(pid, opts?.timeoutMs, opts?.requestTimeoutMs, streaming))
    return new CommandHandle(h, opts?.onStdout, opts?.onStderr, streaming)
  }

  /**
   * Runs a command: waits for it and resolves to its `CommandResult`, or with
   * `background: true` resolves to a `CommandHandle` once it has started.
   */
  async run(cmd, opts) {
    const streaming = !!(opts?.onStdout || opts?.onStderr)
    if (!opts?.background && !streaming) {
      return commandResult(await call(this.#native.run(cmd, commandOpts(opts))))
    }
    const h = await call(this.#native.start(cmd, commandOpts(opts), streaming))
    const handle = new CommandHandle(h, opts?.onStdout, opts?.onStderr, streaming)
    return opts?.background ? handle : handle.wait()
  }
}

// ── PTY ────────────────────────────────────────────────────────────────────────────────────

/** A terminal dimension must at least be a number; the native side checks its range. */
function ptyDimension(name, v) {
  if (typeof v === 'number') return v
  const shown = typeof v === 'string' ? `"${v}"` : v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v)
  throw new InvalidArgumentError(`Invalid PTY size: ${name} must be an integer from 1 to 65535, got ${shown}`)
}

/** `sandbox.pty`: pseudo-terminals (`/bin/bash -i -l` on a terminal of the given size). */
class Pty {
  #native
  constructor(native) {
    this.#native = native
  }

  /** Starts a terminal; `onData` gets its output as bytes. Resolves once it started. */
  async create(opts) {
    const cols = ptyDimension('cols', opts?.cols)
    const rows = ptyDimension('rows', opts?.rows)
    const streaming = typeof opts.onData === 'function'
    const native = {
      cols,
      rows,
      envs: opts.envs,
      cwd: opts.cwd,
      user: opts.user,
      timeoutMs: opts.timeoutMs,
      requestTimeoutMs: opts.requestTimeoutMs,
    }
    const h = await call(this.#native.create(native, streaming))
    return new CommandHandle(h, undefined, undefined, streaming, opts.onData)
  }

  /** Connects to a running terminal; `onData` gets its output from now on. */
  async connect(pid, opts) {
    const streaming = typeof opts?.onData === 'function'
    const h = await call(this.#native.connect(pid, opts?.timeoutMs, opts?.requestTimeoutMs, streaming))
    return new CommandHandle(h, undefined, undefined, streaming, opts?.onData)
  }

  /** Sends bytes to a terminal, as if typed. */
  async sendInput(pid, data, opts) {
    await call(this.#native.sendInput(pid, toBuffer(data), opts?.requestTimeoutMs))
  }

  /** Resizes a terminal (its processes get SIGWINCH). */
  async resize(pid, size, opts) {
    const cols = ptyDimension('cols', size?.cols)
    const rows = ptyDimension('rows', size?.rows)
    await call(this.#native.resize(pid, cols, rows, opts?.requestTimeoutMs))
  }

  /** Kills a terminal (SIGKILL): `true` if killed, `false` if not found. */
  async kill(pid, opts) {
    return call(this.#native.kill(pid, opts?.requestTimeoutMs))
  }
}

// ── Filesystem ─────────────────────────────────────────────────────────────────────────────

/** Sandbox filesystem object type. */
const FileType = Object.freeze({ FILE: 'file', DIR: 'dir' })

/** What happened to a watched filesystem object. */
const FilesystemEventType = Object.freeze({ CHMOD: 'chmod', CREATE: 'create', REMOVE: 'remove', RENAME: 'rename', WRITE: 'write' })

/** A directory watch (`files.watchDir()`); `stop()` ends it. */
class WatchHandle {
  #native
  #stopped = false
  constructor(native, onEvent, onExit) {
    this.#native = native
    this.#pump(onEvent, onExit)
  }

  async #pump(onEvent, onExit) {
    try {
      for (;;) {
        const e = await this.#native.nextEvent()
        if (!e) break
        if (!this.#stopped) onEvent?.({ name: e.name, type: e.type })
      }
    } catch (err) {
      this.#native.stop()
      onExit?.(mapError(err))
      return
    }
    onExit?.()
  }

  /** Stops watching the directory. */
  async stop() {
    this.#stopped = true
    this.#native.stop()
  }
}

function fsOpts(o) {
  if (!o) return undefined
  return { user: o.user, requestTimeoutMs: o.requestTimeoutMs, useOctetStream: o.useOctetStream }
}

/** `sandbox.files`. */
class Filesystem {
  #native
  constructor(native) {
    this.#native = native
  }

  /** Reads a file as text (default), bytes (`Uint8Array`), a `Blob`, or a `ReadableStream`. */
  async read(path, opts) {
    const format = opts?.format ?? 'text'
    if (format === 'text') return call(this.#native.readText(path, fsOpts(opts)))
    if (format === 'stream') {
      const s = await call(this.#native.readStream(path, fsOpts(opts)))
      return new ReadableStream({
        async pull(controller) {
          const chunk = await call(s.nextChunk())
          if (chunk === null) controller.close()
          else controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length))
        },
      })
    }
    const b = await call(this.#native.read(path, fsOpts(opts)))
    const bytes = new Uint8Array(b.buffer, b.byteOffset, b.length)
    return format === 'blob' ? new Blob([bytes]) : bytes
  }

  /** Writes one file (`write(path, data)`) or several (`write([{path, data}, …])`). */
  async write(pathOrFiles, dataOrOpts, opts) {
    if (typeof pathOrFiles !== 'string' && !Array.isArray(pathOrFiles)) {
      throw new Error('Path or files are required')
    }
    if (typeof pathOrFiles === 'string' && Array.isArray(dataOrOpts)) {
      throw new Error(
        'Cannot specify both path and array of files. You have to specify either path and data for a single file or an array for multiple files.',
      )
    }
    if (typeof pathOrFiles === 'string') {
      const data = await uploadData(dataOrOpts)
      return writeInfo(await call(this.#native.write(pathOrFiles, data, fsOpts(opts))))
    }
    if (pathOrFiles.length === 0) return []
    const files = []
    for (const f of pathOrFiles) files.push({ path: f.path, data: await uploadData(f.data) })
    const infos = await call(this.#native.writeFiles(files, fsOpts(dataOrOpts)))
    return infos.map(writeInfo)
  }

  /** Writes several files. */
  async writeFiles(files, opts) {
    return this.write(files, opts)
  }

  /** Lists a directory (`depth` default 1). */
  async list(path, opts) {
    if (typeof opts?.depth === 'number' && opts.depth < 1) {
      throw new InvalidArgumentError('depth should be at least one')
    }
    const entries = await call(this.#native.list(path, opts?.depth, fsOpts(opts)))
    return entries.map(entryInfo)
  }

  /** Creates a directory and its parents; `false` if it already exists. */
  async makeDir(path, opts) {
    return call(this.#native.makeDir(path, fsOpts(opts)))
  }

  /** Renames (moves) a file or directory. */
  async rename(oldPath, newPath, opts) {
    return entryInfo(await call(this.#native.rename(oldPath, newPath, fsOpts(opts))))
  }

  /** Removes a file or directory. */
  async remove(path, opts) {
    await call(this.#native.remove(path, fsOpts(opts)))
  }

  /** Whether a file or directory exists. */
  async exists(path, opts) {
    return call(this.#native.exists(path, fsOpts(opts)))
  }

  /** Information about a file or directory. */
  async getInfo(path, opts) {
    return entryInfo(await call(this.#native.getInfo(path, fsOpts(opts))))
  }

  /**
   * Watches a directory: `onEvent` gets each change; `opts.onExit` is called once when the
   * watch ends (with the error, if it ended with one). Resolves once the watch runs.
   */
  async watchDir(path, onEvent, opts) {
    const native = { recursive: opts?.recursive, timeoutMs: opts?.timeoutMs, user: opts?.user, requestTimeoutMs: opts?.requestTimeoutMs }
    const h = await call(this.#native.watchDir(path, native))
    return new WatchHandle(h, onEvent, opts?.onExit)
  }
}

// ── Sandbox ────────────────────────────────────────────────────────────────────────────────

/** A sandbox: create, connect, control, and use it through `commands` and `files`. */
class Sandbox {
  static defaultTemplate = 'base'
  static defaultSandboxTimeoutMs = 300_000

  #native
  #conn

  /** @internal Use `Sandbox.create()` or `Sandbox.connect()`. */
  constructor(native, connection) {
    if (!(native instanceof NativeSandbox)) {
      throw new SandboxError('Use Sandbox.create() or Sandbox.connect() to get a Sandbox')
    }
    this.#native = native
    this.#conn = connection
    /** The sandbox's files. */
    this.files = new Filesystem(native.files())
    /** The sandbox's commands. */
    this.commands = new Commands(native.commands())
    /** The sandbox's pseudo-terminals. */
    this.pty = new Pty(native.pty())
    /** The sandbox's ID. */
    this.sandboxId = native.sandboxId
    /** The domain the sandbox is reached at. */
    this.sandboxDomain = native.sandboxDomain
  }

  /** The traffic access token, if the sandbox has one. */
  get trafficAccessToken() {
    return opt(this.#native.trafficAccessToken)
  }

  #merged(opts) {
    return { ...this.#conn, ...local.pickConnection(opts) }
  }

  /** Creates a sandbox: `create(opts?)` or `create(template, opts?)`. */
  static async create(templateOrOpts, opts) {
    const [template, o] =
      typeof templateOrOpts === 'string' ? [templateOrOpts, opts] : [templateOrOpts?.template ?? this.defaultTemplate, templateOrOpts]
    const c = await conn(o)
    const native = await call(NativeSandbox.create(template, sandboxOpts(o), c))
    return new this(native, c)
  }

  /** Like `create`; takes the deprecated `autoPause` option too. */
  static async betaCreate(templateOrOpts, opts) {
    return this.create(templateOrOpts, opts)
  }

  /** Connects to a sandbox (resuming it if paused). */
  static async connect(sandboxId, opts) {
    const c = await conn(opts)
    const native = await call(NativeSandbox.connect(sandboxId, opts?.timeoutMs, opts?.secure, c))
    return new this(native, c)
  }

  /** Connects to this sandbox again (resumes it if paused); refreshes `trafficAccessToken`. */
  async connect(opts) {
    await call(this.#native.reconnect(opts?.timeoutMs, opts?.secure, opts ? this.#merged(opts) : undefined))
    return this
  }

  /** Pauses a sandbox: `true` if paused, `false` if it already was. */
  static async pause(sandboxId, opts) {
    return call(NativeSandbox.pauseSandbox(sandboxId, await conn(opts)))
  }

  /** @deprecated Use `Sandbox.pause()`. */
  static async betaPause(sandboxId, opts) {
    return this.pause(sandboxId, opts)
  }

  /** Pauses this sandbox: `true` if paused, `false` if it already was. Resume with `connect()`. */
  async pause(opts) {
    if (!opts) return call(this.#native.pause())
    return call(NativeSandbox.pauseSandbox(this.sandboxId, this.#merged(opts)))
  }

  /** @deprecated Use `pause()`. */
  async betaPause(opts) {
    return this.pause(opts)
  }

  /** Resource usage samples of a sandbox between `start` and `end`. */
  static async getMetrics(sandboxId, opts) {
    const m = await call(NativeSandbox.getSandboxMetrics(sandboxId, metricsOpts(opts), await conn(opts)))
    return m.map(sandboxMetrics)
  }

  /** Resource usage samples of this sandbox between `start` and `end`. */
  async getMetrics(opts) {
    const m = await call(this.#native.getMetrics(metricsOpts(opts), opts ? this.#merged(opts) : undefined))
    return m.map(sandboxMetrics)
  }

  /** The URL to upload a file to with a multipart POST (signed for secured sandboxes). */
  async uploadUrl(path, opts) {
    return callSync(() => this.#native.uploadUrl(path, urlOpts(opts)))
  }

  /** The URL to download a file from (signed for secured sandboxes). */
  async downloadUrl(path, opts) {
    return callSync(() => this.#native.downloadUrl(path, urlOpts(opts)))
  }

  /** Lists sandboxes. */
  static list(opts) {
    return new SandboxPaginator(opts)
  }

  /** Kills a sandbox by ID: `true` if it was killed, `false` if it was not found. */
  static async kill(sandboxId, opts) {
    return call(NativeSandbox.killSandbox(sandboxId, await conn(opts)))
  }

  /** Kills this sandbox. */
  async kill(opts) {
    if (this.#conn.debug) return
    if (!opts) return call(this.#native.kill())
    await call(NativeSandbox.killSandbox(this.sandboxId, this.#merged(opts)))
  }

  /** Sets a sandbox's timeout (from now), in milliseconds. */
  static async setTimeout(sandboxId, timeoutMs, opts) {
    await call(NativeSandbox.setSandboxTimeout(sandboxId, timeoutMs, await conn(opts)))
  }

  /** Sets this sandbox's timeout (from now), in milliseconds. */
  async setTimeout(timeoutMs, opts) {
    if (this.#conn.debug) return
    if (!opts) return call(this.#native.setTimeout(timeoutMs))
    await call(NativeSandbox.setSandboxTimeout(this.sandboxId, timeoutMs, this.#merged(opts)))
  }

  /** Information about a sandbox. */
  static async getInfo(sandboxId, opts) {
    return sandboxInfo(await call(NativeSandbox.getSandboxInfo(sandboxId, await conn(opts))))
  }

  /** Information about a sandbox, with its `envdAccessToken` and `sandboxDomain`. */
  static async getFullInfo(sandboxId, opts) {
    const i = await call(NativeSandbox.getSandboxInfo(sandboxId, await conn(opts)))
    return { ...sandboxInfo(i), envdAccessToken: opt(i.envdAccessToken), sandboxDomain: opt(i.sandboxDomain) }
  }

  /** Information about this sandbox. */
  async getInfo(opts) {
    if (!opts) return sandboxInfo(await call(this.#native.getInfo()))
    return sandboxInfo(await call(NativeSandbox.getSandboxInfo(this.sandboxId, this.#merged(opts))))
  }

  /** Whether the sandbox is running (envd answers). */
  async isRunning(opts) {
    return call(this.#native.isRunning(opts?.requestTimeoutMs))
  }

  /** The host for a port of this sandbox: `<port>-<sandboxId>.<sandboxDomain>`. */
  getHost(port) {
    return this.#native.getHost(port)
  }

  /** Snapshots a sandbox by ID. */
  static async createSnapshot(sandboxId, opts) {
    return snapshotInfo(await call(NativeSandbox.createSnapshotOf(sandboxId, await conn(opts))))
  }

  /** Snapshots this sandbox; it keeps running. */
  async createSnapshot(opts) {
    if (!opts) return snapshotInfo(await call(this.#native.createSnapshot()))
    return snapshotInfo(await call(NativeSandbox.createSnapshotOf(this.sandboxId, this.#merged(opts))))
  }

  /** Lists snapshots (optionally of one sandbox: `sandboxId`). */
  static listSnapshots(opts) {
    return new SnapshotPaginator(opts)
  }

  /** Lists this sandbox's snapshots. */
  listSnapshots(opts) {
    return new SnapshotPaginator({ ...this.#merged(opts), limit: opts?.limit, nextToken: opts?.nextToken, sandboxId: this.sandboxId })
  }

  /** Deletes a snapshot: `true` if deleted, `false` if it was not found. */
  static async deleteSnapshot(snapshotId, opts) {
    return call(NativeSandbox.deleteSnapshot(snapshotId, await conn(opts)))
  }
}

/**
 * The signature of a `/files` URL (`v1_` + base64 SHA-256, `=` stripped) for a path, operation,
 * user and envd access token, with an optional expiration (seconds from now).
 */
async function getSignature({ path, operation, user, expirationInSeconds, envdAccessToken }) {
  const s = callSync(() => binding.getFileSignature(path, operation, user, expirationInSeconds, envdAccessToken))
  return { signature: s.signature, expiration: s.expiration ?? null }
}

/** The version of the native addon (the Rust crate's version). */
function version() {
  return binding.version()
}

exports.Sandbox = Sandbox
exports.default = Sandbox
exports.SandboxPaginator = SandboxPaginator
exports.SnapshotPaginator = SnapshotPaginator
exports.Commands = Commands
exports.CommandHandle = CommandHandle
exports.Filesystem = Filesystem
exports.FileType = FileType
exports.FilesystemEventType = FilesystemEventType
exports.WatchHandle = WatchHandle
exports.Pty = Pty
exports.getSignature = getSignature
exports.SandboxError = SandboxError
exports.TimeoutError = TimeoutError
exports.InvalidArgumentError = InvalidArgumentError
exports.NotEnoughSpaceError = NotEnoughSpaceError
exports.NotFoundError = NotFoundError
exports.FileNotFoundError = FileNotFoundError
exports.SandboxNotFoundError = SandboxNotFoundError
exports.AuthenticationError = AuthenticationError
exports.TemplateError = TemplateError
exports.RateLimitError = RateLimitError
exports.CommandExitError = CommandExitError
exports.version = version
exports.serverBinaryPath = local.serverBinaryPath
