// Template: e2b's template builder and build API (e2b 2.51; novita-sandbox has none). The builder
// is plain data: each call adds a step exactly as e2b's does, so both SDKs send the same template
// and share the server's cache. Building (hashing and packing COPY files, uploads, the build
// request, its status and log) is the addon's (`crates/client/src/templates`), which the
// `sandbank templates build` CLI shares.
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ConnectionOpts } from './connection'
import { BuildError, InvalidArgumentError, TemplateError } from './errors'
import { callerDirectory, callerStack } from './internal/caller'
import {
  assignTemplateTags,
  call,
  callSync,
  checkCopySource,
  getTemplateBuildStatus,
  getTemplateTags,
  NativeTemplateBuild,
  parseDockerfile,
  removeTemplateTags,
  templateExists,
  templateFilesHash,
} from './internal/native'
import { shellQuote } from './internal/shell'
import { opt } from './internal/values'
import { LogEntry, LogEntryEnd, LogEntryStart, type LogEntryLevel } from './logger'
import { ReadyCmd, waitForFile } from './readycmd'

/** The image `fromBaseImage()` names (the local engine's `base`). */
const DEFAULT_BASE_IMAGE = 'e2bdev/base'

/** A path: a string, or a `file:` URL. */
export type PathLike = string | URL

/** Options of `Template()`. */
export type TemplateOptions = {
  /** The directory `copy()` sources are relative to. @default the directory of the file calling `Template()` */
  fileContextPath?: PathLike
  /** Glob patterns of files `copy()` leaves out (with the context's `.dockerignore`). */
  fileIgnorePatterns?: string[]
}

/** Build options without the connection options. */
export type BasicBuildOptions = {
  /** @deprecated Use the `name` argument of `Template.build()`. */
  alias: string
  /** Tags of the build (beside a `:tag` in its name). */
  tags?: string[]
  /** CPUs of the template's sandboxes. */
  cpuCount?: number
  /** Memory of the template's sandboxes, in MB. */
  memoryMB?: number
  /** Free disk space, in MiB, the template's filesystem should have after its steps (best effort). */
  minFreeDiskMb?: number
  /** Build every step again, cached or not. @default false */
  skipCache?: boolean
  /** Called with each line of the build's log. */
  onBuildLogs?: (logEntry: LogEntry) => void
}

/** Options of `Template.build()`. */
export type BuildOptions = ConnectionOpts & BasicBuildOptions

/** What `Template.build()` built. */
export type BuildInfo = {
  /** @deprecated Use `name`. */
  alias: string
  /** The name as given (with its `:tag`, if any). */
  name: string
  /** The tags the build got. */
  tags: string[]
  templateId: string
  buildId: string
}

/** Options of `Template.getBuildStatus()`. */
export type GetBuildStatusOptions = ConnectionOpts & {
  /** Return the log from this line on. */
  logsOffset?: number
}

/** Where a build is. */
export type TemplateBuildStatus = 'building' | 'waiting' | 'ready' | 'error'

/** Why a build is where it is (a failure's message and step). */
export type BuildStatusReason = {
  message: string
  /** The step that failed: `base`, `finalize`, or the step's number (from 1). */
  step?: string
  logEntries: LogEntry[]
}

/** What `Template.getBuildStatus()` returns. */
export type TemplateBuildStatusResponse = {
  buildID: string
  templateID: string
  status: TemplateBuildStatus
  /** The log from `logsOffset` on. */
  logEntries: LogEntry[]
  /** @deprecated Use `logEntries`. */
  logs: string[]
  reason?: BuildStatusReason
}

/** What `Template.assignTags()` returns. */
export type TemplateTagInfo = {
  buildId: string
  tags: string[]
}

/** One tag of a template. */
export type TemplateTag = {
  tag: string
  buildId: string
  createdAt: Date
}

/** One item of `copyItems()`. */
export type CopyItem = {
  src: PathLike | PathLike[]
  dest: PathLike
  forceUpload?: true
  user?: string
  mode?: number
  resolveSymlinks?: boolean
  gzip?: boolean
}

/** An MCP server `addMcpServer()` installs (in the `mcp-gateway` template). */
export type McpServerName = string

