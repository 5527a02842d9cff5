// `getSignature`: the signature of a `/files` URL, as novita-sandbox's sandbox/signature.ts
// computes it (the addon does the hashing).
import { callSync, getFileSignature } from './internal/native'

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
export async function getSignature({ path, operation, user, expirationInSeconds, envdAccessToken }: SignatureOpts): Promise<{ signature: string; expiration: number | null }> {
  const s = callSync(() => getFileSignature(path, operation, user, expirationInSeconds, envdAccessToken))
  return { signature: s.signature, expiration: s.expiration ?? null }
}
