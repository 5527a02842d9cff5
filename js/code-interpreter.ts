// `sandbank/code-interpreter`: the surface of `novita-sandbox/code-interpreter` and
// `@e2b/code-interpreter` (the same names and shapes): a Sandbox whose default template runs a
// Jupyter-backed interpreter server on port 49999, and the classes its executions come back as.
// The wire format is the official SDKs' (POST /execute streams NDJSON lines; /contexts…); the
// server in the sandbox is sandbank's (crates/server/src/templates/interpreter/server.py) locally,
// the cloud's in the cloud.

import { Sandbox as BaseSandbox } from './sandbox'
import { InvalidArgumentError, NotFoundError, SandboxError, TimeoutError } from './errors'

export * from './index'

/** The port the interpreter server listens on in the sandbox (the SDKs' `JUPYTER_PORT`). */
const JUPYTER_PORT = 49999
/** How long an execution may stream before it is abandoned, by default (the SDKs'). */
const DEFAULT_TIMEOUT_MS = 60_000
/** How long the server may take to answer a request's headers, by default. */
const DEFAULT_REQUEST_TIMEOUT_MS = 60_000

/** A line of output of an execution (stdout or stderr). */
export class OutputMessage {
  constructor(
    /** The output line. */
    readonly line: string,
    /** Unix epoch in microseconds (as the official SDKs give it). */
    readonly timestamp: number,
    /** Whether it is stderr. */
    readonly error: boolean,
  ) {}

  toString(): string {
    return this.line
  }
}

/** An error raised by the executed code: its name, value and traceback. */
export class ExecutionError {
  constructor(
    /** The error's name (`ZeroDivisionError`). */
    public name: string,
    /** Its value (message). */
    public value: string,
    /** The traceback, as the kernel printed it (with its ANSI colours). */
    public traceback: string,
  ) {}
}

/** What kind of chart a `Result.chart` is. */
export type ChartType = 'line' | 'scatter' | 'bar' | 'pie' | 'box_and_whisker' | 'superchart' | 'unknown'

/** How an axis maps values (matplotlib's scale names, `datetime` and `categorical`). */
export type ScaleType = 'linear' | 'datetime' | 'categorical' | 'log' | 'symlog' | 'logit' | 'function' | 'functionlog' | 'asinh'

/** A chart read from a matplotlib figure: its kind, its title and its data. */
export type Chart = {
  type: ChartType
  title: string
  elements: any[]
}

/** A chart with axes. */
export type Chart2D = Chart & {
  x_label?: string
  y_label?: string
  x_unit?: string
  y_unit?: string
}

/** One series of a line or scatter chart: `[x, y]` pairs (dates as ISO 8601 strings). */
export type PointData = {
  label: string
  points: [number | string, number | string][]
}

export type PointChart = Chart2D & {
  x_ticks: (number | string)[]
  x_scale: ScaleType
  x_tick_labels: string[]
  y_ticks: (number | string)[]
  y_scale: ScaleType
  y_tick_labels: string[]
  elements: PointData[]
}

export type LineChart = PointChart & { type: 'line' }
export type ScatterChart = PointChart & { type: 'scatter' }

/** One bar: its category (the tick label under it), its height and its series' label. */
export type BarData = {
  label: string
  value: number
  group: string
}
export type BarChart = Chart2D & { type: 'bar'; elements: BarData[] }

/** One wedge: its label, its angle in degrees and its radius. */
export type PieData = {
  label: string
  angle: number
  radius: number
}
export type PieChart = Chart & { type: 'pie'; elements: PieData[] }

export type BoxAndWhiskerData = {
  label: string
  min: number
  first_quartile: number
  median: number
  third_quartile: number
  max: number
  outliers: number[]
}
export type BoxAndWhiskerChart = Chart2D & { type: 'box_and_whisker'; elements: BoxAndWhiskerData[] }

/** A figure with several plots: one chart per plot. */
export type SuperChart = Chart & { type: 'superchart'; elements: Chart[] }

export type ChartTypes = LineChart | ScatterChart | BarChart | PieChart | BoxAndWhiskerChart | SuperChart

/** MIME-like keys a result may have (`text`, `png`, …). */
export type MIMEType = string

/** A result as the server sends it: its formats, by key. */
export type RawData = {
  [key: MIMEType]: any
}

