#!/usr/bin/env node
// The package as npm users get it, without a Rust toolchain:
//   1. `npm pack` the root package and the `sandbank-linux-x64-gnu` package (this machine's) assembled from the built
//      artifacts (npm/linux-x64-gnu/package.json + the addon from the repo root + native/sandbank),
//      and check what each tarball holds (the root the compiled JS layer, dist/, and none of the
//      binaries, sources or test helpers; the platform package both binaries, the `sandbank` binary
//      executable);
//   2. install both tarballs into a fresh project with PATH = node's dir + /usr/bin:/bin (no cargo);
//   3. run a script through `import` (ESM) and one through `require` (CJS), each of which creates a
//      sandbox on the local default, snapshots it, starts a sandbox from the snapshot, reads a file
//      back, and cleans up (kills both sandboxes, deletes the snapshot);
//   4. stop the daemon the local default started (its daemon.json pid; SIGTERM, then wait).
// The data dir is a temp dir (SANDBANK_DATA_DIR); everything is removed at the end.
// Exits non-zero on any failure. Run by `npm test` (scripts/test.mjs) after the build.
import { spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stopDaemon } from './local-server.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const t0 = Date.now()

if (process.platform !== 'linux') {
  console.log(`pack-check: skipped (the local engine needs Linux; this is ${process.platform}-${process.arch})`)
  process.exit(0)
}
// This machine's platform package: linux-x64-gnu here and in `npm test`; the release workflow also
// runs this on linux-arm64-gnu.
const musl = !process.report.getReport().header.glibcVersionRuntime
const PLATFORM = `linux-${process.arch}-${musl ? 'musl' : 'gnu'}`

const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const platDir = join(root, 'npm', PLATFORM)
const platPkg = JSON.parse(readFileSync(join(platDir, 'package.json'), 'utf8'))
const addon = join(root, platPkg.main)
const binary = join(root, 'native', 'sandbank')
for (const f of [addon, binary, join(root, 'dist', 'index.js')]) {
  // Not fail(): nothing to clean up yet.
  if (!existsSync(f)) {
    console.error(`pack-check: FAILED: ${f} is missing: run \`npm run build\` first`)
    process.exit(1)
  }
}

const work = mkdtempSync(join(tmpdir(), 'sandbank-pack-check-'))
chmodSync(work, 0o755) // the daemon's sandboxes run as uid 1000 under the data dir
const dataDir = join(work, 'data')
let daemonStopped = false

function log(msg) {
  console.log(`pack-check: ${msg} (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
}

function fail(msg) {
  console.error(`pack-check: FAILED: ${msg}`)
  cleanup()
  process.exit(1)
}

/** npm through node itself, so that the bare PATH below still finds it. */
const npmCli = (() => {
  const candidates = [
    process.env.npm_execpath,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
    join(dirname(process.execPath), 'node_modules', 'npm', 'bin', 'npm-cli.js'),
  ]
  const found = candidates.find((c) => c && /npm-cli\.js$/.test(c) && existsSync(c))
  if (!found) fail(`npm-cli.js not found (looked in ${candidates.filter(Boolean).join(', ')})`)
  return found
})()

/** What a user without Rust has: node's dir and the system dirs, no ~/.cargo/bin, no sandbank config. */
const bareEnv = (() => {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(NOVITA_|E2B_|SANDBANK_|npm_|NAPI_RS_|CARGO|RUSTUP)/i.test(k)) continue
    env[k] = v
  }
  env.PATH = [...new Set([dirname(process.execPath), '/usr/bin', '/bin'])].join(':')
  env.SANDBANK_DATA_DIR = dataDir
  // The machine's base image, not one built for this data dir (scripts/test.mjs sets it).
  if (process.env.SANDBANK_IMAGES_DIR) env.SANDBANK_IMAGES_DIR = process.env.SANDBANK_IMAGES_DIR
  env.SANDBANK_IDLE_EXIT_SECS = '60'
  env.npm_config_cache = join(work, 'npm-cache')
  env.npm_config_audit = 'false'
  env.npm_config_fund = 'false'
  env.npm_config_update_notifier = 'false'
  return env
})()

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 180_000, ...opts })
  if (r.error || r.status !== 0) {
    fail(`\`${cmd === process.execPath ? 'node' : cmd} ${args.join(' ')}\` in ${opts.cwd ?? root} exited ${r.error?.message ?? r.status ?? r.signal}\n${r.stdout ?? ''}${r.stderr ?? ''}`)
  }
  return r
}

