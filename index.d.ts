// Types of the `sandbank` package: the surface of novita-sandbox 2.1.1 (Sandbox, commands, files,
// snapshots, paginators, errors), implemented by a native addon.
//
// With no API key and no URL configured (options or NOVITA_*/E2B_* variables) every call uses the
// local engine: SANDBANK_URL (+ SANDBANK_API_KEY), else a running local daemon (found through
// `daemon.json` in $SANDBANK_DATA_DIR, $XDG_DATA_HOME/sandbank or ~/.local/share/sandbank), else a
// `sandbank serve` started in the background that stops by itself after 5 idle minutes.

// ── Connection ───────────────────────────────────────────────────────────────────────────────

/** Options of every call that talks to a server. Unset fields come from the environment. */
export interface ConnectionOpts {
  /** API key, sent as `X-API-KEY`. @default process.env.NOVITA_API_KEY (then E2B_API_KEY) */
  apiKey?: string
  /** Access token, sent as `Authorization: Bearer`. @default process.env.NOVITA_ACCESS_TOKEN */
  accessToken?: string
  /** Domain of the API. @default process.env.NOVITA_DOMAIN ?? 'us-phx-1.sandbox.novita.ai' */
  domain?: string
  /** URL of the control plane. @default `https://api.${domain}` (or NOVITA_API_URL) */
  apiUrl?: string
  /** One URL for every sandbox's envd (routed by the `Novita-Sandbox-Id` header). @default NOVITA_SANDBOX_URL */
  sandboxUrl?: string
  /** Debug mode: no API calls, envd at localhost:49983. @default NOVITA_DEBUG === 'true' */
  debug?: boolean
  /** Timeout of each HTTP request in **milliseconds**; `0` disables it. @default 60_000 */
  requestTimeoutMs?: number
  /** Extra headers sent with every request. */
  headers?: Record<string, string>
}

/** The connection options of control-plane calls. */
export type SandboxApiOpts = Partial<Pick<ConnectionOpts, 'apiKey' | 'headers' | 'debug' | 'domain' | 'requestTimeoutMs' | 'apiUrl' | 'sandboxUrl' | 'accessToken'>>

/** User to run as inside the sandbox. */
export type Username = 'root' | 'user' | (string & {})

// ── Sandbox ──────────────────────────────────────────────────────────────────────────────────

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

/** Options of `Sandbox.list()`. */
export interface SandboxListOpts extends SandboxApiOpts {
  query?: {
    /** Only sandboxes with all these metadata pairs. */
    metadata?: Record<string, string>
    /** Only sandboxes in these states. */
    state?: SandboxState[]
  }
  /** Page size (server default 100). */
  limit?: number
  /** Start from this page token. */
  nextToken?: string
}

/** A snapshot: use `snapshotId` as the template of `Sandbox.create()`. */
export interface SnapshotInfo {
  /** `<template id>:<tag>`, e.g. `abc…:default`. */
  snapshotId: string
  /** Names of the snapshot, when it has any. */
  names?: string[]
  /** The sandbox it was taken from. */
  sandboxId?: string
  /** The snapshot that sandbox was started from. */
  parentSnapshotId?: string
  createdAt?: Date
  /** Bytes of file data the snapshot added. */
  sizeBytes?: number
  /** What was captured: `filesystem` (the local engine) or `memory` (filesystem and memory). */
  mode?: string
}

/** Options of `Sandbox.listSnapshots()`. */
export interface SnapshotListOpts extends SandboxApiOpts {
  /** Only snapshots of this sandbox. */
  sandboxId?: string
  /** Page size (server default 100). */
  limit?: number
  nextToken?: string
}