/** What a cell displayed or evaluated to, in every format the kernel gave it. */
export class Result {
  /** Text representation of the result. */
  readonly text?: string
  /** HTML representation of the data. */
  readonly html?: string
  /** Markdown representation of the data. */
  readonly markdown?: string
  /** SVG representation of the data. */
  readonly svg?: string
  /** PNG representation of the data, base64. */
  readonly png?: string
  /** JPEG representation of the data, base64. */
  readonly jpeg?: string
  /** PDF representation of the data, base64. */
  readonly pdf?: string
  /** LaTeX representation of the data. */
  readonly latex?: string
  /** JSON representation of the data. */
  readonly json?: string
  /** JavaScript representation of the data. */
  readonly javascript?: string
  /** A pandas DataFrame's columns: `{column: [values]}` (NaN as null, dates as ISO 8601). */
  readonly data?: Record<string, unknown>
  /** A matplotlib figure's data: its kind (line, scatter, bar, pie, several as a superchart),
   * axes and points. */
  readonly chart?: ChartTypes
  /** Formats beyond the ones above, by MIME type. */
  readonly extra?: any
  /** Every format as sent. */
  readonly raw: RawData

  constructor(
    rawData: RawData,
    /** Whether this is the cell's value (not something it displayed). */
    readonly isMainResult: boolean,
  ) {
    const data = { ...rawData }
    delete data['type']
    delete data['is_main_result']
    this.text = data['text']
    this.html = data['html']
    this.markdown = data['markdown']
    this.svg = data['svg']
    this.png = data['png']
    this.jpeg = data['jpeg']
    this.pdf = data['pdf']
    this.latex = data['latex']
    this.json = data['json']
    this.javascript = data['javascript']
    this.data = data['data']
    this.chart = data['chart']
    this.raw = data
    const known = ['plain', 'html', 'markdown', 'svg', 'png', 'jpeg', 'pdf', 'latex', 'json', 'javascript', 'data', 'chart', 'extra', 'text']
    const extra: Record<string, unknown> = {}
    for (const key of Object.keys(data)) if (!known.includes(key)) extra[key] = data[key]
    this.extra = extra
  }

  /** The formats the result has (beyond `text`). */
  formats(): string[] {
    const formats: string[] = []
    for (const f of ['html', 'markdown', 'svg', 'png', 'jpeg', 'pdf', 'latex', 'json', 'javascript', 'data'] as const) {
      if (this[f]) formats.push(f)
    }
    for (const key of Object.keys(this.extra ?? {})) formats.push(key)
    return formats
  }

  toJSON() {
    return {
      text: this.text,
      html: this.html,
      markdown: this.markdown,
      svg: this.svg,
      png: this.png,
      jpeg: this.jpeg,
      pdf: this.pdf,
      latex: this.latex,
      json: this.json,
      javascript: this.javascript,
      ...(Object.keys(this.extra ?? {}).length > 0 ? { extra: this.extra } : {}),
    }
  }
}

/** What the code printed. */
export type Logs = {
  stdout: string[]
  stderr: string[]
}

/** An execution of code: its results, output, error and number. */
export class Execution {
  constructor(
    /** What the cell displayed and evaluated to. */
    public results: Result[] = [],
    /** What it printed. */
    public logs: Logs = { stdout: [], stderr: [] },
    /** The error it raised, if any. */
    public error?: ExecutionError,
    /** The execution's number in its context. */
    public executionCount?: number,
  ) {}

  /** The text of the main result (the cell's value), if any. */
  get text(): string | undefined {
    for (const r of this.results) if (r.isMainResult) return r.text
    return undefined
  }

  toJSON() {
    return { results: this.results, logs: this.logs, error: this.error }
  }
}

/** A context: one kernel, with its own variables. */
export type Context = {
  /** The context's ID. */
  id: string
  /** Its language. */
  language: string
  /** Its working directory. */
  cwd: string
}

/** The languages the SDKs name; sandbank's local interpreter runs Python, JavaScript and
 * TypeScript (Deno's kernel) and Bash, and answers the others with an error naming them. */
export type RunCodeLanguage = 'python' | 'javascript' | 'typescript' | 'r' | 'java' | 'bash' | (string & {})

export interface RunCodeOpts {
  /** Called with each line of stdout as it comes. */
  onStdout?: (output: OutputMessage) => Promise<any> | any
  /** Called with each line of stderr as it comes. */
  onStderr?: (output: OutputMessage) => Promise<any> | any
  /** Called with each result as it comes. */
  onResult?: (data: Result) => Promise<any> | any
  /** Called with the error the code raised. */
  onError?: (error: ExecutionError) => Promise<any> | any
  /** Environment variables for this execution only. */
  envs?: Record<string, string>
  /** How long the execution may take, in ms (default 60 000; 0: no limit). */
  timeoutMs?: number
  /** How long the server may take to start answering, in ms (default 60 000). */
  requestTimeoutMs?: number
}

