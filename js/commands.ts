// `sandbox.commands` (Commands) and the handle of a running command or terminal (CommandHandle),
// with the command options and results. Output the addon pulls from envd reaches the
// onStdout/onStderr (or a terminal's onData) callbacks here.
import type { ConnectionOpts, Username } from './connection'
import { mapError } from './errors'
import { call, type CommandOptions, type NativeCommandHandle, type NativeCommands } from './internal/native'
import { commandResult, opt, toBuffer } from './internal/values'

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

/** @internal Where a handle's output goes: a command's stdout and stderr, or a terminal's bytes. */
export interface OutputCallbacks {
  onStdout?: (data: string) => void | Promise<void>
  onStderr?: (data: string) => void | Promise<void>
  onPty?: (data: Uint8Array) => void | Promise<void>
}

/**
 * @internal The handle of a native command; with `streaming`, its output is pulled into the
 * callbacks until it ends. (The constructor is not public, and cannot take the native handle
 * without naming the addon's types in the package's declarations: this sets it instead.)
 */
export let newCommandHandle: (native: NativeCommandHandle, output: OutputCallbacks, streaming: boolean) => CommandHandle

/** A running command. */
export class CommandHandle implements Omit<CommandResult, 'exitCode' | 'error'>, Partial<Pick<CommandResult, 'exitCode' | 'error'>> {
  /** The process ID. */
  declare readonly pid: number
  #native!: NativeCommandHandle
  #pump: Promise<void> = Promise.resolve()
  #iterationError: unknown

  /** Not public: `commands.run()`, `commands.connect()` and `sandbox.pty` make handles. */
  protected constructor() {}

  static {
    newCommandHandle = (native, output, streaming) => {
      const handle = new CommandHandle()
      handle.#native = native
      Object.defineProperty(handle, 'pid', { value: native.pid, enumerable: true })
      if (streaming) handle.#pump = handle.#handleEvents(output)
      return handle
    }
  }

  async #handleEvents({ onStdout, onStderr, onPty }: OutputCallbacks): Promise<void> {
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
  get exitCode(): number | undefined {
    return opt(this.#native.exitCode)
  }

  /** The error message of a failed command. */
  get error(): string | undefined {
    return opt(this.#native.error)
  }

  /** The stderr received so far. */
  get stderr(): string {
    return this.#native.stderr
  }

  /** The stdout received so far. */
  get stdout(): string {
    return this.#native.stdout
  }

  /**
   * Waits for the command to finish.
   * @throws CommandExitError when the exit code is not 0.
   */
  async wait(): Promise<CommandResult> {
    await this.#pump
    if (this.#iterationError) throw this.#iterationError
    return commandResult(await call(this.#native.wait()))
  }

  /** Stops receiving the command's events; the command keeps running. */
  async disconnect(): Promise<void> {
    this.#native.disconnect()
  }

  /** Kills the command (SIGKILL): `true` if killed, `false` if not found. */
  async kill(): Promise<boolean> {
    return call(this.#native.kill())
  }
}

function commandOpts(o: CommandStartOpts | undefined): CommandOptions | undefined {
  if (!o) return undefined
  return { cwd: o.cwd, user: o.user, envs: o.envs, stdin: o.stdin, timeoutMs: o.timeoutMs, requestTimeoutMs: o.requestTimeoutMs }
}

/** @internal `sandbox.commands` of a native sandbox (see {@link newCommandHandle} for why not the constructor). */
export let newCommands: (native: NativeCommands) => Commands

/** `sandbox.commands`: start and manage commands. */
export class Commands {
  #native!: NativeCommands

  /** Not public: every sandbox has its own, `sandbox.commands`. */
  protected constructor() {}

  static {
    newCommands = (native) => {
      const commands = new Commands()
      commands.#native = native
      return commands
    }
  }

  /** Lists running commands and PTY sessions. */
  async list(opts?: CommandRequestOpts): Promise<ProcessInfo[]> {
    const list = await call(this.#native.list(opts?.requestTimeoutMs))
    return list.map((p) => ({ pid: p.pid, ...(p.tag && { tag: p.tag }), args: p.args, envs: p.envs, cmd: p.cmd, ...(p.cwd && { cwd: p.cwd }) }))
  }

  /** Sends data to a command's stdin (it must have been started with `stdin: true`). */
  async sendStdin(pid: number, data: string | Uint8Array, opts?: CommandRequestOpts): Promise<void> {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : toBuffer(data)
    await call(this.#native.sendStdin(pid, buf, opts?.requestTimeoutMs))
  }

  /** Kills a command (SIGKILL): `true` if killed, `false` if not found. */
  async kill(pid: number, opts?: CommandRequestOpts): Promise<boolean> {
    return call(this.#native.kill(pid, opts?.requestTimeoutMs))
  }

  /** Connects to a running command. */
  async connect(pid: number, opts?: CommandConnectOpts): Promise<CommandHandle> {
    const streaming = !!(opts?.onStdout || opts?.onStderr)
    const h = await call(this.#native.connect(pid, opts?.timeoutMs, opts?.requestTimeoutMs, streaming))
    return newCommandHandle(h, { onStdout: opts?.onStdout, onStderr: opts?.onStderr }, streaming)
  }

  /**
   * Runs `/bin/bash -l -c <cmd>` and waits for it.
   * @throws CommandExitError when the exit code is not 0.
   */
  run(cmd: string, opts?: CommandStartOpts & { background?: false }): Promise<CommandResult>
  /** Starts a command in the background. */
  run(cmd: string, opts: CommandStartOpts & { background: true }): Promise<CommandHandle>
  /** Runs or starts a command, depending on `opts.background`. */
  run(cmd: string, opts?: CommandStartOpts & { background?: boolean }): Promise<CommandHandle | CommandResult>
  async run(cmd: string, opts?: CommandStartOpts): Promise<CommandHandle | CommandResult> {
    const streaming = !!(opts?.onStdout || opts?.onStderr)
    if (!opts?.background && !streaming) {
      return commandResult(await call(this.#native.run(cmd, commandOpts(opts))))
    }
    const h = await call(this.#native.start(cmd, commandOpts(opts), streaming))
    const handle = newCommandHandle(h, { onStdout: opts?.onStdout, onStderr: opts?.onStderr }, streaming)
    return opts?.background ? handle : handle.wait()
  }
}
