// The Sandbox class: create, connect, control and snapshot sandboxes (statics by ID, methods on
// one), and use one through `commands`, `files` and `pty`; with its options and info types.
import { newCommands, type Commands } from './commands'
import type { ConnectionOpts, SandboxApiOpts, Username } from './connection'
import { InvalidArgumentError, SandboxError, taggedError } from './errors'
import { newFilesystem, type Filesystem } from './filesystem'
import {
  call,
  callSync,
  NativeSandbox,
  type CloneOptions,
  type CreateSnapshotOptions,
  type ForkEntry,
  type ForkOptions,
  type MetricsOptions,
  type SandboxOptions,
  type UrlOptions,
} from './internal/native'
import { opt, sandboxInfo, sandboxMetrics, snapshotInfo } from './internal/values'
import { SandboxPaginator, SnapshotPaginator, snapshotPages, type SandboxListOpts, type SnapshotListOpts } from './paginator'
import { newPty, type Pty } from './pty'

/** What happens when a sandbox times out. */
export interface SandboxLifecycle {
  /** `kill` (default) or `pause`: a paused sandbox keeps its state until `connect()` resumes it. */
  onTimeout: 'pause' | 'kill'
  /** Resume a paused sandbox on traffic. Can be `true` only with `onTimeout: 'pause'`. @default false */
  autoResume?: boolean
}

/** Options of `Sandbox.create()`. */
export interface SandboxOpts extends ConnectionOpts {
  /** Template name or ID, or a snapshot ID. @default 'base' */
  template?: string
  /** Metadata, filterable in `Sandbox.list()`. */
  metadata?: Record<string, string>
  /** Environment variables of every command in the sandbox. */
  envs?: Record<string, string>
  /** Time to live in **milliseconds** (sent in seconds, rounded up). @default 300_000 */
  timeoutMs?: number
  /**
   * Secure the sandbox's envd with an access token: every envd request then carries it
   * (`X-Access-Token`), and `uploadUrl`/`downloadUrl` are signed with it. @default true
   */
  secure?: boolean
  /** Allow outbound internet access (sent as `allow_internet_access`). @default true */
  allowInternetAccess?: boolean
  /** What happens on timeout. @default { onTimeout: 'kill' } */
  lifecycle?: SandboxLifecycle
  /**
   * sandbank: the sandbox's disk limit in MB (past it, writes fail inside and uploads with
   * `NotEnoughSpaceError`). Only where the server supports it (the local engine on its btrfs
   * store); the cloud takes the disk size from the template. @default the server's (10 GB)
   */
  diskSizeMB?: number
}

/**
 * Options of `Sandbox.betaCreate()`: those of `create()` and the deprecated `autoPause`.
 */
export type SandboxBetaCreateOpts = SandboxOpts & {
  /**
   * Pause the sandbox instead of killing it when it times out.
   * @deprecated Use `lifecycle: { onTimeout: 'pause' }`; an explicit `lifecycle` wins.
   * @default false
   */
  autoPause?: boolean
}

/** Options of `Sandbox.connect()`. */
export interface SandboxConnectOpts extends ConnectionOpts {
  /** New time to live in **milliseconds** (only extends a running sandbox's). @default 300_000 */
  timeoutMs?: number
  /** Secure the sandbox's envd with an access token. */
  secure?: boolean
}

/** Options of `getMetrics()`. */
/** Options of {@link Sandbox.restore} (sandbank's own). */
export interface RestoreOpts extends SandboxApiOpts {
  /**
   * Restore a snapshot that is not of this sandbox's lineage (taken from another sandbox that
   * it was not started from): refused without it.
   * @default false
   */
  force?: boolean
}

export interface SandboxMetricsOpts extends SandboxApiOpts {
  /** Start of the range. @default the sandbox's start */
  start?: Date
  /** End of the range. @default now */
  end?: Date
}