export interface CreateCodeContextOpts {
  /** The context's working directory (default `/home/user`). */
  cwd?: string
  /** Its language (default `python`). */
  language?: RunCodeLanguage
  /** How long the request may take, in ms. */
  requestTimeoutMs?: number
}

/**
 * A sandbox with a code interpreter: `runCode` runs code in a stateful Jupyter kernel and
 * returns its results (text, HTML, images, …), output and error.
 *
 * ```ts
 * import { Sandbox } from 'sandbank/code-interpreter'
 * const sandbox = await Sandbox.create()
 * await sandbox.runCode('x = 1')
 * const execution = await sandbox.runCode('x + 1') // execution.text === '2'
 * ```
 */
export class Sandbox extends BaseSandbox {
  protected static override readonly defaultTemplate: string = 'code-interpreter-v1'

  /**
   * The interpreter server's URL: on the local engine its port published on loopback (plain
   * HTTP), in the cloud its HTTPS host.
   */
  protected get jupyterUrl(): string {
    const host = this.getHost(JUPYTER_PORT)
    return `${isLocalHost(host) ? 'http' : 'https'}://${host}`
  }

  /** Runs `code` in a context (the default Python context unless `context` or `language` names one). */
  async runCode(code: string, opts?: RunCodeOpts & { language?: RunCodeLanguage }): Promise<Execution>
  async runCode(code: string, opts?: RunCodeOpts & { context?: Context }): Promise<Execution>
  async runCode(code: string, opts?: RunCodeOpts & { language?: RunCodeLanguage; context?: Context }): Promise<Execution> {
    if (typeof code !== 'string') throw new InvalidArgumentError(`code must be a string, got ${typeof code}`)
    if (opts?.context && opts?.language) {
      throw new InvalidArgumentError('You can provide context or language, but not both at the same time.')
    }
    const controller = new AbortController()
    const requestTimeout = opts?.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    const reqTimer = requestTimeout ? setTimeout(() => controller.abort(), requestTimeout) : undefined
    let bodyTimer: ReturnType<typeof setTimeout> | undefined
    try {
      const res = await fetch(`${this.jupyterUrl}/execute`, {
        method: 'POST',
        headers: this.jupyterHeaders(),
        body: JSON.stringify({ code, context_id: opts?.context?.id, language: opts?.language, env_vars: opts?.envs }),
        signal: controller.signal,
      })
      await throwIfFailed(res)
      if (!res.body) throw new SandboxError(`No response body: ${res.status} ${res.statusText}`)
      clearTimeout(reqTimer)
      const bodyTimeout = opts?.timeoutMs ?? DEFAULT_TIMEOUT_MS
      bodyTimer = bodyTimeout ? setTimeout(() => controller.abort(), bodyTimeout) : undefined
      const execution = new Execution()
      try {
        for await (const line of readLines(res.body)) {
          if (line.trim()) await parseOutput(execution, line, opts)
        }
      } catch (e) {
        throw isAbort(e) ? new TimeoutError("Execution timed out — the 'timeoutMs' option can be used to increase this timeout") : e
      }
      return execution
    } catch (e) {
      throw isAbort(e) ? new TimeoutError("Request timed out — the 'requestTimeoutMs' option can be used to increase this timeout") : e
    } finally {
      clearTimeout(reqTimer)
      clearTimeout(bodyTimer)
    }
  }

  /** Creates a context: a kernel of its own (its own variables), in `cwd`. */
  async createCodeContext(opts?: CreateCodeContextOpts): Promise<Context> {
    const res = await this.jupyterRequest('POST', '/contexts', opts?.requestTimeoutMs, { language: opts?.language, cwd: opts?.cwd })
    return (await res.json()) as Context
  }

  /** Every context of the interpreter (the default one included, once used). */
  async listCodeContexts(opts?: { requestTimeoutMs?: number }): Promise<Context[]> {
    const res = await this.jupyterRequest('GET', '/contexts', opts?.requestTimeoutMs)
    return (await res.json()) as Context[]
  }

  /** Restarts a context's kernel: its variables are gone, its ID stays. */
  async restartCodeContext(context: Context | string, opts?: { requestTimeoutMs?: number }): Promise<void> {
    await this.jupyterRequest('POST', `/contexts/${encodeURIComponent(contextId(context))}/restart`, opts?.requestTimeoutMs)
  }

