#!/usr/bin/env node
// `npm test`: the Rust tests, then the JS tests. Both always run; the exit code is non-zero if
// either failed. Each runner prints its own summary.
//   0. install the host packages the tests use when missing (scripts/system-deps.sh)
//   1. make sure native/sandbank, the addon and dist/ (js/ compiled) are current (`scripts/build.mjs`,
//      a no-op when they are), and the base image is built (`sandbank base-image`, into
//      SANDBANK_IMAGES_DIR, default the machine's cache: once per machine), and the code
//      interpreter's template beside it (scripts/interpreter-template.mjs: once per definition)
//   2. cargo fmt --check and cargo clippy -D warnings (workspace and fuzz targets), then
//      cargo test --release --workspace   (release, so it reuses the build's artifacts), then a
//      short fuzz run of every fuzz/ target (scripts/fuzz.mjs: 25 s in all, plus a one-time
//      cargo-fuzz install and the targets' build)
//   3. node --test over __test__/*.test.mjs, one file at a time (each file starts its own server
//      and checks the host for leftovers after it stops, so files must not overlap); then the
//      SDK, snapshot, pause, files-API, fork/clone and template files again with every server in
//      `--no-userns` mode, and the snapshot, pause, fork/clone and template files on the copy store
//   4. scripts/pack-check.mjs: npm pack the root and linux-x64-gnu packages, install them without
//      Rust, run an ESM and a CJS script on the local default
//   5. scripts/ci-checks.mjs: lint .github/workflows, run examples/jest and examples/vitest
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
// The machine's cache of base images: root's in /var/cache, a user's in theirs.
const baseImagesDir = () =>
  process.getuid?.() === 0
    ? '/var/cache/sandbank/images'
    : join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'sandbank', 'images')
const step = (title, cmd, args, env = {}) => {
  console.log(`\n=== ${title}: ${Object.entries(env).map(([k, v]) => `${k}=${v} `).join('')}${cmd} ${args.join(' ')}`)
  const t0 = Date.now()
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } })
  const ok = r.status === 0
  console.log(`=== ${title}: ${ok ? 'passed' : `FAILED (${r.error?.message ?? r.status ?? r.signal})`} in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  return ok
}

// The host packages the tests use (apt, when missing and root: scripts/system-deps.sh).
if (!step('system packages', 'bash', [join(root, 'scripts', 'system-deps.sh')])) process.exit(1)
if (!step('build', process.execPath, [join(root, 'scripts', 'build.mjs')])) process.exit(1)
// Every server and engine of the tests lies its sandboxes over one base image (Debian, built
// from Debian's packages once per machine, outside the clone), built here first.
process.env.SANDBANK_IMAGES_DIR ??= baseImagesDir()
if (!step('base image', join(root, 'native', 'sandbank'), ['base-image'])) process.exit(1)
// The code interpreter's template (pip installs: about 30 s, longer than an SDK request waits),
// built once into a data dir beside the base images; __test__/code-interpreter.test.mjs runs on it.
if (!step('interpreter template', process.execPath, [join(root, 'scripts', 'interpreter-template.mjs')])) process.exit(1)

// Formatting and lints: the house style is rustfmt.toml's; any clippy warning fails.
const lint =
  step('format', 'cargo', ['fmt', '--all', '--check']) &&
  step('format (fuzz)', 'cargo', ['fmt', '--manifest-path', join('fuzz', 'Cargo.toml'), '--check']) &&
  step('clippy', 'cargo', ['clippy', '--release', '--workspace', '--all-targets', '--', '-D', 'warnings'])

const rust = step('Rust tests', 'cargo', ['test', '--release', '--workspace'])

// libFuzzer over the wire decoders, briefly: a smoke run; long runs are `npm run fuzz -- --each N`.
const fuzz = step('fuzz', process.execPath, [join(root, 'scripts', 'fuzz.mjs'), '--total', '25'])

// The public types: `tsc --strict --noEmit` over a typed example of every call.
const types = step('TypeScript types', process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join('__test__', 'tsconfig.json')])

const files = readdirSync(join(root, '__test__'))
  .filter((f) => f.endsWith('.test.mjs'))
  .sort()
  .map((f) => join('__test__', f))
const nodeTest = (testFiles) => ['--test', '--test-concurrency=1', '--test-timeout=300000', '--test-reporter=spec', ...testFiles]
const js = step('JS tests', process.execPath, nodeTest(files))
// The other mode of the engine, as a server started with --no-userns runs it (root inside is the
// host's root): what users do with sandboxes, again.
const NO_USERNS_FILES = ['sdk.test.mjs', 'snapshots.test.mjs', 'pause.test.mjs', 'attacks-files.test.mjs', 'fork-clone.test.mjs', 'templates.test.mjs', 'images.test.mjs']
const jsNoUserns = step(
  'JS tests without a user namespace',
  process.execPath,
  nodeTest(NO_USERNS_FILES.map((f) => join('__test__', f))),
  { SANDBANK_TEST_NO_USERNS: '1' },
)

// The files of snapshots, pauses and template builds again with the layers on the copy store (`--store copy`: where
// btrfs cannot be used, and data directories made before the btrfs store).
const COPY_STORE_FILES = ['snapshots.test.mjs', 'snapshots-e2b.test.mjs', 'snapshots-manage.test.mjs', 'snapshots-archive.test.mjs', 'fork-clone.test.mjs', 'pause.test.mjs', 'templates.test.mjs']
const jsStore = step(
  'JS tests on the copy store',
  process.execPath,
  nodeTest(COPY_STORE_FILES.map((f) => join('__test__', f))),
  { SANDBANK_TEST_STORE: 'copy' },
)

// The package as users install it: packed tarballs in a fresh project with no Rust on PATH.
const pack = step('pack check', process.execPath, [join(root, 'scripts', 'pack-check.mjs')])

// Release workflow lint, and the Jest/Vitest example suites (scripts/ci-checks.mjs).
const ci = step('CI checks', process.execPath, [join(root, 'scripts', 'ci-checks.mjs')])

const verdict = (ok) => (ok ? 'passed' : 'FAILED')
console.log(
  `\nsandbank tests: lint ${verdict(lint)}, Rust ${verdict(rust)}, fuzz ${verdict(fuzz)}, types ${verdict(types)}, ` +
    `JS ${verdict(js)}, JS without a user namespace ${verdict(jsNoUserns)}, JS on the copy store ${verdict(jsStore)}, ` +
    `pack ${verdict(pack)}, CI checks ${verdict(ci)}`,
)
process.exit(lint && rust && fuzz && types && js && jsNoUserns && jsStore && pack && ci ? 0 : 1)