/** One sample of a sandbox's resource usage. */
export interface SandboxMetrics {
  /** When the sample was taken. */
  timestamp: Date
  /** CPU usage in percent (of all its CPUs). */
  cpuUsedPct: number
  /** Number of CPUs. */
  cpuCount: number
  /** Memory used, in bytes. */
  memUsed: number
  /** Memory available, in bytes. */
  memTotal: number
  /** Disk space used, in bytes. */
  diskUsed: number
  /** Disk space available, in bytes. */
  diskTotal: number
}

/** Options of `uploadUrl()` / `downloadUrl()`. */
export interface SandboxUrlOpts {
  /**
   * Make the signature expire this many **seconds** from now. Only for secured sandboxes (the
   * default): with an unsecured one it throws.
   */
  useSignatureExpiration?: number
  /** The user whose permissions apply (and whose home relative paths start from). */
  user?: Username
}

/** The state of a sandbox. */
export type SandboxState = 'running' | 'paused'

/** Information about a sandbox. */
export interface SandboxInfo {
  sandboxId: string
  templateId: string
  /** The template's alias, if any. */
  name?: string
  metadata: Record<string, string>
  startedAt: Date
  endAt: Date
  state: SandboxState
  cpuCount: number
  memoryMB: number
  envdVersion: string
  allowInternetAccess?: boolean
  network?: { allowOut?: string[]; denyOut?: string[]; allowPublicTraffic?: boolean; maskRequestHost?: string }
  /** What happens when the sandbox times out. */
  lifecycle?: SandboxInfoLifecycle
  volumeMounts?: { name: string; path: string }[]
  /**
   * sandbank's local engine only: `true` when root in the sandbox is the host's root (a server
   * started with `--no-userns`); absent when root inside is an unprivileged host user, and from
   * the cloud.
   */
  rootIsHostRoot?: boolean
}

/** The lifecycle a sandbox was created with. */
export interface SandboxInfoLifecycle {
  onTimeout: 'pause' | 'kill'
  autoResume: boolean
}

/** A snapshot: use `snapshotId` (or its name) as the template of `Sandbox.create()`. */
export interface SnapshotInfo {
  /** `<template id>:<tag>`, e.g. `abc…:default`. */
  snapshotId: string
  /** Its name, when it has one (`createSnapshot({ name })`): usable wherever `snapshotId` is. */
  names?: string[]
  /** The sandbox it was taken from. */
  sandboxId?: string
  /** The snapshot that sandbox was started from. */
  parentSnapshotId?: string
  createdAt?: Date
  /** Bytes of file data the snapshot added. */
  sizeBytes?: number
  /** What was captured: `full` (files, processes and memory) or `filesystem` (files only). */
  mode?: string
  /** The labels it was created with (`{}` when none; absent from servers without labels). */
  metadata?: Record<string, string>
  /**
   * When it expires (`createSnapshot({ ttlMs })` or the server's `--snapshot-ttl`); absent:
   * never. From then on it is neither listed nor found (starting a sandbox from it fails as for
   * a deleted one); sandboxes started from it keep running, and it is deleted once none does.
   */
  expiresAt?: Date
}

/**
 * Options of `createSnapshot()`: e2b's `name`, and the local server's `metadata` and `ttlMs`.
 *
 * @example
 * ```ts
 * const snap = await sandbox.createSnapshot({ name: 'after-setup', metadata: { branch: 'main' }, ttlMs: 86_400_000 })
 * const copy = await Sandbox.create('after-setup')
 * const mine = await Sandbox.listSnapshots({ metadata: { branch: 'main' } }).nextItems()
 * ```
 */
export interface CreateSnapshotOpts extends SandboxApiOpts {
  /**
   * A name unique among live snapshots (1-128 characters of `[A-Za-z0-9._-]`, not shaped like
   * an ID, not a template's name): usable wherever the snapshot ID is (`Sandbox.create(name)`,
   * `deleteSnapshot(name)`), reported in `names`. A name another live snapshot has is refused
   * (`SandboxError`, `409: a snapshot named "…" exists already`).
   */
  name?: string
  /**
   * Labels, string to string (at most 64; keys 1-128 bytes, values up to 1024 bytes), reported
   * as `metadata` and filtered on by `listSnapshots({ metadata })`.
   */
  metadata?: Record<string, string>
  /**
   * Time to live in **milliseconds** (sent in seconds, rounded up); `0`: never expires, whatever
   * the server's default (`sandbank serve --snapshot-ttl`, none unless set).
   */
  ttlMs?: number
}

