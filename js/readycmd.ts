// Ready commands of a template's start command (e2b's ReadyCmd and its waitFor* helpers): a
// shell command the build retries until it exits 0, after which the template is snapshotted.
import { shellQuote } from './internal/shell'

/** A ready check: a shell command that exits 0 once the start command is ready. */
export class ReadyCmd {
  private readonly cmd: string

  constructor(cmd: string) {
    this.cmd = cmd
  }

  /** The shell command. */
  getCmd(): string {
    return this.cmd
  }
}

/** Ready once something listens on `port` (TCP or UDP; uses `ss`). */
export function waitForPort(port: number): ReadyCmd {
  return new ReadyCmd(`[ -n "$(ss -Htuln sport = :${port})" ]`)
}

/** Ready once `url` answers with `statusCode` (uses `curl`). @param statusCode @default 200 */
export function waitForURL(url: string, statusCode: number = 200): ReadyCmd {
  return new ReadyCmd(`curl -s -o /dev/null -w "%{http_code}" ${shellQuote(url)} | grep -q "${statusCode}"`)
}

/** Ready once a process named `processName` runs (uses `pgrep`). */
export function waitForProcess(processName: string): ReadyCmd {
  return new ReadyCmd(`pgrep ${shellQuote(processName)} > /dev/null`)
}

/** Ready once the file `filename` exists. */
export function waitForFile(filename: string): ReadyCmd {
  return new ReadyCmd(`[ -f ${shellQuote(filename)} ]`)
}

/** Ready after `timeout` **milliseconds** (whole seconds, at least 1). */
export function waitForTimeout(timeout: number): ReadyCmd {
  return new ReadyCmd(`sleep ${Math.max(1, Math.floor(timeout / 1000))}`)
}