/** A template before its `from*` call: where it starts. */
export interface TemplateFromImage {
  /** Start from `debian:<variant>`. @param variant @default 'stable' */
  fromDebianImage(variant?: string): TemplateBuilder
  /** Start from `ubuntu:<variant>`. @param variant @default 'latest' */
  fromUbuntuImage(variant?: string): TemplateBuilder
  /** Start from `fedora:<variant>`. @param variant @default '44' */
  fromFedoraImage(variant?: string): TemplateBuilder
  /** Start from `alpine:<variant>`. @param variant @default '3.24' */
  fromAlpineImage(variant?: string): TemplateBuilder
  /** Start from `archlinux:<variant>`. @param variant @default 'latest' */
  fromArchImage(variant?: string): TemplateBuilder
  /** Start from `python:<version>`. @param version @default '3' */
  fromPythonImage(version?: string): TemplateBuilder
  /** Start from `node:<variant>`. @param variant @default 'lts' */
  fromNodeImage(variant?: string): TemplateBuilder
  /** Start from `oven/bun:<variant>`. @param variant @default 'latest' */
  fromBunImage(variant?: string): TemplateBuilder
  /** Start from the base image (`e2bdev/base`: the local engine's `base`, Debian 12). */
  fromBaseImage(): TemplateBuilder
  /** Start from an image, with the credentials of a private registry. */
  fromImage(baseImage: string, credentials?: { username: string; password: string }): TemplateBuilder
  /** Start from another template (name, `name:tag` or ID). */
  fromTemplate(template: string): TemplateBuilder
  /**
   * Start from a Dockerfile (its path, or its text): its `FROM` image, its instructions as steps,
   * its `CMD`/`ENTRYPOINT` as the start command.
   */
  fromDockerfile(dockerfileContentOrPath: string): TemplateBuilder
  /** Start from an image in AWS ECR. */
  fromAWSRegistry(image: string, credentials: { accessKeyId: string; secretAccessKey: string; region: string }): TemplateBuilder
  /** Start from an image in Google's registries; `serviceAccountJSON` is a file (relative to the context) or the object. */
  fromGCPRegistry(image: string, credentials: { serviceAccountJSON: object | string }): TemplateBuilder
  /** Build everything from here on again, cached or not. */
  skipCache(): this
}

/** A template's steps. */
export interface TemplateBuilder {
  /** Copy files of the context directory (`src`: a path or glob, relative to it) to `dest`. */
  copy(
    src: PathLike | PathLike[],
    dest: PathLike,
    options?: { forceUpload?: true; user?: string; mode?: number; resolveSymlinks?: boolean; gzip?: boolean },
  ): TemplateBuilder
  /** Several copies, each with its own options. */
  copyItems(items: CopyItem[]): TemplateBuilder
  /** `rm` paths. */
  remove(path: PathLike | PathLike[], options?: { force?: boolean; recursive?: boolean; user?: string }): TemplateBuilder
  /** `mv` a path. */
  rename(src: PathLike, dest: PathLike, options?: { force?: boolean; user?: string }): TemplateBuilder
  /** `mkdir -p` directories. */
  makeDir(path: PathLike | PathLike[], options?: { mode?: number; user?: string }): TemplateBuilder
  /** `ln -s src dest`. */
  makeSymlink(src: PathLike, dest: PathLike, options?: { user?: string; force?: boolean }): TemplateBuilder
  /** Run a shell command (several: joined by `&&`), as `user` if given. */
  runCmd(command: string, options?: { user?: string }): TemplateBuilder
  runCmd(commands: string[], options?: { user?: string }): TemplateBuilder
  runCmd(commandOrCommands: string | string[], options?: { user?: string }): TemplateBuilder
  /** The working directory of later steps, and of the template's sandboxes. */
  setWorkdir(workdir: PathLike): TemplateBuilder
  /** The user of later steps, and of the template's sandboxes (made if the image has none). */
  setUser(user: string): TemplateBuilder
  /** `pip install` (as root; with `g: false`, `--user`); no packages: the current directory. */
  pipInstall(packages?: string | string[], options?: { g?: boolean }): TemplateBuilder
  /** `npm install` (`g`: globally, as root; `dev`: `--save-dev`); no packages: package.json. */
  npmInstall(packages?: string | string[], options?: { g?: boolean; dev?: boolean }): TemplateBuilder
  /** `bun install` (`g`: globally, as root; `dev`: `--dev`); no packages: package.json. */
  bunInstall(packages?: string | string[], options?: { g?: boolean; dev?: boolean }): TemplateBuilder
  /** `apt-get install -y` (after `apt-get update`), as root. */
  aptInstall(packages: string | string[], options?: { noInstallRecommends?: boolean; fixMissing?: boolean }): TemplateBuilder
  /** Install MCP servers (only on the `mcp-gateway` template). */
  addMcpServer(servers: McpServerName | McpServerName[]): TemplateBuilder
  /** `git clone` a repository. */
  gitClone(url: string, path?: PathLike, options?: { branch?: string; depth?: number; user?: string }): TemplateBuilder
  /** Environment variables of later steps and of the template's sandboxes. */
  setEnvs(envs: Record<string, string>): TemplateBuilder
  /** Build everything from here on again, cached or not. */
  skipCache(): this
  /** The command the template's sandboxes start with, and how to tell it is ready. */
  setStartCmd(startCommand: string, readyCommand: string | ReadyCmd): TemplateFinal
  /** How to tell the template is ready. */
  setReadyCmd(readyCommand: string | ReadyCmd): TemplateFinal
  /** Prebuild a devcontainer (only on the `devcontainer` template). */
  betaDevContainerPrebuild(devcontainerDirectory: string): TemplateBuilder
  /** Start a devcontainer (only on the `devcontainer` template). */
  betaSetDevContainerStart(devcontainerDirectory: string): TemplateFinal
}