/**
 * Options of `Sandbox.exportSnapshot()` and `Sandbox.importSnapshot()`.
 *
 * @example
 * ```ts
 * await Sandbox.exportSnapshot('after-setup', '/tmp/after-setup.sbsnap')
 * // on another machine, another server:
 * const snap = await Sandbox.importSnapshot('/tmp/after-setup.sbsnap')
 * const sandbox = await Sandbox.create(snap.snapshotId)
 * ```
 */
export interface SnapshotArchiveOpts extends SandboxApiOpts {
  /** The whole transfer's limit in milliseconds; absent or `0`: none (`requestTimeoutMs` does not apply). */
  timeoutMs?: number
}

/** What `Sandbox.exportSnapshot()` wrote. */
export interface SnapshotExportInfo {
  /** The archive's path, as given. */
  path: string
  /** Its size in bytes. */
  sizeBytes: number
}

/** Options of `Sandbox.fork()` and `sandbox.fork()`. */
export interface SandboxForkOpts extends ConnectionOpts {
  /**
   * How many copies. The sandbox is snapshotted once whatever the count; each copy starts or
   * fails by itself. The server checks it (the cloud's range: 1 to 100). @default 1
   */
  count?: number
  /** The copies' time to live in **milliseconds** (sent in seconds, rounded up). @default 300_000 */
  timeoutMs?: number
}

/** Options of `Sandbox.clone()`. */
export interface SandboxCloneOpts extends SandboxApiOpts {
  /** How many copies. The server checks it (the cloud's range: 1 to 100). @default 1 */
  count?: number
  /** The node to start the copies on (the cloud's; sent as `nodeID`). */
  nodeId?: string
  /** All copies or none: when one fails to start, the others are killed and the call fails. @default false */
  strict?: boolean
  /** The copies' time to live in **milliseconds** (sent in seconds, rounded up). @default 300_000 */
  timeoutMs?: number
}

/** What `Sandbox.clone()` gives. */
export interface SandboxCloneResult<SandboxInstance> {
  /** The copies that started. */
  sandboxes: SandboxInstance[]
  /** How many started (`sandboxes.length`). */
  count: number
  /** The snapshot (with memory) the copies started from: usable as the template of `Sandbox.create()`. */
  snapshotTemplateId?: string
}

/** Same as {@link SandboxCloneResult}. */
export type CloneResult<T> = SandboxCloneResult<T>

function forkOpts(o: SandboxForkOpts | undefined): ForkOptions | undefined {
  if (!o) return undefined
  return { count: o.count, timeoutMs: o.timeoutMs }
}

/** The addon's options of a snapshot; labels that are not strings are named here. */
function snapshotOpts(o: CreateSnapshotOpts | undefined): CreateSnapshotOptions | undefined {
  if (!o) return undefined
  if (o.metadata !== undefined && o.metadata !== null) {
    if (typeof o.metadata !== 'object' || Array.isArray(o.metadata)) {
      throw new InvalidArgumentError(`Invalid metadata: expected an object of strings, got ${Array.isArray(o.metadata) ? 'an array' : typeof o.metadata}`)
    }
    for (const [k, v] of Object.entries(o.metadata)) {
      if (typeof v !== 'string') {
        throw new InvalidArgumentError(`Invalid metadata value for key ${JSON.stringify(k)}: expected a string, got ${typeof v}`)
      }
    }
  }
  return { name: o.name, metadata: o.metadata ?? undefined, ttlMs: o.ttlMs }
}

function cloneOpts(o: SandboxCloneOpts | undefined): CloneOptions | undefined {
  if (!o) return undefined
  return { count: o.count, strict: o.strict, timeoutMs: o.timeoutMs, nodeId: o.nodeId }
}

