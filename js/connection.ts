// The connection options every call that talks to a server takes (novita-sandbox's
// connectionConfig.ts), and the user names commands and files run as.

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
