#!/usr/bin/env node
// Runs the fuzz targets of fuzz/ with cargo-fuzz (libFuzzer + AddressSanitizer).
//
//   node scripts/fuzz.mjs [--total SECONDS | --each SECONDS] [--jobs N] [target …]
//
// Defaults: every target, 25 s in all (`npm test` runs it so: a short smoke run). For a long
// local run: `npm run fuzz -- --each 600`.
//
// The toolchain is stable Rust; cargo-fuzz passes nightly-only flags (-Zsanitizer, sancov), which
// stable accepts with RUSTC_BOOTSTRAP=1. cargo-fuzz itself (a pinned version) is installed once
// into <cargo target dir>/fuzz-tools and reused; its corpus grows across runs in
// <cargo target dir>/fuzz-corpus/<target>, seeded from fuzz/seeds/<target>. A crash fails the run
// and names the input libFuzzer saved (under <cargo target dir>/fuzz-artifacts/<target>/):
// reproduce it with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>` in fuzz/.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync } from 'node:fs'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const CARGO_FUZZ_VERSION = '0.13.2'
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const fuzzDir = join(root, 'fuzz')
const allTargets = readdirSync(join(fuzzDir, 'fuzz_targets'))
  .filter((f) => f.endsWith('.rs'))
  .map((f) => f.slice(0, -3))
  .sort()

function parseArgs(argv) {
  const opts = { total: 25, each: null, targets: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--total') opts.total = Number(argv[++i])
    else if (a === '--each') opts.each = Number(argv[++i])
    else if (allTargets.includes(a)) opts.targets.push(a)
    else {
      console.error(`unknown argument ${JSON.stringify(a)}; targets: ${allTargets.join(', ')}`)
      process.exit(2)
    }
  }
  if (opts.targets.length === 0) opts.targets = allTargets
  const each = opts.each ?? Math.max(1, Math.floor(opts.total / opts.targets.length))
  return { targets: opts.targets, each }
}

/** Cargo's target directory: CARGO_TARGET_DIR if set, else the workspace's `target/`. */
function targetDir() {
  return process.env.CARGO_TARGET_DIR || join(root, 'target')
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts })
  if (r.error) throw r.error
  return r.status
}

/** The pinned cargo-fuzz, installed into the target dir when missing (one ~1 min compile). */
function ensureCargoFuzz(target) {
  const toolRoot = join(target, 'fuzz-tools')
  const bin = join(toolRoot, 'bin', 'cargo-fuzz')
  const version = existsSync(bin) ? spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout ?? '' : ''
  if (!version.includes(CARGO_FUZZ_VERSION)) {
    console.log(`installing cargo-fuzz ${CARGO_FUZZ_VERSION} into ${toolRoot}`)
    const env = { ...process.env, CARGO_TARGET_DIR: join(toolRoot, 'build') }
    const status = run('cargo', ['install', 'cargo-fuzz', '--version', CARGO_FUZZ_VERSION, '--locked', '--root', toolRoot], { env })
    if (status !== 0) throw new Error(`cargo install cargo-fuzz exited with ${status}`)
  }
  return join(toolRoot, 'bin')
}

function main() {
  const { targets, each } = parseArgs(process.argv.slice(2))
  const target = targetDir()
  const t0 = Date.now()
  const toolBin = ensureCargoFuzz(target)
  const env = {
    ...process.env,
    CARGO_TARGET_DIR: target,
    RUSTC_BOOTSTRAP: '1',
    PATH: `${toolBin}${delimiter}${process.env.PATH}`,
  }
  const tInstall = Date.now()
  if (run('cargo', ['fuzz', 'build', '-O'], { cwd: fuzzDir, env }) !== 0) {
    console.error('fuzz: building the targets failed')
    process.exit(1)
  }
  const tBuild = Date.now()
  const failed = []
  for (const t of targets) {
    const corpus = join(target, 'fuzz-corpus', t)
    const artifacts = join(target, 'fuzz-artifacts', t) + '/'
    mkdirSync(corpus, { recursive: true })
    mkdirSync(artifacts, { recursive: true })
    console.log(`\n--- fuzz ${t}: ${each} s`)
    const args = ['fuzz', 'run', '-O', t, corpus, join(fuzzDir, 'seeds', t), '--',
      `-max_total_time=${each}`, `-artifact_prefix=${artifacts}`, '-print_final_stats=1']
    const status = run('cargo', args, { cwd: fuzzDir, env })
    if (status !== 0) failed.push(t)
  }
  const s = (a, b) => ((b - a) / 1000).toFixed(1)
  console.log(`\nfuzz: cargo-fuzz ready in ${s(t0, tInstall)} s, targets built in ${s(tInstall, tBuild)} s, ` +
    `ran ${targets.length} targets × ${each} s in ${s(tBuild, Date.now())} s`)
  if (failed.length) {
    console.error(`fuzz: FAILED: ${failed.join(', ')} (inputs saved under ${join(target, 'fuzz-artifacts')})`)
    process.exit(1)
  }
  console.log(`fuzz: all ${targets.length} targets ran clean`)
}

main()
