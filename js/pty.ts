// `sandbox.pty`: pseudo-terminals (`/bin/bash -i -l` on a terminal of the given size), each a
// process whose handle is a CommandHandle and whose output reaches `onData` as bytes.
import { newCommandHandle, type CommandHandle, type CommandRequestOpts } from './commands'
import type { Username } from './connection'
import { InvalidArgumentError } from './errors'
import { call, type NativePty } from './internal/native'
import { toBuffer } from './internal/values'

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

/** A terminal dimension must at least be a number; the native side checks its range. */
function ptyDimension(name: string, v: unknown): number {
  if (typeof v === 'number') return v
  const shown = typeof v === 'string' ? `"${v}"` : v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v)
  throw new InvalidArgumentError(`Invalid PTY size: ${name} must be an integer from 1 to 65535, got ${shown}`)
}

/** @internal `sandbox.pty` of a native sandbox (not the constructor: see `newCommandHandle`). */
export let newPty: (native: NativePty) => Pty

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
export class Pty {
  #native!: NativePty

  /** Not public: every sandbox has its own, `sandbox.pty`. */
  protected constructor() {}

  static {
    newPty = (native) => {
      const pty = new Pty()
      pty.#native = native
      return pty
    }
  }

  /**
   * Starts a terminal; resolves once it runs.
   * @throws InvalidArgumentError when `cols` or `rows` is not an integer from 1 to 65535.
   */
  async create(opts: PtyCreateOpts): Promise<CommandHandle> {
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
    return newCommandHandle(h, { onPty: opts.onData }, streaming)
  }

  /** Connects to a running terminal; `onData` gets its output from now on. */
  async connect(pid: number, opts?: PtyConnectOpts): Promise<CommandHandle> {
    const streaming = typeof opts?.onData === 'function'
    const h = await call(this.#native.connect(pid, opts?.timeoutMs, opts?.requestTimeoutMs, streaming))
    return newCommandHandle(h, { onPty: opts?.onData }, streaming)
  }

  /** Sends bytes to a terminal, as if typed (`\x03` is Ctrl-C). */
  async sendInput(pid: number, data: Uint8Array, opts?: CommandRequestOpts): Promise<void> {
    await call(this.#native.sendInput(pid, toBuffer(data), opts?.requestTimeoutMs))
  }

  /**
   * Resizes a terminal (its foreground process gets SIGWINCH).
   * @throws InvalidArgumentError when `cols` or `rows` is not an integer from 1 to 65535.
   */
  async resize(pid: number, size: { cols: number; rows: number }, opts?: CommandRequestOpts): Promise<void> {
    const cols = ptyDimension('cols', size?.cols)
    const rows = ptyDimension('rows', size?.rows)
    await call(this.#native.resize(pid, cols, rows, opts?.requestTimeoutMs))
  }

  /** Kills a terminal (SIGKILL): `true` if killed, `false` if not found. */
  async kill(pid: number, opts?: CommandRequestOpts): Promise<boolean> {
    return call(this.#native.kill(pid, opts?.requestTimeoutMs))
  }
}
