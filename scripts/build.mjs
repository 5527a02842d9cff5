#!/usr/bin/env node
// Builds everything the package needs, in release mode:
//   1. the napi addon  (`napi build --platform --release`) → sandbank.<triple>.node + binding.js/.d.ts
//   2. the `sandbank` binary (`cargo build --release -p sandbank-server`) → copied to native/sandbank
// Cargo's target directory may be moved with CARGO_TARGET_DIR (CI does); it is read from
// `cargo metadata`, never assumed to be ./target.
//
// Flags: --server-only  build and copy only the `sandbank` binary.
// Runs as `npm run build` and as the `prepare` script of a plain `npm install` in the repository.

import { spawnSync } from 'node:child_process'
import { copyFileSync, chmodSync, mkdirSync, renameSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const serverOnly = process.argv.includes('--server-only')
const t0 = Date.now()

function fail(message) {
  console.error(`\nsandbank build failed: ${message}`)
  console.error('Fix the error above and run `npm run build` again (it needs Rust/cargo and Node 20+).')
  process.exit(1)
}

function run(cmd, args, opts = {}) {
  console.error(`> ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts })
  if (r.error) {
    fail(r.error.code === 'ENOENT' ? `\`${cmd}\` was not found on PATH` : String(r.error))
  }
  if (r.status !== 0) {
    fail(`\`${cmd} ${args.join(' ')}\` exited with ${r.status ?? r.signal}`)
  }
  return r
}

function targetDirectory() {
  const r = spawnSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  })
  if (r.error || r.status !== 0) {
    fail(`\`cargo metadata\` failed: ${r.error ?? r.stderr}`)
  }
  return JSON.parse(r.stdout).target_directory
}

if (process.platform !== 'linux') {
  console.error(`sandbank: the local engine needs Linux; skipping the native build on ${process.platform}.`)
  process.exit(0)
}

if (!serverOnly) {
  // The napi CLI is a devDependency; resolve its entry point so this works without npx.
  const require = createRequire(import.meta.url)
  let napiCli
  try {
    napiCli = join(dirname(require.resolve('@napi-rs/cli/package.json')), 'dist', 'cli.js')
  } catch {
    fail('@napi-rs/cli is not installed: run `npm install` first')
  }
  run(process.execPath, [napiCli, 'build', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts'])
}

run('cargo', ['build', '--release', '-p', 'sandbank-server'])

const built = join(targetDirectory(), 'release', 'sandbank')
if (!existsSync(built)) fail(`cargo reported success but ${built} does not exist`)
const nativeDir = join(root, 'native')
mkdirSync(nativeDir, { recursive: true })
// Copy then rename: replacing a binary that is running (a server started earlier) must not fail
// with ETXTBSY, and a reader never sees a half-written file.
const tmp = join(nativeDir, `.sandbank.${process.pid}`)
copyFileSync(built, tmp)
chmodSync(tmp, 0o755)
renameSync(tmp, join(nativeDir, 'sandbank'))
console.error(`sandbank: built native/sandbank (from ${built}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`)