declare abstract class BasePaginator<T> implements AsyncIterable<T> {
  /** `true` while there may be more items (initially `true`). */
  get hasNext(): boolean
  /** The token of the next page, if any. */
  get nextToken(): string | undefined
  /**
   * Fetches the next page.
   * @throws Error `No more items to fetch` once `hasNext` is `false`.
   */
  nextItems(): Promise<T[]>
  /** Every item of every remaining page: `for await (const item of paginator)`. */
  [Symbol.asyncIterator](): AsyncGenerator<T, void, undefined>
}

/** Pages of sandboxes. */
export declare class SandboxPaginator extends BasePaginator<SandboxInfo> {
  constructor(opts?: SandboxListOpts)
}

/** Pages of snapshots, newest first. */
export declare class SnapshotPaginator extends BasePaginator<SnapshotInfo> {
  constructor(opts?: SnapshotListOpts)
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
export declare class Sandbox {
  protected static readonly defaultTemplate: string
  protected static readonly defaultSandboxTimeoutMs: number

  /** @internal Use `Sandbox.create()` or `Sandbox.connect()`. */
  constructor(native: unknown, connection: ConnectionOpts)

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
  /** The traffic access token, if the sandbox has one. */
  get trafficAccessToken(): string | undefined

  /**
   * Creates a sandbox from the default template (`base`), or `opts.template`.
   * @throws InvalidArgumentError for an unknown `lifecycle.onTimeout`, or `autoResume` without `onTimeout: 'pause'`.
   */
  static create<S extends typeof Sandbox>(this: S, opts?: SandboxOpts): Promise<InstanceType<S>>
  /** Creates a sandbox from a template or a snapshot ID. */
  static create<S extends typeof Sandbox>(this: S, template: string, opts?: SandboxOpts): Promise<InstanceType<S>>

  /**
   * Like {@link Sandbox.create}, and takes the deprecated `autoPause` option.
   * @throws InvalidArgumentError for an unknown `lifecycle.onTimeout`, or `autoResume` without `onTimeout: 'pause'`.
   */
  static betaCreate<S extends typeof Sandbox>(this: S, opts?: SandboxBetaCreateOpts): Promise<InstanceType<S>>
  /** Like {@link Sandbox.create}, and takes the deprecated `autoPause` option. */
  static betaCreate<S extends typeof Sandbox>(this: S, template: string, opts?: SandboxBetaCreateOpts): Promise<InstanceType<S>>

  /**
   * Connects to a sandbox by ID, resuming it if paused (a running sandbox's timeout is only
   * ever extended).
   * @throws SandboxNotFoundError (`Paused sandbox <id> not found`) when there is no such sandbox.
   */
  static connect<S extends typeof Sandbox>(this: S, sandboxId: string, opts?: SandboxConnectOpts): Promise<InstanceType<S>>
  /**
   * Connects to this sandbox again, resuming it if paused; refreshes `trafficAccessToken`.
   * @throws SandboxNotFoundError when the sandbox no longer exists.
   */
  connect(opts?: SandboxConnectOpts): Promise<this>

  /**
   * Pauses a sandbox (keeps its files and processes; resume with {@link Sandbox.connect}).
   * @returns `true` if it was paused, `false` if it already was.
   * @throws SandboxNotFoundError when there is no such sandbox.
   */
  static pause(sandboxId: string, opts?: SandboxApiOpts): Promise<boolean>
  /** @deprecated Use {@link Sandbox.pause}. */
  static betaPause(sandboxId: string, opts?: SandboxApiOpts): Promise<boolean>
  /**
   * Pauses this sandbox; resume it with {@link Sandbox.connect}.
   * @returns `true` if it was paused, `false` if it already was.
   */
  pause(opts?: ConnectionOpts): Promise<boolean>
  /** @deprecated Use {@link Sandbox.pause}. */
  betaPause(opts?: ConnectionOpts): Promise<boolean>