/** A template with its start command: ready to build. */
export interface TemplateFinal {}

/** A template in any state. */
export type TemplateClass = TemplateBuilder | TemplateFinal

/** One step as sent (e2b's instruction object; undefined keys are not sent). */
interface Instruction {
  type: 'RUN' | 'COPY' | 'ENV' | 'WORKDIR' | 'USER'
  args: string[]
  force: boolean
  forceUpload?: boolean
  resolveSymlinks?: boolean
  gzip?: boolean
  filesHash?: string
}

function pathString(p: PathLike): string {
  return p instanceof URL && p.protocol === 'file:' ? fileURLToPath(p) : p.toString()
}

function list<T>(v: T | T[]): T[] {
  return Array.isArray(v) ? v : [v]
}

/** `0o755` → `"0755"`. */
function padOctal(mode: number): string {
  return mode.toString(8).padStart(4, '0')
}

function readyCmd(r: string | ReadyCmd): string {
  return typeof r === 'string' ? r : r.getCmd()
}

/** `Template.build(t, name, opts)` or the deprecated `Template.build(t, {alias, …})`. */
function buildArgs(nameOrOptions: string | BuildOptions, options?: Omit<BuildOptions, 'alias'>): [string, Partial<BuildOptions>] {
  const [name, opts] = typeof nameOrOptions === 'string' ? [nameOrOptions, options ?? {}] : [nameOrOptions?.alias, nameOrOptions ?? {}]
  if (!name) throw new TemplateError('Name must be provided')
  return [name, opts]
}

function logEntry(e: { timestamp: number; level: string; message: string }): LogEntry {
  return new LogEntry(new Date(e.timestamp), e.level as LogEntryLevel, e.message)
}

/** The builder and the build API; use it through {@link Template}. */
export class TemplateBase implements TemplateFromImage, TemplateBuilder, TemplateFinal {
  #baseImage: string | undefined = DEFAULT_BASE_IMAGE
  #baseTemplate: string | undefined
  #registryConfig: Record<string, string> | undefined
  #startCmd: string | undefined
  #readyCmd: string | undefined
  #force = false
  #forceNextLayer = false
  #instructions: Instruction[] = []
  readonly #fileContextPath: string
  readonly #fileIgnorePatterns: string[]
  /** Where the user made the `from*` call, each step, and the start command (for BuildError's stack). */
  #fromTrace: string | undefined
  #stepTraces: (string | undefined)[] = []
  #finalTrace: string | undefined

