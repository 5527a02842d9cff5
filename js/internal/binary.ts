// Where the `sandbank` binary (the local engine) is: the one thing about the local default only
// Node can tell, since npm puts it in a platform package that Node's module resolution finds. The
// rest of the local default (is a server configured, the data dir, daemon.json, starting a daemon)
// is the addon's (crates/client/src/local.rs), told this path once (internal/native.ts).
import * as fs from 'node:fs'
import { dirname, join } from 'node:path'

/** The package's root directory: this file is `<package>/dist/internal/binary.js`. */
const packageRoot = join(__dirname, '..', '..')

/** Whether this Linux uses musl (Alpine) rather than glibc. */
function isMusl(): boolean {
  try {
    const report = process.report.getReport() as { header: { glibcVersionRuntime?: string } }
    return !report.header.glibcVersionRuntime
  } catch {
    return false
  }
}

/**
 * The npm packages that may carry the `sandbank` binary on this machine, best match first: the
 * platform package (`sandbank-linux-x64-gnu`, …) npm installed from the optional dependencies.
 */
export function platformPackages(): string[] {
  if (process.platform !== 'linux') return []
  const libcs = isMusl() ? ['musl', 'gnu'] : ['gnu', 'musl']
  return libcs.map((libc) => `sandbank-linux-${process.arch}-${libc}`)
}

/**
 * Absolute path of the `sandbank` server binary: `$SANDBANK_BIN` when set, else
 * {@link packagedBinaryPath}.
 */
export function serverBinaryPath(): string {
  return process.env.SANDBANK_BIN || packagedBinaryPath()
}

/**
 * The binary this package brings: the one `npm run build` copies to `<package>/native/sandbank`,
 * else the one in the platform package (`sandbank-linux-x64-gnu`, …). When none exists, the path
 * where a build would put it (the error messages name it).
 */
export function packagedBinaryPath(): string {
  const built = join(packageRoot, 'native', 'sandbank')
  if (fs.existsSync(built)) return built
  for (const name of platformPackages()) {
    let dir: string
    try {
      dir = dirname(require.resolve(`${name}/package.json`))
    } catch {
      continue
    }
    const bin = join(dir, 'sandbank')
    if (fs.existsSync(bin)) return bin
  }
  return built
}

/** What to tell a user whose packaged binary is missing: where it should have come from. */
export function missingBinaryHint(): string {
  const pkgs = platformPackages().join(' or ')
  return `npm installs it with the optional dependency ${pkgs}; it is skipped with --omit=optional or --no-optional`
}