  /**
   * Resource usage samples of a sandbox (`start`/`end` sent as unix seconds).
   * @throws InvalidArgumentError for an invalid `start` or `end` date.
   */
  static getMetrics(sandboxId: string, opts?: SandboxMetricsOpts): Promise<SandboxMetrics[]>
  /**
   * Resource usage samples of this sandbox.
   * @throws SandboxError when the sandbox's envd is older than 0.1.5.
   */
  getMetrics(opts?: SandboxMetricsOpts): Promise<SandboxMetrics[]>

  /**
   * The URL to upload a file to (`POST`, multipart/form-data, part name `file`). Signed with the
   * sandbox's envd access token when it has one, so it works without headers.
   * @param path where to write; without it, the part's file name is the destination.
   * @throws Error when `useSignatureExpiration` is given for an unsecured sandbox.
   */
  uploadUrl(path?: string, opts?: SandboxUrlOpts): Promise<string>
  /**
   * The URL to download a file from (`GET`). Signed with the sandbox's envd access token when it
   * has one, so it works without headers.
   * @throws Error when `useSignatureExpiration` is given for an unsecured sandbox.
   */
  downloadUrl(path: string, opts?: SandboxUrlOpts): Promise<string>

  /** Lists sandboxes (no request until `nextItems()`). */
  static list(opts?: SandboxListOpts): SandboxPaginator

  /** Kills a sandbox: `true` if it was killed, `false` if it was not found. */
  static kill(sandboxId: string, opts?: SandboxApiOpts): Promise<boolean>
  /** Kills this sandbox. */
  kill(opts?: Pick<SandboxOpts, 'requestTimeoutMs'>): Promise<void>

  /**
   * Sets a sandbox's timeout, counted from now, in **milliseconds**.
   * @throws SandboxNotFoundError when there is no such sandbox.
   */
  static setTimeout(sandboxId: string, timeoutMs: number, opts?: SandboxApiOpts): Promise<void>
  /** Sets this sandbox's timeout, counted from now, in **milliseconds**. */
  setTimeout(timeoutMs: number, opts?: Pick<SandboxOpts, 'requestTimeoutMs'>): Promise<void>

  /**
   * Information about a sandbox.
   * @throws SandboxNotFoundError when there is no such sandbox.
   */
  static getInfo(sandboxId: string, opts?: SandboxApiOpts): Promise<SandboxInfo>
  /** Information about this sandbox. */
  getInfo(opts?: Pick<SandboxOpts, 'requestTimeoutMs'>): Promise<SandboxInfo>
  /**
   * Information about a sandbox, with what reaching its envd takes: the access token of a
   * secured sandbox and its domain.
   * @throws SandboxNotFoundError when there is no such sandbox.
   */
  static getFullInfo(sandboxId: string, opts?: SandboxApiOpts): Promise<SandboxInfo & { envdAccessToken?: string; sandboxDomain?: string }>

  /** Whether the sandbox is running (its envd answers). */
  isRunning(opts?: Pick<ConnectionOpts, 'requestTimeoutMs'>): Promise<boolean>

  /** The host of a port of this sandbox: `<port>-<sandboxId>.<sandboxDomain>`. */
  getHost(port: number): string

  /**
   * Snapshots a sandbox; it keeps running. Use `snapshotId` with `Sandbox.create()`.
   * @throws SandboxNotFoundError when there is no such sandbox.
   */
  static createSnapshot(sandboxId: string, opts?: SandboxApiOpts): Promise<SnapshotInfo>
  /** Snapshots this sandbox; it keeps running. */
  createSnapshot(opts?: SandboxApiOpts): Promise<SnapshotInfo>

  /** Lists snapshots, newest first (optionally of one sandbox). */
  static listSnapshots(opts?: SnapshotListOpts): SnapshotPaginator
  /** Lists this sandbox's snapshots, newest first. */
  listSnapshots(opts?: Omit<SnapshotListOpts, 'sandboxId'>): SnapshotPaginator

