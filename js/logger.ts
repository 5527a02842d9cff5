// The lines of a template build's log (e2b's LogEntry, with its start and end markers), and
// defaultBuildLogger, which prints them.

/** Severity of a log line. */
export type LogEntryLevel = 'debug' | 'info' | 'warn' | 'error'

// CSI sequences (colours, cursor moves) and OSC sequences (titles), as a terminal would eat them.
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)/g

/** One line of a template build's log. */
export class LogEntry {
  readonly timestamp: Date
  readonly level: LogEntryLevel
  /** Without terminal escape sequences. */
  readonly message: string

  constructor(timestamp: Date, level: LogEntryLevel, message: string) {
    this.timestamp = timestamp
    this.level = level
    this.message = message.replace(ANSI, '')
  }

  toString(): string {
    return `[${this.timestamp.toISOString()}] [${this.level}] ${this.message}`
  }
}

/** The first line of every `Template.build` log (`Build started`). */
export class LogEntryStart extends LogEntry {
  constructor(timestamp: Date, message: string) {
    super(timestamp, 'debug', message)
  }
}

/** The last line of every `Template.build` log, failed or not (`Build finished`). */
export class LogEntryEnd extends LogEntry {
  constructor(timestamp: Date, message: string) {
    super(timestamp, 'debug', message)
  }
}

const ORDER: Record<LogEntryLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 }
const LABELS: Record<LogEntryLevel, [string, string]> = {
  debug: ['DEBUG', '90'],
  info: ['INFO ', '33'],
  warn: ['WARN ', '91'],
  error: ['ERROR', '31'],
}

/**
 * A build logger for `onBuildLogs`: prints each line at `minLevel` or above to stdout with the
 * time since the build started (`1.2s  | 10:04:05 INFO  message`), the level coloured on a
 * terminal.
 *
 * @example
 * ```ts
 * await Template.build(template, 'my-template', { onBuildLogs: defaultBuildLogger({ minLevel: 'debug' }) })
 * ```
 */
export function defaultBuildLogger(options?: { minLevel?: LogEntryLevel }): (logEntry: LogEntry) => void {
  const minLevel = options?.minLevel ?? 'info'
  let started = Date.now()
  return (entry: LogEntry) => {
    if (entry instanceof LogEntryStart) {
      started = Date.now()
      return
    }
    if (entry instanceof LogEntryEnd || ORDER[entry.level] < ORDER[minLevel]) return
    const [label, colour] = LABELS[entry.level] ?? LABELS.info
    const tty = process.stdout.isTTY
    const elapsed = `${((Date.now() - started) / 1000).toFixed(1)}s`.padEnd(5)
    const time = entry.timestamp.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    process.stdout.write(`${elapsed} | ${time} ${tty ? `\u001b[${colour}m${label}\u001b[0m` : label} ${entry.message}\n`)
  }
}