  constructor(options?: TemplateOptions) {
    const context = options?.fileContextPath !== undefined ? pathString(options.fileContextPath) : callerDirectory() ?? '.'
    this.#fileContextPath = resolve(context)
    this.#fileIgnorePatterns = options?.fileIgnorePatterns ?? []
  }

  /** `template`, checked to be one of this SDK's. */
  static #of(template: TemplateClass): TemplateBase {
    if (!(template instanceof TemplateBase)) throw new TemplateError("Expected a template made with sandbank's Template()")
    return template
  }

  /** The template as JSON (what a build sends), with the COPY steps' file hashes unless `computeHashes` is false. */
  static toJSON(template: TemplateClass, computeHashes: boolean = true): Promise<string> {
    return TemplateBase.#of(template).toJSON(computeHashes)
  }

  /** The template as a Dockerfile (not for templates built from another template). */
  static toDockerfile(template: TemplateClass): string {
    return TemplateBase.#of(template).toDockerfile()
  }

  /**
   * Builds the template as `name` (`name` or `name:tag`) and waits for the build to end.
   * @throws BuildError when the build fails: its `step`, `logEntries` and `stack` say which step and why.
   */
  static build(template: TemplateClass, name: string, options?: Omit<BuildOptions, 'alias'>): Promise<BuildInfo>
  /** @deprecated Use `Template.build(template, name, options)`. */
  static build(template: TemplateClass, options: BuildOptions): Promise<BuildInfo>
  static async build(template: TemplateClass, nameOrOptions: string | BuildOptions, options?: Omit<BuildOptions, 'alias'>): Promise<BuildInfo> {
    const [name, opts] = buildArgs(nameOrOptions, options)
    opts.onBuildLogs?.(new LogEntryStart(new Date(), 'Build started'))
    try {
      return await TemplateBase.#of(template).#build(name, opts, false)
    } finally {
      opts.onBuildLogs?.(new LogEntryEnd(new Date(), 'Build finished'))
    }
  }

  /** Starts building the template as `name`, and returns once the build started (see `getBuildStatus`). */
  static buildInBackground(template: TemplateClass, name: string, options?: Omit<BuildOptions, 'alias'>): Promise<BuildInfo>
  /** @deprecated Use `Template.buildInBackground(template, name, options)`. */
  static buildInBackground(template: TemplateClass, options: BuildOptions): Promise<BuildInfo>
  static async buildInBackground(
    template: TemplateClass,
    nameOrOptions: string | BuildOptions,
    options?: Omit<BuildOptions, 'alias'>,
  ): Promise<BuildInfo> {
    const [name, opts] = buildArgs(nameOrOptions, options)
    return TemplateBase.#of(template).#build(name, opts, true)
  }

  /** Where a build is, with its log from `logsOffset` on. */
  static async getBuildStatus(data: Pick<BuildInfo, 'templateId' | 'buildId'>, options?: GetBuildStatusOptions): Promise<TemplateBuildStatusResponse> {
    const s = await call(getTemplateBuildStatus(data.templateId, data.buildId, options?.logsOffset, options))
    const reason = s.reason ?? undefined
    return {
      buildID: s.buildId,
      templateID: s.templateId,
      status: s.status as TemplateBuildStatus,
      logEntries: s.logEntries.map(logEntry),
      logs: s.logs,
      reason: reason && { message: reason.message, step: opt(reason.step), logEntries: reason.logEntries.map(logEntry) },
    }
  }

  /** Whether a template of this name exists. */
  static async exists(name: string, options?: ConnectionOpts): Promise<boolean> {
    return call(templateExists(name, options))
  }

  /** @deprecated Use `Template.exists`. */
  static async aliasExists(alias: string, options?: ConnectionOpts): Promise<boolean> {
    return call(templateExists(alias, options))
  }

  /** Gives the build `targetName` (`name:tag`) more tags. */
  static async assignTags(targetName: string, tags: string | string[], options?: ConnectionOpts): Promise<TemplateTagInfo> {
    const r = await call(assignTemplateTags(targetName, list(tags), options))
    return { buildId: r.buildId, tags: r.tags }
  }

  /** Removes tags of template `name`. */
  static async removeTags(name: string, tags: string | string[], options?: ConnectionOpts): Promise<void> {
    await call(removeTemplateTags(name, list(tags), options))
  }

  /** The tags of a template (by ID or name). */
  static async getTags(templateId: string, options?: ConnectionOpts): Promise<TemplateTag[]> {
    const tags = await call(getTemplateTags(templateId, options))
    return tags.map((t) => ({ tag: t.tag, buildId: t.buildId, createdAt: new Date(t.createdAt) }))
  }

  fromDebianImage(variant: string = 'stable'): TemplateBuilder {
    return this.fromImage(`debian:${variant}`)
  }

  fromUbuntuImage(variant: string = 'latest'): TemplateBuilder {
    return this.fromImage(`ubuntu:${variant}`)
  }

  fromFedoraImage(variant: string = '44'): TemplateBuilder {
    return this.fromImage(`fedora:${variant}`)
  }

  fromAlpineImage(variant: string = '3.24'): TemplateBuilder {
    return this.fromImage(`alpine:${variant}`)
  }

  fromArchImage(variant: string = 'latest'): TemplateBuilder {
    return this.fromImage(`archlinux:${variant}`)
  }

  fromPythonImage(version: string = '3'): TemplateBuilder {
    return this.fromImage(`python:${version}`)
  }

  fromNodeImage(variant: string = 'lts'): TemplateBuilder {
    return this.fromImage(`node:${variant}`)
  }

  fromBunImage(variant: string = 'latest'): TemplateBuilder {
    return this.fromImage(`oven/bun:${variant}`)
  }

  fromBaseImage(): TemplateBuilder {
    return this.fromImage(DEFAULT_BASE_IMAGE)
  }

  fromImage(baseImage: string, credentials?: { username: string; password: string }): TemplateBuilder {
    if (credentials && (!credentials.username || !credentials.password)) {
      throw new InvalidArgumentError('Both username and password are required when providing registry credentials', callerStack())
    }
    const registry = credentials && { type: 'registry', username: credentials.username, password: credentials.password }
    return this.#from(baseImage, undefined, registry)
  }

  fromTemplate(template: string): TemplateBuilder {
    return this.#from(undefined, template, undefined)
  }

  fromDockerfile(dockerfileContentOrPath: string): TemplateBuilder {
    const d = callSync(() => parseDockerfile(dockerfileContentOrPath))
    for (const w of d.warnings) console.warn(w)
    for (const { kind, args } of d.steps) {
      if (kind === 'RUN') this.runCmd(args[0])
      else if (kind === 'COPY') this.copy(args[0], args[1], { user: args[2] })
      else if (kind === 'ENV') this.setEnvs(Object.fromEntries(args.flatMap((_, i) => (i % 2 ? [] : [[args[i], args[i + 1]]]))))
      else if (kind === 'WORKDIR') this.setWorkdir(args[0])
      else if (kind === 'USER') this.setUser(args[0])
      else if (kind === 'START') this.setStartCmd(args[0], args[1])
    }
    return this.#from(d.baseImage, undefined, undefined)
  }

  fromAWSRegistry(image: string, credentials: { accessKeyId: string; secretAccessKey: string; region: string }): TemplateBuilder {
    return this.#from(image, undefined, {
      type: 'aws',
      awsAccessKeyId: credentials.accessKeyId,
      awsSecretAccessKey: credentials.secretAccessKey,
      awsRegion: credentials.region,
    })
  }

  fromGCPRegistry(image: string, credentials: { serviceAccountJSON: object | string }): TemplateBuilder {
    const json = credentials.serviceAccountJSON
    const serviceAccountJson = typeof json === 'string' ? readFileSync(join(this.#fileContextPath, json), 'utf-8') : JSON.stringify(json)
    return this.#from(image, undefined, { type: 'gcp', serviceAccountJson })
  }

  /** Where the template starts: an image (with its registry's credentials) or another template. */
  #from(image: string | undefined, template: string | undefined, registry: Record<string, string> | undefined): this {
    this.#baseImage = image
    this.#baseTemplate = template
    // As in e2b, only a call that names credentials changes them.
    if (registry) this.#registryConfig = registry
    if (this.#forceNextLayer) this.#force = true
    this.#fromTrace = callerStack()
    return this
  }

  #push(instruction: Instruction): this {
    this.#instructions.push(instruction)
    this.#stepTraces.push(callerStack())
    return this
  }

  copy(
    src: PathLike | PathLike[],
    dest: PathLike,
    options?: { forceUpload?: true; user?: string; mode?: number; resolveSymlinks?: boolean; gzip?: boolean },
  ): TemplateBuilder {
    for (const s of list(src)) {
      const source = pathString(s)
      try {
        callSync(() => checkCopySource(source))
      } catch (e) {
        if (e instanceof Error) e.stack = `${e.name}: ${e.message}\n${callerStack() ?? ''}`
        throw e
      }
      this.#push({
        type: 'COPY',
        args: [source, pathString(dest), options?.user ?? '', options?.mode ? padOctal(options.mode) : ''],
        force: options?.forceUpload || this.#forceNextLayer,
        forceUpload: options?.forceUpload,
        resolveSymlinks: options?.resolveSymlinks,
        gzip: options?.gzip,
      })
    }
    return this
  }

  copyItems(items: CopyItem[]): TemplateBuilder {
    for (const item of items) {
      this.copy(item.src, item.dest, {
        forceUpload: item.forceUpload,
        user: item.user,
        mode: item.mode,
        resolveSymlinks: item.resolveSymlinks,
        gzip: item.gzip,
      })
    }
    return this
  }

  remove(path: PathLike | PathLike[], options?: { force?: boolean; recursive?: boolean; user?: string }): TemplateBuilder {
    const args = ['rm', ...(options?.recursive ? ['-r'] : []), ...(options?.force ? ['-f'] : [])]
    args.push(...list(path).map((p) => shellQuote(pathString(p))))
    return this.runCmd(args.join(' '), { user: options?.user })
  }

  rename(src: PathLike, dest: PathLike, options?: { force?: boolean; user?: string }): TemplateBuilder {
    const args = ['mv', shellQuote(pathString(src)), shellQuote(pathString(dest)), ...(options?.force ? ['-f'] : [])]
    return this.runCmd(args.join(' '), { user: options?.user })
  }

  makeDir(path: PathLike | PathLike[], options?: { mode?: number; user?: string }): TemplateBuilder {
    const args = ['mkdir', '-p', ...(options?.mode ? [`-m ${padOctal(options.mode)}`] : [])]
    args.push(...list(path).map((p) => shellQuote(pathString(p))))
    return this.runCmd(args.join(' '), { user: options?.user })
  }

  makeSymlink(src: PathLike, dest: PathLike, options?: { user?: string; force?: boolean }): TemplateBuilder {
    const args = ['ln', '-s', ...(options?.force ? ['-f'] : []), shellQuote(pathString(src)), shellQuote(pathString(dest))]
    return this.runCmd(args.join(' '), { user: options?.user })
  }

  runCmd(command: string, options?: { user?: string }): TemplateBuilder
  runCmd(commands: string[], options?: { user?: string }): TemplateBuilder
  runCmd(commandOrCommands: string | string[], options?: { user?: string }): TemplateBuilder
  runCmd(commandOrCommands: string | string[], options?: { user?: string }): TemplateBuilder {
    const args = [list(commandOrCommands).join(' && '), ...(options?.user ? [options.user] : [])]
    return this.#push({ type: 'RUN', args, force: this.#forceNextLayer })
  }

  setWorkdir(workdir: PathLike): TemplateBuilder {
    return this.#push({ type: 'WORKDIR', args: [pathString(workdir)], force: this.#forceNextLayer })
  }

  setUser(user: string): TemplateBuilder {
    return this.#push({ type: 'USER', args: [user], force: this.#forceNextLayer })
  }

  pipInstall(packages?: string | string[], options?: { g?: boolean }): TemplateBuilder {
    const g = options?.g ?? true
    const args = ['pip', 'install', ...(g ? [] : ['--user']), ...(packages ? list(packages) : ['.'])]
    return this.runCmd(args.join(' '), { user: g ? 'root' : undefined })
  }

  npmInstall(packages?: string | string[], options?: { g?: boolean; dev?: boolean }): TemplateBuilder {
    const args = ['npm', 'install', ...(options?.g ? ['-g'] : []), ...(options?.dev ? ['--save-dev'] : []), ...(packages ? list(packages) : [])]
    return this.runCmd(args.join(' '), { user: options?.g ? 'root' : undefined })
  }

  bunInstall(packages?: string | string[], options?: { g?: boolean; dev?: boolean }): TemplateBuilder {
    const args = ['bun', 'install', ...(options?.g ? ['-g'] : []), ...(options?.dev ? ['--dev'] : []), ...(packages ? list(packages) : [])]
    return this.runCmd(args.join(' '), { user: options?.g ? 'root' : undefined })
  }

  aptInstall(packages: string | string[], options?: { noInstallRecommends?: boolean; fixMissing?: boolean }): TemplateBuilder {
    const flags = `${options?.noInstallRecommends ? '--no-install-recommends ' : ''}${options?.fixMissing ? '--fix-missing ' : ''}`
    const install = `DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y ${flags}${list(packages).join(' ')}`
    return this.runCmd(['apt-get update', install], { user: 'root' })
  }

  addMcpServer(servers: McpServerName | McpServerName[]): TemplateBuilder {
    if (this.#baseTemplate !== 'mcp-gateway') throw new BuildError('MCP servers can only be added to mcp-gateway template', callerStack())
    return this.runCmd(`mcp-gateway pull ${list(servers).join(' ')}`, { user: 'root' })
  }

  gitClone(url: string, path?: PathLike, options?: { branch?: string; depth?: number; user?: string }): TemplateBuilder {
    const args = ['git', 'clone', shellQuote(url)]
    if (options?.branch) args.push(`--branch ${shellQuote(options.branch)}`, '--single-branch')
    if (options?.depth) args.push(`--depth ${options.depth}`)
    if (path) args.push(shellQuote(pathString(path)))
    return this.runCmd(args.join(' '), { user: options?.user })
  }

  setEnvs(envs: Record<string, string>): TemplateBuilder {
    if (Object.keys(envs).length === 0) return this
    return this.#push({ type: 'ENV', args: Object.entries(envs).flat(), force: this.#forceNextLayer })
  }

  skipCache(): this {
    this.#forceNextLayer = true
    return this
  }

  setStartCmd(startCommand: string, readyCommand: string | ReadyCmd): TemplateFinal {
    this.#startCmd = startCommand
    this.#readyCmd = readyCmd(readyCommand)
    this.#finalTrace = callerStack()
    return this
  }

  setReadyCmd(readyCommand: string | ReadyCmd): TemplateFinal {
    this.#readyCmd = readyCmd(readyCommand)
    this.#finalTrace = callerStack()
    return this
  }

  betaDevContainerPrebuild(devcontainerDirectory: string): TemplateBuilder {
    if (this.#baseTemplate !== 'devcontainer') throw new BuildError('Devcontainers can only used in the devcontainer template', callerStack())
    return this.runCmd(`devcontainer build --workspace-folder ${shellQuote(devcontainerDirectory)}`, { user: 'root' })
  }

  betaSetDevContainerStart(devcontainerDirectory: string): TemplateFinal {
    if (this.#baseTemplate !== 'devcontainer') throw new BuildError('Devcontainers can only used in the devcontainer template', callerStack())
    const dir = shellQuote(devcontainerDirectory)
    return this.setStartCmd(
      `sudo devcontainer up --workspace-folder ${dir} && sudo /prepare-exec.sh ${dir} | sudo tee /devcontainer.sh > /dev/null && sudo chmod +x /devcontainer.sh && sudo touch /devcontainer.up`,
      waitForFile('/devcontainer.up'),
    )
  }

  /** The template as JSON (what a build sends), with the COPY steps' file hashes when `computeHashes`. */
  async toJSON(computeHashes?: boolean): Promise<string> {
    const steps = computeHashes ? await this.#withHashes() : this.#instructions
    return JSON.stringify(this.#serialize(steps), undefined, 2)
  }

  /** The template as a Dockerfile (not for templates built from another template). */
  toDockerfile(): string {
    if (this.#baseTemplate !== undefined) {
      throw new Error(
        'Cannot convert template built from another template to Dockerfile. Templates based on other templates can only be built using the E2B API.',
      )
    }
    if (this.#baseImage === undefined) throw new Error('No base image specified for template')
    let out = `FROM ${this.#baseImage}\n`
    for (const i of this.#instructions) {
      if (i.type === 'RUN') out += `RUN ${i.args[0]}\n`
      else if (i.type === 'COPY') out += `COPY ${i.args[0]} ${i.args[1]}\n`
      else if (i.type === 'ENV') out += `ENV ${i.args.flatMap((a, n) => (n % 2 ? [] : [`${a}=${i.args[n + 1]}`])).join(' ')}\n`
      else out += `${i.type} ${i.args.join(' ')}\n`
    }
    if (this.#startCmd) out += `ENTRYPOINT ${this.#startCmd}\n`
    return out
  }

  async #withHashes(): Promise<Instruction[]> {
    return Promise.all(
      this.#instructions.map(async (i) => {
        if (i.type !== 'COPY') return i
        const hash = templateFilesHash(i.args[0], i.args[1], this.#fileContextPath, this.#fileIgnorePatterns, i.resolveSymlinks ?? false)
        return { ...i, filesHash: await call(hash) }
      }),
    )
  }

  #serialize(steps: Instruction[]): Record<string, unknown> {
    const data: Record<string, unknown> = { startCmd: this.#startCmd, readyCmd: this.#readyCmd, steps, force: this.#force }
    if (this.#baseImage !== undefined) data.fromImage = this.#baseImage
    if (this.#baseTemplate !== undefined) data.fromTemplate = this.#baseTemplate
    if (this.#registryConfig !== undefined) data.fromImageRegistry = this.#registryConfig
    return data
  }

  /** Runs a build in the addon, passing its log to `onBuildLogs` as it comes. */
  async #build(name: string, opts: Partial<BuildOptions>, background: boolean): Promise<BuildInfo> {
    const options = {
      name,
      tags: opts.tags,
      cpuCount: opts.cpuCount,
      memoryMB: opts.memoryMB,
      minFreeDiskMb: opts.minFreeDiskMb,
      skipCache: opts.skipCache,
      fileContextPath: this.#fileContextPath,
      fileIgnorePatterns: this.#fileIgnorePatterns,
    }
    const native = await call(NativeTemplateBuild.start(JSON.stringify(this.#serialize(this.#instructions)), options, background, opts))
    for (let e = await native.nextLog(); e !== null; e = await native.nextLog()) opts.onBuildLogs?.(logEntry(e))
    try {
      const info = await call(native.finish())
      return { alias: name, name, tags: opt(info.tags) as string[], templateId: info.templateId, buildId: info.buildId }
    } catch (e) {
      throw this.#located(e)
    }
  }

  /** A failed build's error, its `stack` at the builder call of the step that failed. */
  #located(e: unknown): unknown {
    if (!(e instanceof BuildError) || e.step === undefined) return e
    const n = Number(e.step)
    const trace = e.step === 'base' ? this.#fromTrace : e.step === 'finalize' ? this.#finalTrace : Number.isInteger(n) ? this.#stepTraces[n - 1] : undefined
    if (trace) e.stack = `${e.name}: ${e.message}\n${trace}`
    return e
  }
}

/** `Template` is both the class and a function that makes a builder: `Template(options)`. */
export type TemplateFactory = typeof TemplateBase & ((options?: TemplateOptions) => TemplateFromImage)

/**
 * The template builder and build API: `Template(options)` (or `new Template(options)`) makes a
 * builder; `Template.build(template, name, options)` builds it.
 *
 * @example
 * ```ts
 * import { Template, waitForPort } from 'sandbank'
 *
 * const template = Template()
 *   .fromBaseImage()
 *   .copy('app/', '/home/user/app')
 *   .pipInstall(['flask'])
 *   .setStartCmd('python3 /home/user/app/main.py', waitForPort(8000))
 * await Template.build(template, 'my-app', { onBuildLogs: defaultBuildLogger() })
 * ```
 */
export const Template = new Proxy(TemplateBase, {
  apply: (target, _this, args: [TemplateOptions?]) => new target(...args),
}) as TemplateFactory