/** A fork's entries → sandboxes of class `S`, or the error classes of why they did not start. */
function forkResults<S extends typeof Sandbox>(cls: S, entries: ForkEntry[]): Array<InstanceType<S> | Error> {
  return entries.map((e) => (e.sandbox ? (new cls(e.sandbox) as InstanceType<S>) : taggedError(e.error ?? '[SandboxError] Failed to start forked sandbox')))
}

/** A `Date` (any realm) or epoch milliseconds → milliseconds; anything else is an error naming it. */
function dateMs(name: string, v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'number') return v
  if (Object.prototype.toString.call(v) === '[object Date]') return (v as Date).getTime()
  throw new InvalidArgumentError(`Invalid ${name}: expected a Date, got ${typeof v === 'string' ? `"${v}"` : typeof v}`)
}

function metricsOpts(o: SandboxMetricsOpts | undefined): MetricsOptions | undefined {
  if (!o) return undefined
  return { start: dateMs('start', o.start), end: dateMs('end', o.end) }
}

function urlOpts(o: SandboxUrlOpts | undefined): UrlOptions | undefined {
  if (!o) return undefined
  return { user: o.user, useSignatureExpiration: o.useSignatureExpiration }
}

function sandboxOpts(o: SandboxBetaCreateOpts | undefined): SandboxOptions | undefined {
  if (!o) return undefined
  return {
    metadata: o.metadata,
    envs: o.envs,
    timeoutMs: o.timeoutMs,
    secure: o.secure,
    allowInternetAccess: o.allowInternetAccess,
    lifecycle: o.lifecycle,
    autoPause: o.autoPause,
    diskSizeMB: o.diskSizeMB,
  }
}

/**
 * A sandbox. Get one with {@link Sandbox.create} or {@link Sandbox.connect}.
 *
 * @example
 * ```ts
 * import { Sandbox } from 'sandbank'
 * const sandbox = await Sandbox.create()
 * const { stdout } = await sandbox.commands.run('echo hello')
 * await sandbox.kill()
 * ```
 */
export class Sandbox {
  protected static readonly defaultTemplate: string = 'base'
  protected static readonly defaultSandboxTimeoutMs: number = 300_000

  /** The sandbox's files. */
  readonly files: Filesystem
  /** The sandbox's commands. */
  readonly commands: Commands
  /** The sandbox's pseudo-terminals. */
  readonly pty: Pty
  /** The sandbox's ID. */
  readonly sandboxId: string
  /** The domain the sandbox is reached at. */
  readonly sandboxDomain: string

  readonly #native: NativeSandbox

  /** Not public: use `Sandbox.create()` or `Sandbox.connect()`. */
  constructor(native: unknown) {
    if (!(native instanceof NativeSandbox)) {
      throw new SandboxError('Use Sandbox.create() or Sandbox.connect() to get a Sandbox')
    }
    this.#native = native
    this.files = newFilesystem(native.files())
    this.commands = newCommands(native.commands())
    this.pty = newPty(native.pty())
    this.sandboxId = native.sandboxId
    this.sandboxDomain = native.sandboxDomain
  }