function npm(args, opts) {
  return run(process.execPath, [npmCli, ...args], opts)
}

/** `npm pack --json` in `dir`; returns the tarball path and its file list. */
function pack(dir) {
  // --ignore-scripts: the root's `prepare` is the build, already done by `npm test`.
  const r = npm(['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: dir, env: bareEnv })
  const [info] = JSON.parse(r.stdout)
  return { tarball: join(work, info.filename), files: info.files.map((f) => ({ path: f.path, mode: f.mode })) }
}

// 1. The two tarballs.
const rootTgz = pack(root)
const rootFiles = rootTgz.files.map((f) => f.path)
// The JS layer ships compiled (dist/, from js/ by tsc): `prepare` does not run for registry installs.
for (const must of ['dist/index.js', 'dist/index.d.ts', 'dist/internal/binary.js', 'index.mjs', 'binding.js', 'binding.d.ts', 'bin/sandbank.js', 'package.json']) {
  if (!rootFiles.includes(must)) fail(`the root tarball lacks ${must}: ${rootFiles.join(', ')}`)
}
const stray = rootFiles.filter(
  (f) => f.endsWith('.node') || /^(native|target|src|crates|js|lib|scripts|__test__|bench|examples|fuzz|docs)\//.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts'),
)
if (stray.length) fail(`the root tarball carries what belongs in the platform packages or the repo (binaries, sources, tests, scripts): ${stray.join(', ')}`)
for (const [name, version] of Object.entries(rootPkg.optionalDependencies ?? {})) {
  if (version !== rootPkg.version) fail(`optionalDependencies.${name} is ${version}, not the package version ${rootPkg.version}`)
}
if (rootPkg.optionalDependencies?.[platPkg.name] !== rootPkg.version) fail(`optionalDependencies lacks ${platPkg.name}@${rootPkg.version}`)
if (platPkg.version !== rootPkg.version) fail(`${platPkg.name} is version ${platPkg.version}, the root ${rootPkg.version}`)

const stage = join(work, PLATFORM)
mkdirSync(stage)
copyFileSync(join(platDir, 'package.json'), join(stage, 'package.json'))
if (existsSync(join(platDir, 'README.md'))) copyFileSync(join(platDir, 'README.md'), join(stage, 'README.md'))
copyFileSync(addon, join(stage, platPkg.main))
copyFileSync(binary, join(stage, 'sandbank'))
chmodSync(join(stage, 'sandbank'), 0o755)
const platTgz = pack(stage)
const platFiles = Object.fromEntries(platTgz.files.map((f) => [f.path, f.mode]))
if (!(platPkg.main in platFiles)) fail(`the ${PLATFORM} tarball lacks ${platPkg.main}`)
if (!('sandbank' in platFiles)) fail(`the ${PLATFORM} tarball lacks the sandbank binary`)
if ((platFiles.sandbank & 0o111) !== 0o111) fail(`the sandbank binary in the ${PLATFORM} tarball has mode ${platFiles.sandbank.toString(8)}, not executable`)
log(`packed ${rootFiles.length} files in the root tarball, ${Object.keys(platFiles).length} in ${platPkg.name}`)

// 2. A fresh project, no Rust on PATH.
const which = spawnSync('sh', ['-c', 'command -v cargo rustc'], { env: bareEnv, encoding: 'utf8' })
if (which.stdout.trim()) fail(`cargo/rustc still on the bare PATH: ${which.stdout.trim()}`)
const app = join(work, 'app')
mkdirSync(app)
writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'sandbank-pack-check-app', version: '1.0.0', private: true }, null, 2))
// The other platform packages are not published yet (404) or do not match this machine: npm skips
// optional dependencies it cannot install; the linux-x64-gnu one comes from the tarball.
npm(['install', '--no-audit', '--no-fund', '--loglevel=error', platTgz.tarball, rootTgz.tarball], { cwd: app, env: bareEnv })
const installedBin = join(app, 'node_modules', platPkg.name, 'sandbank')
if (!existsSync(installedBin)) fail(`${installedBin} was not installed`)
if ((statSync(installedBin).mode & 0o111) === 0) fail(`${installedBin} is not executable after install`)
if (existsSync(join(app, 'node_modules', 'sandbank', 'native'))) fail('the installed root package has a native/ dir')
const cli = run(join(app, 'node_modules', '.bin', 'sandbank'), ['--version'], { cwd: app, env: bareEnv })
if (!/^sandbank \d+\.\d+\.\d+/.test(cli.stdout)) fail(`\`sandbank --version\` printed ${JSON.stringify(cli.stdout)}`)
log(`installed both tarballs into a fresh project; node_modules/.bin/sandbank runs the platform binary (${cli.stdout.trim()})`)