  /**
   * Deletes a snapshot: `true` if deleted, `false` if it was not found.
   * @throws SandboxError while sandboxes started from it still run.
   */
  static deleteSnapshot(snapshotId: string, opts?: SandboxApiOpts): Promise<boolean>
}

export default Sandbox

// ── Commands ─────────────────────────────────────────────────────────────────────────────────

/** A finished command. */
export interface CommandResult {
  /** The exit code; `0` on success. */
  exitCode: number
  /** The error message of a failed command (e.g. `exit status 3`). */
  error?: string
  stdout: string
  stderr: string
}

/** Options of command requests. */
export interface CommandRequestOpts extends Partial<Pick<ConnectionOpts, 'requestTimeoutMs'>> {}

/** Options of `commands.run()`. */
export interface CommandStartOpts extends CommandRequestOpts {
  /** Return a `CommandHandle` as soon as the command started. */
  background?: boolean
  /** Working directory. @default the user's home directory */
  cwd?: string
  /** User to run as. @default the template's default user (`user`) */
  user?: Username
  /** Environment variables of this command (over the sandbox's). @default {} */
  envs?: Record<string, string>
  /** Called with each piece of stdout. */
  onStdout?: (data: string) => void | Promise<void>
  /** Called with each piece of stderr. */
  onStderr?: (data: string) => void | Promise<void>
  /** Keep stdin open for `sendStdin`. @default false */
  stdin?: boolean
  /** Time limit of the command in **milliseconds**; `0` = none. @default 60_000 */
  timeoutMs?: number
}

/** Options of `commands.connect()`. */
export type CommandConnectOpts = Pick<CommandStartOpts, 'onStderr' | 'onStdout' | 'timeoutMs'> & CommandRequestOpts

/** A process running in the sandbox. */
export interface ProcessInfo {
  pid: number
  tag?: string
  cmd: string
  args: string[]
  envs: Record<string, string>
  cwd?: string
}

/** A running command. */
export declare class CommandHandle implements Omit<CommandResult, 'exitCode' | 'error'>, Partial<Pick<CommandResult, 'exitCode' | 'error'>> {
  /** @internal */
  protected constructor()
  /** The process ID. */
  readonly pid: number
  /** The exit code; `undefined` while the command runs. */
  get exitCode(): number | undefined
  /** The error message of a failed command. */
  get error(): string | undefined
  /** The stderr received so far. */
  get stderr(): string
  /** The stdout received so far. */
  get stdout(): string
  /**
   * Waits for the command to finish.
   * @throws CommandExitError when the exit code is not 0.
   */
  wait(): Promise<CommandResult>
  /** Stops receiving the command's events; the command keeps running. */
  disconnect(): Promise<void>
  /** Kills the command (SIGKILL): `true` if killed, `false` if not found. */
  kill(): Promise<boolean>
}

// ── PTY ──────────────────────────────────────────────────────────────────────────────────────

/** Options of `pty.create()`. */
export interface PtyCreateOpts extends CommandRequestOpts {
  /** Columns of the terminal: an integer from 1 to 65535. */
  cols: number
  /** Rows of the terminal: an integer from 1 to 65535. */
  rows: number
  /** Called with each piece of the terminal's output (raw bytes, escape sequences included). */
  onData: (data: Uint8Array) => void | Promise<void>
  /** Time limit of the terminal in **milliseconds**; `0` = none. @default 60_000 */
  timeoutMs?: number
  /** User to run the shell as. @default the template's default user (`user`) */
  user?: Username
  /** Environment variables, over `TERM=xterm-256color`, `LANG=C.UTF-8`, `LC_ALL=C.UTF-8`. @default {} */
  envs?: Record<string, string>
  /** Working directory. @default the user's home directory */
  cwd?: string
}

/** Options of `pty.connect()`. */
export type PtyConnectOpts = Pick<PtyCreateOpts, 'onData' | 'timeoutMs'> & CommandRequestOpts

/**
 * `sandbox.pty`: pseudo-terminals running `/bin/bash -i -l`. Each is a process: it shows in
 * `commands.list()`, and `wait()` on its handle resolves when the shell exits.
 *
 * @example
 * ```ts
 * const term = await sandbox.pty.create({ cols: 80, rows: 24, onData: (d) => process.stdout.write(d) })
 * await sandbox.pty.sendInput(term.pid, new TextEncoder().encode('ls\n'))
 * await sandbox.pty.resize(term.pid, { cols: 120, rows: 40 })
 * await sandbox.pty.kill(term.pid)
 * ```
 */
export declare class Pty {
  /** @internal */
  protected constructor()
  /**
   * Starts a terminal; resolves once it runs.
   * @throws InvalidArgumentError when `cols` or `rows` is not an integer from 1 to 65535.
   */
  create(opts: PtyCreateOpts): Promise<CommandHandle>
  /** Connects to a running terminal; `onData` gets its output from now on. */
  connect(pid: number, opts?: PtyConnectOpts): Promise<CommandHandle>
  /** Sends bytes to a terminal, as if typed (`\x03` is Ctrl-C). */
  sendInput(pid: number, data: Uint8Array, opts?: CommandRequestOpts): Promise<void>
  /**
   * Resizes a terminal (its foreground process gets SIGWINCH).
   * @throws InvalidArgumentError when `cols` or `rows` is not an integer from 1 to 65535.
   */
  resize(pid: number, size: { cols: number; rows: number }, opts?: CommandRequestOpts): Promise<void>
  /** Kills a terminal (SIGKILL): `true` if killed, `false` if not found. */
  kill(pid: number, opts?: CommandRequestOpts): Promise<boolean>
}

/** `sandbox.commands`: start and manage commands. */
export declare class Commands {
  /** @internal */
  protected constructor()
  /** Lists running commands and PTY sessions. */
  list(opts?: CommandRequestOpts): Promise<ProcessInfo[]>
  /** Sends data to a command's stdin (it must have been started with `stdin: true`). */
  sendStdin(pid: number, data: string | Uint8Array, opts?: CommandRequestOpts): Promise<void>
  /** Kills a command (SIGKILL): `true` if killed, `false` if not found. */
  kill(pid: number, opts?: CommandRequestOpts): Promise<boolean>
  /** Connects to a running command. */
  connect(pid: number, opts?: CommandConnectOpts): Promise<CommandHandle>
  /**
   * Runs `/bin/bash -l -c <cmd>` and waits for it.
   * @throws CommandExitError when the exit code is not 0.
   */
  run(cmd: string, opts?: CommandStartOpts & { background?: false }): Promise<CommandResult>
  /** Starts a command in the background. */
  run(cmd: string, opts: CommandStartOpts & { background: true }): Promise<CommandHandle>
  /** Runs or starts a command, depending on `opts.background`. */
  run(cmd: string, opts?: CommandStartOpts & { background?: boolean }): Promise<CommandHandle | CommandResult>
}

// ── Filesystem ───────────────────────────────────────────────────────────────────────────────

/** Type of a filesystem object. */
export declare const FileType: { readonly FILE: 'file'; readonly DIR: 'dir' }
export type FileType = (typeof FileType)[keyof typeof FileType]

/** A written file. */
export interface WriteInfo {
  name: string
  type?: FileType
  path: string
}

/** A filesystem object. */
export interface EntryInfo extends WriteInfo {
  /** Size in bytes. */
  size: number
  /** Mode and permission bits. */
  mode: number
  /** e.g. `-rw-r--r--`. */
  permissions: string
  owner: string
  group: string
  modifiedTime?: Date
  symlinkTarget?: string
}

/** One file of `files.write([...])`. */
export type WriteEntry = { path: string; data: string | ArrayBuffer | Blob | ReadableStream }

/** Options of filesystem requests. */
export interface FilesystemRequestOpts extends Partial<Pick<ConnectionOpts, 'requestTimeoutMs'>> {
  /** User for the operation (ownership of created files, relative paths). */
  user?: Username
}

/** Options of `files.write()`. */
export interface FilesystemWriteOpts extends FilesystemRequestOpts {
  /** Accepted for compatibility; uploads are not compressed. */
  gzip?: boolean
  /** Upload as `application/octet-stream` (one request per file) instead of multipart. @default false */
  useOctetStream?: boolean
}

/** Options of `files.read()`. */
export interface FilesystemReadOpts extends FilesystemRequestOpts {
  /** Accepted for compatibility. */
  gzip?: boolean
}

/** Options of `files.list()`. */
export interface FilesystemListOpts extends FilesystemRequestOpts {
  /** How deep to list (at least 1). @default 1 */
  depth?: number
}

/** What happened to a watched filesystem object. */
export declare const FilesystemEventType: {
  /** Permissions or ownership changed. */
  readonly CHMOD: 'chmod'
  /** Created. */
  readonly CREATE: 'create'
  /** Removed. */
  readonly REMOVE: 'remove'
  /** Renamed or moved away (the new name shows up as `create`). */
  readonly RENAME: 'rename'
  /** Written to. */
  readonly WRITE: 'write'
}
export type FilesystemEventType = (typeof FilesystemEventType)[keyof typeof FilesystemEventType]

/** A change in a watched directory. */
export interface FilesystemEvent {
  /** Path of the object, relative to the watched directory. */
  name: string
  type: FilesystemEventType
}

/** Options of `files.watchDir()`. */
export interface WatchOpts extends FilesystemRequestOpts {
  /** Time limit of the watch in **milliseconds**; `0` = none. @default 60_000 */
  timeoutMs?: number
  /**
   * Called once when the watch ends: without an argument when the sandbox ended it, with the
   * error otherwise (a `TimeoutError` after `timeoutMs`, and after `stop()`).
   */
  onExit?: (err?: Error) => void | Promise<void>
  /** Watch subdirectories too. @default false */
  recursive?: boolean
}

/** A running directory watch. */
export declare class WatchHandle {
  /** @internal */
  protected constructor()
  /** Stops watching; no `onEvent` call follows. */
  stop(): Promise<void>
}

/** `sandbox.files`: the sandbox's filesystem. */
export declare class Filesystem {
  /** @internal */
  protected constructor()
  /**
   * Reads a file as text.
   * @throws FileNotFoundError when it does not exist.
   */
  read(path: string, opts?: FilesystemReadOpts & { format?: 'text' }): Promise<string>
  /** Reads a file as bytes. */
  read(path: string, opts?: FilesystemReadOpts & { format: 'bytes' }): Promise<Uint8Array>
  /** Reads a file as a `Blob`. */
  read(path: string, opts?: FilesystemReadOpts & { format: 'blob' }): Promise<Blob>
  /** Reads a file as a stream of bytes. */
  read(path: string, opts?: FilesystemReadOpts & { format: 'stream' }): Promise<ReadableStream<Uint8Array>>
  /** Writes a file (parents are created, an existing file is replaced). */
  write(path: string, data: string | ArrayBuffer | Blob | ReadableStream, opts?: FilesystemWriteOpts): Promise<WriteInfo>
  /** Writes several files. */
  write(files: WriteEntry[], opts?: FilesystemWriteOpts): Promise<WriteInfo[]>
  /** Writes several files. */
  writeFiles(files: WriteEntry[], opts?: FilesystemWriteOpts): Promise<WriteInfo[]>
  /**
   * Lists a directory.
   * @throws InvalidArgumentError when `depth` is below 1; FileNotFoundError when it does not exist.
   */
  list(path: string, opts?: FilesystemListOpts): Promise<EntryInfo[]>
  /** Creates a directory and its parents: `false` if it already exists. */
  makeDir(path: string, opts?: FilesystemRequestOpts): Promise<boolean>
  /** Renames (moves) a file or directory. */
  rename(oldPath: string, newPath: string, opts?: FilesystemRequestOpts): Promise<EntryInfo>
  /** Removes a file or directory (recursively). */
  remove(path: string, opts?: FilesystemRequestOpts): Promise<void>
  /** Whether a file or directory exists. */
  exists(path: string, opts?: FilesystemRequestOpts): Promise<boolean>
  /** Information about a file or directory. */
  getInfo(path: string, opts?: FilesystemRequestOpts): Promise<EntryInfo>
  /**
   * Watches a directory; resolves once the watch runs.
   * @param onEvent called with each change.
   * @throws FileNotFoundError when the directory does not exist; InvalidArgumentError when it is a file.
   */
  watchDir(path: string, onEvent: (event: FilesystemEvent) => void | Promise<void>, opts?: WatchOpts): Promise<WatchHandle>
}

// ── Errors ───────────────────────────────────────────────────────────────────────────────────

/** Base class of the sandbox errors. */
export declare class SandboxError extends Error {
  constructor(message?: string, stackTrace?: string)
}
/** A timeout: of the sandbox (`unavailable`), of the request (`canceled`), or of the command (`deadline_exceeded`). */
export declare class TimeoutError extends SandboxError {
  constructor(message: string, stackTrace?: string)
}
/** An invalid argument. */
export declare class InvalidArgumentError extends SandboxError {
  constructor(message: string, stackTrace?: string)
}
/** Not enough disk space. */
export declare class NotEnoughSpaceError extends SandboxError {
  constructor(message: string, stackTrace?: string)
}
/** A resource was not found. @deprecated Use {@link FileNotFoundError} or {@link SandboxNotFoundError}. */
export declare class NotFoundError extends SandboxError {
  constructor(message: string, stackTrace?: string)
}
/** A file or directory was not found in the sandbox. */
export declare class FileNotFoundError extends NotFoundError {
  constructor(message: string, stackTrace?: string)
}
/** The sandbox was not found (it does not exist or no longer runs). */
export declare class SandboxNotFoundError extends NotFoundError {
  constructor(message: string, stackTrace?: string)
}
/** Authentication failed (not a `SandboxError`, as in novita-sandbox). */
export declare class AuthenticationError extends Error {
  constructor(message: string)
}
/** The template's envd is too old for this SDK. */
export declare class TemplateError extends SandboxError {
  constructor(message: string, stackTrace?: string)
}
/** The API's rate limit was exceeded. */
export declare class RateLimitError extends SandboxError {
  constructor(message: string)
}
/** A command exited with a non-zero exit code. */
export declare class CommandExitError extends SandboxError implements CommandResult {
  constructor(result: CommandResult)
  get exitCode(): number
  get error(): string | undefined
  get stdout(): string
  get stderr(): string
}

// ── Package ──────────────────────────────────────────────────────────────────────────────────

/** Arguments of {@link getSignature}. */
export interface SignatureOpts {
  /** Path of the file in the sandbox. */
  path: string
  /** `read` (download) or `write` (upload). */
  operation: 'read' | 'write'
  /** The user; `undefined` is the sandbox's default user. */
  user: string | undefined
  /** Make the signature expire this many **seconds** from now. */
  expirationInSeconds?: number
  /** The sandbox's envd access token. */
  envdAccessToken?: string
}

/**
 * The signature of a `/files` URL: `v1_` + base64(SHA-256 of `path:operation:user:token[:expiration]`),
 * `=` padding removed; `expiration` in unix seconds, `null` without one.
 * @throws Error when `envdAccessToken` is not set.
 */
export declare function getSignature(opts: SignatureOpts): Promise<{ signature: string; expiration: number | null }>

/** The version of the native addon (the Rust crate's version). */
export declare function version(): string

/**
 * Absolute path of the `sandbank` server binary: `$SANDBANK_BIN` when set, else the one
 * `npm run build` copies to `<package>/native/sandbank`.
 */
export declare function serverBinaryPath(): string