  /** Removes a context and stops its kernel. */
  async removeCodeContext(context: Context | string, opts?: { requestTimeoutMs?: number }): Promise<void> {
    await this.jupyterRequest('DELETE', `/contexts/${encodeURIComponent(contextId(context))}`, opts?.requestTimeoutMs)
  }

  /** `removeCodeContext` (novita-sandbox's other name for it). */
  async deleteCodeContext(context: Context | string, opts?: { requestTimeoutMs?: number }): Promise<void> {
    return this.removeCodeContext(context, opts)
  }

  /** The headers the official SDKs send the interpreter (the traffic token of a private sandbox). */
  private jupyterHeaders(): Record<string, string> {
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'E2b-Sandbox-Id': this.sandboxId,
      'E2b-Sandbox-Port': JUPYTER_PORT.toString(),
    }
    const token = this.trafficAccessToken
    if (token) headers['E2B-Traffic-Access-Token'] = token
    return headers
  }

  private async jupyterRequest(method: string, path: string, timeoutMs: number | undefined, body?: object): Promise<Response> {
    try {
      const res = await fetch(`${this.jupyterUrl}${path}`, {
        method,
        headers: this.jupyterHeaders(),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS),
      })
      await throwIfFailed(res)
      return res
    } catch (e) {
      throw isAbort(e) ? new TimeoutError("Request timed out — the 'requestTimeoutMs' option can be used to increase this timeout") : e
    }
  }
}

/** novita-sandbox's other name for the interpreter's Sandbox. */
export { Sandbox as CodeInterpreterSandbox }
export default Sandbox

/** Loopback hosts (the local engine's published ports, `*.localhost` names) speak plain HTTP. */
function isLocalHost(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '')
  return name === 'localhost' || name.endsWith('.localhost') || name.startsWith('127.') || name === '[::1]'
}

function contextId(context: Context | string): string {
  const id = typeof context === 'string' ? context : context?.id
  if (!id) throw new InvalidArgumentError(`a context or its ID is required, got ${JSON.stringify(context)}`)
  return id
}

function isAbort(e: unknown): boolean {
  return e instanceof Error && (e.name === 'AbortError' || e.name === 'TimeoutError') && !(e instanceof SandboxError)
}

/** The official SDKs' errors for the interpreter's answers, with the server's message. */
async function throwIfFailed(res: Response): Promise<void> {
  if (res.ok) return
  const body = (await res.text().catch(() => '')).trim()
  let message = body
  try {
    message = JSON.parse(body).error ?? JSON.parse(body).message ?? body
  } catch {}
  switch (res.status) {
    case 502:
      throw new TimeoutError(
        `${body}: This error is likely due to sandbox timeout. You can modify the sandbox timeout by passing 'timeoutMs' when starting the sandbox or calling '.setTimeout' on the sandbox with the desired timeout.`,
      )
    case 404:
      throw new NotFoundError(message)
    default:
      throw new SandboxError(`${res.status} ${res.statusText}${message ? `: ${message}` : ''}`)
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  let buffer = ''
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true })
    let i
    while ((i = buffer.indexOf('\n')) !== -1) {
      yield buffer.slice(0, i)
      buffer = buffer.slice(i + 1)
    }
  }
  buffer += decoder.decode()
  if (buffer) yield buffer
}

async function parseOutput(execution: Execution, line: string, opts?: RunCodeOpts): Promise<void> {
  const msg = JSON.parse(line)
  switch (msg.type) {
    case 'result': {
      const result = new Result({ ...msg, type: undefined, is_main_result: undefined }, msg.is_main_result)
      execution.results.push(result)
      await opts?.onResult?.(result)
      break
    }
    case 'stdout':
      execution.logs.stdout.push(msg.text)
      await opts?.onStdout?.(new OutputMessage(msg.text, Date.now() * 1000, false))
      break
    case 'stderr':
      execution.logs.stderr.push(msg.text)
      await opts?.onStderr?.(new OutputMessage(msg.text, Date.now() * 1000, true))
      break
    case 'error':
      execution.error = new ExecutionError(msg.name, msg.value, msg.traceback)
      await opts?.onError?.(execution.error)
      break
    case 'number_of_executions':
      execution.executionCount = msg.execution_count
      break
    case 'unexpected_end_of_execution':
      throw new SandboxError('The interpreter ended the execution unexpectedly (its kernel died): restart the context')
  }
}