  /** The traffic access token, if the sandbox has one. */
  get trafficAccessToken(): string | undefined {
    return opt(this.#native.trafficAccessToken)
  }

  /**
   * Creates a sandbox from the default template (`base`), or `opts.template`.
   * @throws InvalidArgumentError for an unknown `lifecycle.onTimeout`, or `autoResume` without `onTimeout: 'pause'`.
   */
  static create<S extends typeof Sandbox>(this: S, opts?: SandboxOpts): Promise<InstanceType<S>>
  /** Creates a sandbox from a template or a snapshot ID. */
  static create<S extends typeof Sandbox>(this: S, template: string, opts?: SandboxOpts): Promise<InstanceType<S>>
  static async create<S extends typeof Sandbox>(this: S, templateOrOpts?: string | SandboxBetaCreateOpts, opts?: SandboxBetaCreateOpts): Promise<InstanceType<S>> {
    const [template, o] =
      typeof templateOrOpts === 'string' ? [templateOrOpts, opts] : [templateOrOpts?.template ?? this.defaultTemplate, templateOrOpts]
    const native = await call(NativeSandbox.create(template, sandboxOpts(o), o))
    return new this(native) as InstanceType<S>
  }

  /**
   * Like {@link Sandbox.create}, and takes the deprecated `autoPause` option.
   * @throws InvalidArgumentError for an unknown `lifecycle.onTimeout`, or `autoResume` without `onTimeout: 'pause'`.
   */
  static betaCreate<S extends typeof Sandbox>(this: S, opts?: SandboxBetaCreateOpts): Promise<InstanceType<S>>
  /** Like {@link Sandbox.create}, and takes the deprecated `autoPause` option. */
  static betaCreate<S extends typeof Sandbox>(this: S, template: string, opts?: SandboxBetaCreateOpts): Promise<InstanceType<S>>
  static async betaCreate<S extends typeof Sandbox>(this: S, templateOrOpts?: string | SandboxBetaCreateOpts, opts?: SandboxBetaCreateOpts): Promise<InstanceType<S>> {
    return typeof templateOrOpts === 'string' ? this.create(templateOrOpts, opts) : this.create(templateOrOpts)
  }

  /**
   * Connects to a sandbox by ID, resuming it if paused (a running sandbox's timeout is only
   * ever extended).
   * @throws SandboxNotFoundError (`Paused sandbox <id> not found`) when there is no such sandbox.
   */
  static async connect<S extends typeof Sandbox>(this: S, sandboxId: string, opts?: SandboxConnectOpts): Promise<InstanceType<S>> {
    const native = await call(NativeSandbox.connect(sandboxId, opts?.timeoutMs, opts?.secure, opts))
    return new this(native) as InstanceType<S>
  }

  /**
   * Connects to this sandbox again, resuming it if paused; refreshes `trafficAccessToken`.
   * @throws SandboxNotFoundError when the sandbox no longer exists.
   */
  async connect(opts?: SandboxConnectOpts): Promise<this> {
    await call(this.#native.reconnect(opts?.timeoutMs, opts?.secure, opts))
    return this
  }

  /**
   * Pauses a sandbox (keeps its files and processes; resume with {@link Sandbox.connect}).
   * @returns `true` if it was paused, `false` if it already was.
   * @throws SandboxNotFoundError when there is no such sandbox.
   */
  static async pause(sandboxId: string, opts?: SandboxApiOpts): Promise<boolean> {
    return call(NativeSandbox.pauseSandbox(sandboxId, opts))
  }

  /** @deprecated Use {@link Sandbox.pause}. */
  static async betaPause(sandboxId: string, opts?: SandboxApiOpts): Promise<boolean> {
    return this.pause(sandboxId, opts)
  }

  /**
   * Pauses this sandbox; resume it with {@link Sandbox.connect}.
   * @returns `true` if it was paused, `false` if it already was.
   */
  async pause(opts?: ConnectionOpts): Promise<boolean> {
    return call(this.#native.pause(opts))
  }

  /** @deprecated Use {@link Sandbox.pause}. */
  async betaPause(opts?: ConnectionOpts): Promise<boolean> {
    return this.pause(opts)
  }

  /**
   * Rolls a running sandbox back to a snapshot in place (sandbank's own; neither cloud SDK has
   * it): the same sandbox ID, access token, timeout, metadata and network; the snapshot's files,
   * and its processes and memory when the snapshot has them. Its running processes end.
   * @param snapshotId the snapshot's ID or name; one of this sandbox's lineage (taken from it, or
   * from what it was started from) unless `force`.
   * @throws SandboxNotFoundError when there is no such sandbox; NotFoundError when there is no
   * such snapshot; SandboxError (409) for a paused sandbox or another lineage's snapshot, with
   * nothing changed.
   */
  static async restore(sandboxId: string, snapshotId: string, opts?: RestoreOpts): Promise<void> {
    await call(NativeSandbox.restoreSandbox(sandboxId, snapshotId, opts?.force, opts))
  }

  /**
   * Rolls this sandbox back to a snapshot in place: see {@link Sandbox.restore}. Its running
   * commands end; handles to them (and PTYs, watchers) stop.
   */
  async restore(snapshotId: string, opts?: RestoreOpts): Promise<void> {
    await call(this.#native.restore(snapshotId, opts?.force, opts))
  }

  /**
   * Resource usage samples of a sandbox (`start`/`end` sent as unix seconds).
   * @throws InvalidArgumentError for an invalid `start` or `end` date.
   */
  static async getMetrics(sandboxId: string, opts?: SandboxMetricsOpts): Promise<SandboxMetrics[]> {
    const m = await call(NativeSandbox.getSandboxMetrics(sandboxId, metricsOpts(opts), opts))
    return m.map(sandboxMetrics)
  }

  /**
   * Resource usage samples of this sandbox.
   * @throws SandboxError when the sandbox's envd is older than 0.1.5.
   */
  async getMetrics(opts?: SandboxMetricsOpts): Promise<SandboxMetrics[]> {
    const m = await call(this.#native.getMetrics(metricsOpts(opts), opts))
    return m.map(sandboxMetrics)
  }

  /**
   * The URL to upload a file to (`POST`, multipart/form-data, part name `file`). Signed with the
   * sandbox's envd access token when it has one, so it works without headers.
   * @param path where to write; without it, the part's file name is the destination.
   * @throws Error when `useSignatureExpiration` is given for an unsecured sandbox.
   */
  async uploadUrl(path?: string, opts?: SandboxUrlOpts): Promise<string> {
    return callSync(() => this.#native.uploadUrl(path, urlOpts(opts)))
  }

  /**
   * The URL to download a file from (`GET`). Signed with the sandbox's envd access token when it
   * has one, so it works without headers.
   * @throws Error when `useSignatureExpiration` is given for an unsecured sandbox.
   */
  async downloadUrl(path: string, opts?: SandboxUrlOpts): Promise<string> {
    return callSync(() => this.#native.downloadUrl(path, urlOpts(opts)))
  }

  /** Lists sandboxes (no request until `nextItems()`). */
  static list(opts?: SandboxListOpts): SandboxPaginator {
    return new SandboxPaginator(opts)
  }

  /** Kills a sandbox: `true` if it was killed, `false` if it was not found. */
  static async kill(sandboxId: string, opts?: SandboxApiOpts): Promise<boolean> {
    return call(NativeSandbox.killSandbox(sandboxId, opts))
  }

  /** Kills this sandbox. */
  async kill(opts?: Pick<SandboxOpts, 'requestTimeoutMs'>): Promise<void> {
    await call(this.#native.kill(opts))
  }

  /**
   * Sets a sandbox's timeout, counted from now, in **milliseconds**.
   * @throws SandboxNotFoundError when there is no such sandbox.
   */
  static async setTimeout(sandboxId: string, timeoutMs: number, opts?: SandboxApiOpts): Promise<void> {
    await call(NativeSandbox.setSandboxTimeout(sandboxId, timeoutMs, opts))
  }

  /** Sets this sandbox's timeout, counted from now, in **milliseconds**. */
  async setTimeout(timeoutMs: number, opts?: Pick<SandboxOpts, 'requestTimeoutMs'>): Promise<void> {
    await call(this.#native.setTimeout(timeoutMs, opts))
  }

  /**
   * Information about a sandbox.
   * @throws SandboxNotFoundError when there is no such sandbox.
   */
  static async getInfo(sandboxId: string, opts?: SandboxApiOpts): Promise<SandboxInfo> {
    return sandboxInfo(await call(NativeSandbox.getSandboxInfo(sandboxId, opts)))
  }

  /**
   * Information about a sandbox, with what reaching its envd takes: the access token of a
   * secured sandbox and its domain.
   * @throws SandboxNotFoundError when there is no such sandbox.
   */
  static async getFullInfo(sandboxId: string, opts?: SandboxApiOpts): Promise<SandboxInfo & { envdAccessToken?: string; sandboxDomain?: string }> {
    const i = await call(NativeSandbox.getSandboxInfo(sandboxId, opts))
    return { ...sandboxInfo(i), envdAccessToken: opt(i.envdAccessToken), sandboxDomain: opt(i.sandboxDomain) }
  }

  /** Information about this sandbox. */
  async getInfo(opts?: Pick<SandboxOpts, 'requestTimeoutMs'>): Promise<SandboxInfo> {
    return sandboxInfo(await call(this.#native.getInfo(opts)))
  }

  /** Whether the sandbox is running (its envd answers). */
  async isRunning(opts?: Pick<ConnectionOpts, 'requestTimeoutMs'>): Promise<boolean> {
    return call(this.#native.isRunning(opts?.requestTimeoutMs))
  }

  /**
   * The host of a port of this sandbox: in the cloud `<port>-<sandboxId>.<sandboxDomain>`; on the
   * local engine `127.0.0.1:<n>`, the port published on loopback (reached with `http://` by
   * Node's fetch, curl and browsers; see the README's "Sandbox ports").
   */
  getHost(port: number): string {
    return this.#native.getHost(port)
  }

  /**
   * Snapshots a sandbox; it keeps running. Use `snapshotId` (or its `name`) with
   * `Sandbox.create()`.
   * @throws SandboxNotFoundError when there is no such sandbox; SandboxError (`409: …`) for a
   * name another live snapshot has, (`400: …`) for a bad name or label, naming it;
   * InvalidArgumentError for a `ttlMs` that is not a number of milliseconds, 0 or more.
   */
  static async createSnapshot(sandboxId: string, opts?: CreateSnapshotOpts): Promise<SnapshotInfo> {
    return snapshotInfo(await call(NativeSandbox.createSnapshotOf(sandboxId, snapshotOpts(opts), opts)))
  }

  /** Snapshots this sandbox; it keeps running. See {@link Sandbox.createSnapshot}. */
  async createSnapshot(opts?: CreateSnapshotOpts): Promise<SnapshotInfo> {
    return snapshotInfo(await call(this.#native.createSnapshot(snapshotOpts(opts), opts)))
  }

  /**
   * Forks a running sandbox: it is snapshotted with its memory (frozen a moment, then it goes
   * on, with its ID and timeout) and `count` sandboxes start from that snapshot, each going on
   * where it was. Each copy starts or fails by itself: one entry per copy, the sandbox or an
   * error of the class another API error with its code would have (`Promise.allSettled`-style).
   * The copies have the sandbox's metadata and network settings.
   * @returns one entry per copy: a sandbox, or why it did not start.
   * @throws SandboxNotFoundError when there is no such running sandbox; SandboxError
   * (`400: Invalid count …`) for a count the server refuses; InvalidArgumentError for a count that
   * is not a finite number, or a `timeoutMs` that is not a number of milliseconds, 0 or more.
   *
   * @example
   * ```ts
   * const [copy] = await Sandbox.fork(sandbox.sandboxId, { count: 1 })
   * if (copy instanceof Sandbox) await copy.commands.run('echo hello from the copy')
   * ```
   */
  static async fork<S extends typeof Sandbox>(this: S, sandboxId: string, opts?: SandboxForkOpts): Promise<Array<InstanceType<S> | Error>> {
    return forkResults(this, await call(NativeSandbox.forkSandbox(sandboxId, forkOpts(opts), opts)))
  }

  /**
   * Forks this sandbox (see {@link Sandbox.fork}); the copies have this sandbox's connection
   * options, with `opts`' over them.
   * @returns one entry per copy: a sandbox, or why it did not start.
   */
  async fork(opts?: SandboxForkOpts): Promise<Array<this | Error>> {
    const cls = this.constructor as typeof Sandbox
    return forkResults(cls, await call(this.#native.fork(forkOpts(opts), opts))) as Array<this | Error>
  }

  /**
   * Clones a running sandbox: like {@link Sandbox.fork}, `count` copies start from one snapshot
   * of it with its memory. The answer has the copies that started (all or none with `strict`)
   * and the snapshot's ID, a template for more copies.
   * The request may take `requestTimeoutMs`, 300 000 unless given.
   * @throws SandboxNotFoundError when there is no such running sandbox; SandboxError
   * (`400: Invalid count …`) for a count the server refuses, and with `strict` when a copy did not
   * start; InvalidArgumentError for a count that is not a finite number, or a `timeoutMs` that is
   * not a number of milliseconds, 0 or more.
   */
  static async clone<S extends typeof Sandbox>(this: S, sandboxId: string, opts?: SandboxCloneOpts): Promise<SandboxCloneResult<InstanceType<S>>> {
    const r = await call(NativeSandbox.cloneSandboxes(sandboxId, cloneOpts(opts), opts))
    const sandboxes = r.sandboxes.map((n) => new this(n) as InstanceType<S>)
    return { sandboxes, count: sandboxes.length, snapshotTemplateId: opt(r.snapshotTemplateId) }
  }

  /**
   * Lists live snapshots, newest first, filtered by the server: of one sandbox (`sandboxId`),
   * by `name`, by labels (`metadata`: all pairs must match).
   */
  static listSnapshots(opts?: SnapshotListOpts): SnapshotPaginator {
    return new SnapshotPaginator(opts)
  }

  /** Lists this sandbox's live snapshots, newest first (filtered as {@link Sandbox.listSnapshots}). */
  listSnapshots(opts?: Omit<SnapshotListOpts, 'sandboxId'>): SnapshotPaginator {
    const query = { name: opts?.name, metadata: opts?.metadata, limit: opts?.limit, nextToken: opts?.nextToken }
    return snapshotPages(callSync(() => this.#native.listSnapshots(query, opts)))
  }

  /**
   * Deletes a snapshot: `true` if deleted, `false` if it was not found.
   * @throws SandboxError while sandboxes started from it still run.
   */
  static async deleteSnapshot(snapshotId: string, opts?: SandboxApiOpts): Promise<boolean> {
    return call(NativeSandbox.deleteSnapshot(snapshotId, opts))
  }

  /**
   * Writes a snapshot (by ID or name) to one archive file at `path`, streamed: its files, with
   * the layers under it (so that it starts on its own elsewhere), its names and labels, and a
   * manifest with the format's version and a SHA-256 digest of the content, zstd-compressed. The
   * file appears whole or not at all. The processes and memory of a `full` snapshot are not in it:
   * imported, it is a `filesystem` snapshot.
   * @throws NotFoundError when there is no such snapshot.
   */
  static async exportSnapshot(snapshotId: string, path: string, opts?: SnapshotArchiveOpts): Promise<SnapshotExportInfo> {
    const sizeBytes = await call(NativeSandbox.exportSnapshotTo(snapshotId, path, opts?.timeoutMs, opts))
    return { path, sizeBytes }
  }

  /**
   * Imports a snapshot from an archive file (made by `exportSnapshot()` or
   * `sandbank snapshots export`), streamed to the server, which checks it whole (format, version,
   * digest) before it publishes anything: a new snapshot ID, its names (unless a live snapshot
   * there has one: then without it) and labels, mode `filesystem`, `sandboxId` `imported`.
   * @throws SandboxError (`400: the snapshot archive is truncated: …`, `… is corrupted: …`,
   * `not a sandbank snapshot archive: …`, `… made over template "…", which this server does not
   * have`) for an archive it refuses; InvalidArgumentError when `path` cannot be read.
   */
  static async importSnapshot(path: string, opts?: SnapshotArchiveOpts): Promise<SnapshotInfo> {
    return snapshotInfo(await call(NativeSandbox.importSnapshotFrom(path, opts?.timeoutMs, opts)))
  }
}
