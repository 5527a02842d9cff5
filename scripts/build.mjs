#!/usr/bin/env node
// Builds everything the package needs, in release mode:
//   1. the napi addon  (`napi build --platform --release`) → sandbank.<triple>.node + binding.js/.d.ts
//   2. the JS layer (`tsc -p tsconfig.json`): js/*.ts → dist/ (CommonJS and declarations), typed by
//      the binding.d.ts of step 1; skipped while dist/ was compiled from the same js/, tsconfig.json
//      and binding.d.ts (as cargo skips what is current), else dist/ is rebuilt from nothing so that
//      no output of a removed source stays behind
//   3. the `sandbank` binary (`cargo build --release -p sandbank-server`) → copied to native/sandbank
// Cargo's target directory may be moved with CARGO_TARGET_DIR (CI does); it is read from
// `cargo metadata`, never assumed to be ./target.
//
// Flags: --server-only  build and copy only the `sandbank` binary.
//        --js-only      only compile the JS layer (always; no Rust needed): `npm run build:js`.
// Runs as `npm run build` and as the `prepare` script of a plain `npm install` in the repository
// (so a clean clone gets dist/; the published tarball carries it, as `prepare` does not run for
// registry installs). Off Linux only the JS layer is built.

import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, chmodSync, mkdirSync, renameSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const serverOnly = process.argv.includes('--server-only')
const jsOnly = process.argv.includes('--js-only')
const t0 = Date.now()
const require = createRequire(import.meta.url)

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

// What dist/ was compiled from, by content (step 1 rewrites binding.d.ts on every build, so its
// modification time says nothing). Kept out of dist/, which is published as it is.
const jsStamp = join(root, 'node_modules', '.cache', 'sandbank', 'dist.sha256')

/** A hash of the JS layer's inputs: js/, tsconfig.json, binding.d.ts and the TypeScript version. */
function jsInputsHash() {
  const hash = createHash('sha256')
  const add = (rel) => {
    const path = join(root, rel)
    if (statSync(path).isDirectory()) {
      for (const name of readdirSync(path).sort()) add(join(rel, name))
    } else hash.update(`${rel}\0`).update(readFileSync(path)).update('\0')
  }
  for (const rel of ['js', 'tsconfig.json', 'binding.d.ts']) add(rel)
  hash.update(JSON.parse(readFileSync(require.resolve('typescript/package.json'), 'utf8')).version)
  return hash.digest('hex')
}

/** Compiles js/ into a fresh dist/, unless `ifChanged` and dist/ is current. */
function buildJs({ ifChanged = false } = {}) {
  // TypeScript is a devDependency; resolve its entry point so this works without npx.
  let tsc
  try {
    tsc = require.resolve('typescript/bin/tsc')
  } catch {
    fail('typescript is not installed: run `npm install` first')
  }
  const inputs = jsInputsHash()
  const current = existsSync(join(root, 'dist', 'index.js')) && existsSync(jsStamp) && readFileSync(jsStamp, 'utf8') === inputs
  if (ifChanged && current) {
    console.error('sandbank: dist/ is current')
    return
  }
  rmSync(join(root, 'dist'), { recursive: true, force: true })
  run(process.execPath, [tsc, '-p', 'tsconfig.json'])
  mkdirSync(dirname(jsStamp), { recursive: true })
  writeFileSync(jsStamp, inputs)
  console.error(`sandbank: compiled js/ to dist/ in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
}

if (jsOnly) {
  buildJs()
  process.exit(0)
}

if (process.platform !== 'linux') {
  if (!serverOnly) buildJs({ ifChanged: true })
  console.error(`sandbank: the local engine needs Linux; skipping the native build on ${process.platform}.`)
  process.exit(0)
}

if (!serverOnly) {
  // The napi CLI is a devDependency; resolve its entry point so this works without npx.
  let napiCli
  try {
    napiCli = join(dirname(require.resolve('@napi-rs/cli/package.json')), 'dist', 'cli.js')
  } catch {
    fail('@napi-rs/cli is not installed: run `npm install` first')
  }
  run(process.execPath, [napiCli, 'build', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts'])
  buildJs({ ifChanged: true })
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