// 3. ESM and CJS.
const expectBin = JSON.stringify(installedBin)
const body = `
  const root = dirname(resolveSandbank())
  if (!root.startsWith(${JSON.stringify(join(app, 'node_modules'))})) throw new Error('sandbank resolved outside the app: ' + root)
  if (serverBinaryPath() !== ${expectBin}) throw new Error('the local default would start ' + serverBinaryPath() + ', not the platform package binary')
  const snapshots = []
  const sandboxes = []
  try {
    const sbx = await Sandbox.create({ timeoutMs: 120_000 })
    sandboxes.push(sbx)
    await sbx.files.write('/home/user/hello.txt', 'hello from ' + MODE)
    const snap = await sbx.createSnapshot()
    snapshots.push(snap.snapshotId)
    const copy = await Sandbox.create(snap.snapshotId, { timeoutMs: 120_000 })
    sandboxes.push(copy)
    const text = await copy.files.read('/home/user/hello.txt')
    if (text !== 'hello from ' + MODE) throw new Error('read back ' + JSON.stringify(text))
    const r = await copy.commands.run('cat /home/user/hello.txt')
    if (r.stdout !== 'hello from ' + MODE) throw new Error('cat gave ' + JSON.stringify(r.stdout))
    console.log(MODE + ': sandbox ' + sbx.sandboxId + ', snapshot ' + snap.snapshotId + ', started from it: ' + copy.sandboxId + ', read back ok')
  } finally {
    for (const s of sandboxes) await s.kill()
    for (const id of snapshots) {
      if ((await Sandbox.deleteSnapshot(id)) !== true) throw new Error('deleteSnapshot(' + id + ') did not return true')
    }
    const left = await Sandbox.list().nextItems()
    if (left.length) throw new Error('sandboxes left: ' + left.map((s) => s.sandboxId).join(', '))
  }
`
writeFileSync(
  join(app, 'smoke.mjs'),
  `import { Sandbox, serverBinaryPath } from 'sandbank'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
const MODE = 'esm'
const resolveSandbank = () => createRequire(import.meta.url).resolve('sandbank')
${body}
`,
)
writeFileSync(
  join(app, 'smoke.cjs'),
  `'use strict'
const { Sandbox, serverBinaryPath } = require('sandbank')
const { dirname } = require('node:path')
const MODE = 'cjs'
const resolveSandbank = () => require.resolve('sandbank')
;(async () => {
${body}
})().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
`,
)
for (const script of ['smoke.mjs', 'smoke.cjs']) {
  const r = run(process.execPath, [script], { cwd: app, env: bareEnv, timeout: 120_000 })
  process.stdout.write(r.stdout)
}
if (!existsSync(join(dataDir, 'daemon.json'))) fail(`the local default did not start a daemon in ${dataDir}`)
log('ESM and CJS scripts passed on the local default')

// 4. Stop the daemon and clean up.
cleanup()
if (!daemonStopped) process.exit(1)
log('passed')

function cleanup() {
  daemonStopped = stopDaemon(dataDir)
  if (!daemonStopped) console.error('pack-check: the daemon did not stop within 15 s of SIGTERM; killed it')
  rmSync(work, { recursive: true, force: true, maxRetries: 3 })
}

