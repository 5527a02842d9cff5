// The error classes of novita-sandbox's core/errors.ts, and the mapping of the addon's rejections
// (`[Kind] message`, the kind naming a class) onto them.
import { types } from 'node:util'
import type { CommandResult } from './commands'
import type { CommandResultJs } from './internal/native'
import { commandResult } from './internal/values'
import { LogEntry, type LogEntryLevel } from './logger'

/** Base class of the sandbox errors. */
export class SandboxError extends Error {
  constructor(message?: string, stackTrace?: string) {
    super(message)
    this.name = 'SandboxError'
    if (stackTrace) this.stack = stackTrace
  }
}

/** A timeout: of the sandbox (`unavailable`), of the request (`canceled`), or of the command (`deadline_exceeded`). */
export class TimeoutError extends SandboxError {
  constructor(message: string, stackTrace?: string) {
    super(message, stackTrace)
    this.name = 'TimeoutError'
  }
}

/** An invalid argument. */
export class InvalidArgumentError extends SandboxError {
  constructor(message: string, stackTrace?: string) {
    super(message, stackTrace)
    this.name = 'InvalidArgumentError'
  }
}

/** Not enough disk space. */
export class NotEnoughSpaceError extends SandboxError {
  constructor(message: string, stackTrace?: string) {
    super(message, stackTrace)
    this.name = 'NotEnoughSpaceError'
  }
}

/** A resource was not found. @deprecated Use {@link FileNotFoundError} or {@link SandboxNotFoundError}. */
export class NotFoundError extends SandboxError {
  constructor(message: string, stackTrace?: string) {
    super(message, stackTrace)
    this.name = 'NotFoundError'
  }
}

/** A file or directory was not found in the sandbox. */
export class FileNotFoundError extends NotFoundError {
  constructor(message: string, stackTrace?: string) {
    super(message, stackTrace)
    this.name = 'FileNotFoundError'
  }
}

/** The sandbox was not found (it does not exist or no longer runs). */
export class SandboxNotFoundError extends NotFoundError {
  constructor(message: string, stackTrace?: string) {
    super(message, stackTrace)
    this.name = 'SandboxNotFoundError'
  }
}

/** Authentication failed (not a `SandboxError`, as in novita-sandbox). */
export class AuthenticationError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AuthenticationError'
  }
}

/** A template is wrong (a COPY source outside the context), or its envd is too old for this SDK. */
export class TemplateError extends SandboxError {
  constructor(message: string, stackTrace?: string) {
    super(message, stackTrace)
    this.name = 'TemplateError'
  }
}

/** The API's rate limit was exceeded. */
export class RateLimitError extends SandboxError {
  constructor(message: string) {
    super(message)
    this.name = 'RateLimitError'
  }
}

/** A command exited with a non-zero exit code. */
export class CommandExitError extends SandboxError implements CommandResult {
  /** @internal The command's result, as in novita-sandbox (not enumerable: the getters show it). */
  declare readonly result: CommandResult

  constructor(result: CommandResult) {
    super(result.error)
    this.name = 'CommandExitError'
    Object.defineProperty(this, 'result', { value: result, enumerable: false })
  }

  /** The command's exit code. */
  get exitCode(): number {
    return this.result.exitCode
  }

  /** The error message of the command execution. */
  get error(): string | undefined {
    return this.result.error
  }

  /** The command's stdout. */
  get stdout(): string {
    return this.result.stdout
  }

  /** The command's stderr. */
  get stderr(): string {
    return this.result.stderr
  }
}

/**
 * A template build failed (e2b's; not a `SandboxError`). When the build itself failed, `step`
 * names the step as the server counts them (`base`: the `from*` call, `finalize`: the start
 * command, a number: the n-th step), `logEntries` holds that step's log, and `stack` points at
 * the builder call that added the step.
 */
export class BuildError extends Error {
  /** The step that failed, when the server said which. */
  step?: string
  /** The failed step's log lines (what its command printed). */
  logEntries: LogEntry[] = []

  constructor(message: string, stackTrace?: string) {
    super(message)
    this.name = 'BuildError'
    if (stackTrace) this.stack = stackTrace
  }
}

/** The files of a COPY step could not be uploaded. */
export class FileUploadError extends BuildError {
  constructor(message: string, stackTrace?: string) {
    super(message, stackTrace)
    this.name = 'FileUploadError'
  }
}

/** How the addon hands over a build's failure. */
interface BuildFailureJs {
  message: string
  step?: string
  logEntries: { timestamp: string; level: LogEntryLevel; message: string }[]
}

function buildError(json: string): BuildError {
  const f: BuildFailureJs = JSON.parse(json)
  const e = new BuildError(f.message)
  if (f.step !== undefined) e.step = f.step
  e.logEntries = f.logEntries.map((l) => new LogEntry(new Date(l.timestamp), l.level, l.message))
  return e
}

/** The classes a native rejection may name, by name. */
const ERROR_CLASSES: Record<string, new (message: string) => Error> = {
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
  FileUploadError,
}

const TAG = /^\[([A-Za-z]+)\] ([\s\S]*)$/

/** `[Kind] message` → the matching JS error; `undefined` when it names no class. */
function fromTag(tagged: string): Error | undefined {
  const m = TAG.exec(tagged)
  if (!m) return undefined
  const [, kind, message] = m
  if (kind === 'CommandExitError') {
    const r: CommandResultJs = JSON.parse(message)
    return new CommandExitError(commandResult(r))
  }
  if (kind === 'BuildError') return buildError(message)
  if (kind === 'Error') return new Error(message)
  const Cls = ERROR_CLASSES[kind]
  return Cls ? new Cls(message) : undefined
}

/** A native rejection (`[Kind] message`) → the matching JS error; anything else unchanged. */
export function mapError(e: unknown): unknown {
  // isNativeError, not `instanceof Error`: the addon's errors come from the realm that loaded it
  // (under Jest, not the test's realm, whose `Error` is another constructor).
  if (!types.isNativeError(e) || typeof e.message !== 'string') return e
  return fromTag(e.message) ?? e
}

/** An error the addon hands over as a value (`[Kind] message`) → the matching JS error. */
export function taggedError(tagged: string): Error {
  return fromTag(tagged) ?? new SandboxError(tagged)
}
