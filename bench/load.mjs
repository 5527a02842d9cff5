#!/usr/bin/env node
// `npm run load`: the local server under sustained mixed load, checked for errors and leaks.
//
// CONCURRENCY clients (default 200) loop until the deadline, each with at most one sandbox of its
// own, picking the next request from what it has: create (from `base`, sometimes from a
// snapshot), run a command (Connect Process/Start, output checked), write a file and read it back,
// snapshot, delete a snapshot (a 400 "in use" is an expected answer), kill. So CONCURRENCY
// requests are in flight at any time. Meanwhile the server's RSS and open descriptors are
// sampled from /proc/<pid>/status and /proc/<pid>/fd every second.
//
// Fails (exit 1) on any 5xx or transport error, on a wrong command output or file content, when
// the RSS of the last third of the run is more than 25% (and 32 MB) above the first third's, or
// when anything is left once every sandbox and snapshot is gone: open descriptors above the
// idle baseline, live heap (malloc's in-use bytes, logged by the server) more than 8 MB above
// its idle baseline, sandbox cgroups, guest processes, layers, and after the stop, mounts and
// cgroups.
//
// Usage: node bench/load.mjs [--duration 30] [--concurrency 200] [--json FILE] [--settle 15]
// Needs root (the engine), like the server.
import { readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { removeDataDir, startLocalServer } from '../scripts/local-server.mjs'
import { allProcesses, assertNoLeftovers, serverCgroupName } from '../__test__/helpers.mjs'
import { arg } from './common.mjs'

const DURATION_S = Number(arg('duration', 30))
const CONCURRENCY = Number(arg('concurrency', 200))
const JSON_OUT = arg('json', null)
/** Seconds of idle after every sandbox and snapshot is gone, before the last sample. */
const SETTLE_S = Number(arg('settle', 15))
/** Snapshots kept around at most; older ones are deleted by the clients. */
const MAX_SNAPSHOTS = 100
const FILE_BYTES = 64 * 1024

// ── the wire (raw HTTP, as the SDKs speak it) ──
function envelope(obj) {
  const body = Buffer.from(JSON.stringify(obj))
  const head = Buffer.alloc(5)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}

function envelopes(buf) {
  const out = []
  for (let i = 0; i + 5 <= buf.length; ) {
    const len = buf.readUInt32BE(i + 1)
    out.push({ flags: buf[i], json: JSON.parse(buf.subarray(i + 5, i + 5 + len).toString()) })
    i += 5 + len
  }
  return out
}

// ── statistics ──
const stats = new Map() // op → {n, latencies[], statuses{}}
const failures = []
function record(op, status, ms) {
  let s = stats.get(op)
  if (!s) stats.set(op, (s = { n: 0, ms: [], statuses: {} }))
  s.n++
  s.ms.push(ms)
  s.statuses[status] = (s.statuses[status] ?? 0) + 1
}
function fail(what) {
  if (failures.length < 50) console.error(`load: ${what}`)
  failures.push(what)
}
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? 0
}

/** The server's descriptors by kind (socket, pipe, anon_inode:…, or file). */
function fdKinds(pid) {
  const kinds = {}
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = 'gone'
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`)
    } catch {}
    const kind = /^(socket|pipe|anon_inode:[^\]]*\]?)/.exec(target)?.[1] ?? 'file'
    kinds[kind] = (kinds[kind] ?? 0) + 1
  }
  return kinds
}

async function main() {
  // The server logs what malloc holds every SANDBANK_HEAP_STATS seconds (2 unless set; 0: off);
  // kept for the report and the leak check.
  const heap = []
  const heapLine = /heap stats in_use_kb=(\d+) free_kb=(\d+) mmapped_kb=(\d+) arena_kb=(\d+) rss_anon_kb=(\d+)/g
  let pending = ''
  const onStderr = (chunk) => {
    pending = (pending + chunk.replace(/\x1b\[[0-9;]*m/g, '')).slice(-4096)
    for (const m of pending.matchAll(heapLine)) {
      const [inUseKb, freeKb, mmappedKb, arenaKb, anonKb] = m.slice(1).map(Number)
      heap.push({ t: performance.now(), inUseKb, freeKb, mmappedKb, arenaKb, anonKb })
    }
    pending = pending.slice(pending.lastIndexOf('\n') + 1)
  }
  const server = await startLocalServer({ tmpPrefix: 'sandbank-load-', onStderr, env: { SANDBANK_HEAP_STATS: process.env.SANDBANK_HEAP_STATS ?? '2' } })
  const pid = server.proc.pid
  console.log(`load: ${CONCURRENCY} clients for ${DURATION_S} s against ${server.url} (pid ${pid})`)

  /** One request: records its status and time; a 5xx or a transport error is a failure. */
  /** Each sandbox's envd access token, from its create response. */
  const tokens = new Map()
  async function request(op, path, init = {}, envdId = null) {
    const headers = { ...(init.headers ?? {}) }
    if (envdId) Object.assign(headers, { 'e2b-sandbox-id': envdId, 'x-access-token': tokens.get(envdId) })
    const t0 = performance.now()
    let res, body
    try {
      res = await server.fetch(path, { ...init, headers, signal: AbortSignal.timeout(120_000) })
      body = Buffer.from(await res.arrayBuffer())
    } catch (e) {
      record(op, 'error', performance.now() - t0)
      fail(`${op} ${path}: ${e.message}`)
      return null
    }
    record(op, res.status, performance.now() - t0)
    if (res.status >= 500) fail(`${op} ${path}: ${res.status} ${body.toString().slice(0, 300)}`)
    return { status: res.status, body, json: () => JSON.parse(body.toString()) }
  }

  // ── samples of the server process ──
  const samples = []
  const sample = () => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0)
      // RssAnon is the heap (and stacks); RssFile, the mapped binary, libraries and SQLite's files.
      samples.push({ t: performance.now(), rssKb: kb('VmRSS'), anonKb: kb('RssAnon'), fileKb: kb('RssFile'), fds: readdirSync(`/proc/${pid}/fd`).length })
    } catch {}
  }
  sample()
  const idle = samples.pop() // before any load: the baseline for descriptors
  const sampler = setInterval(sample, 1000)

  // ── the clients ──
  const snapshots = [] // snapshot IDs, oldest first
  const deadline = performance.now() + DURATION_S * 1000
  async function client(n) {
    let sandbox = null
    let file = null // {path, data} written to the sandbox
    while (performance.now() < deadline) {
      const roll = Math.random()
      if (!sandbox) {
        const template = snapshots.length && roll < 0.2 ? snapshots[Math.floor(Math.random() * snapshots.length)] : 'base'
        const r = await request('create', '/sandboxes', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          // Loopback only: this measures the server under load; a pasta per sandbox (its own
          // ~30 MB process) is measured by bench/start.mjs.
          body: JSON.stringify({ templateID: template, timeout: 600, metadata: { client: String(n) }, allow_internet_access: false }),
        })
        // A snapshot deleted meanwhile is a 404: an expected answer.
        if (r?.status === 201) {
          sandbox = r.json().sandboxID
          tokens.set(sandbox, r.json().envdAccessToken)
        }
        else if (r && r.status !== 404) fail(`create from ${template}: ${r.status} ${r.body}`)
        file = null
      } else if (roll < 0.3) {
        const x = Math.floor(Math.random() * 1000)
        const r = await request('run', '/process.Process/Start', {
          method: 'POST',
          headers: { 'content-type': 'application/connect+json', 'connect-protocol-version': '1' },
          body: envelope({ process: { cmd: '/bin/sh', args: ['-c', `echo $((${x} * 2))`] } }),
        }, sandbox)
        if (r?.status === 200) {
          const events = envelopes(r.body)
          const out = events.map((e) => e.json.event?.data?.stdout).filter(Boolean).map((b) => Buffer.from(b, 'base64')).join('')
          const end = events.at(-1)
          if (out !== `${x * 2}\n` || end?.flags !== 2 || end.json.error) fail(`run: got ${JSON.stringify(out)}: ${JSON.stringify(events)}`)
        } else if (r) fail(`run: ${r.status} ${r.body}`)
      } else if (roll < 0.55) {
        if (file && Math.random() < 0.5) {
          const r = await request('file read', `/files?path=${encodeURIComponent(file.path)}`, {}, sandbox)
          if (r && (r.status !== 200 || !r.body.equals(file.data))) fail(`file read ${file.path}: ${r.status}, ${r.body.length} bytes`)
        } else {
          const data = randomBytes(FILE_BYTES)
          const path = `/home/user/f${Math.floor(Math.random() * 4)}.bin`
          const r = await request('file write', `/files?path=${encodeURIComponent(path)}`, {
            method: 'POST',
            headers: { 'content-type': 'application/octet-stream' },
            body: data,
          }, sandbox)
          if (r?.status === 200) file = { path, data }
          else if (r) fail(`file write: ${r.status} ${r.body}`)
        }
      } else if (roll < 0.7) {
        const r = await request('snapshot', `/sandboxes/${sandbox}/snapshots`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
        if (r?.status === 201) snapshots.push(r.json().snapshotID)
        else if (r) fail(`snapshot: ${r.status} ${r.body}`)
      } else if (roll < 0.85) {
        if (snapshots.length === 0) continue
        // Mostly the oldest, once there are many; else any.
        const i = snapshots.length > MAX_SNAPSHOTS ? 0 : Math.floor(Math.random() * snapshots.length)
        const [id] = snapshots.splice(i, 1)
        const r = await request('delete snapshot', `/templates/${encodeURIComponent(id)}`, { method: 'DELETE' })
        // 400: a sandbox started from it still runs (it goes back to the pool); 404: already gone.
        if (r?.status === 400) snapshots.push(id)
        else if (r && r.status !== 204 && r.status !== 404) fail(`delete snapshot: ${r.status} ${r.body}`)
      } else {
        const r = await request('kill', `/sandboxes/${sandbox}`, { method: 'DELETE' })
        if (r && r.status !== 204) fail(`kill: ${r.status} ${r.body}`)
        tokens.delete(sandbox)
        sandbox = null
      }
    }
    return sandbox
  }
  const t0 = performance.now()
  const left = await Promise.all(Array.from({ length: CONCURRENCY }, (_, n) => client(n)))
  const elapsedS = (performance.now() - t0) / 1000
  clearInterval(sampler)
  sample()

  // ── everything goes; then nothing may be left ──
  await Promise.all(left.filter(Boolean).map((id) => request('kill', `/sandboxes/${id}`, { method: 'DELETE' })))
  for (const id of snapshots) await request('delete snapshot', `/templates/${encodeURIComponent(id)}`, { method: 'DELETE' })
  const listed = (await request('list', '/snapshots?limit=100'))?.json() ?? []
  for (const s of listed) await request('delete snapshot', `/templates/${encodeURIComponent(s.snapshotID)}`, { method: 'DELETE' })
  const running = (await request('list', '/v2/sandboxes'))?.json() ?? []
  if (running.length) fail(`sandboxes still listed after the kills: ${running.length}`)
  const layers = readdirSync(join(server.dataDir, 'layers')).filter((n) => !n.startsWith('.'))
  if (layers.length) fail(`layers left with no snapshot: ${layers.length}`)
  const sandboxDirs = readdirSync(join(server.dataDir, 'sandboxes'))
  if (sandboxDirs.length) fail(`sandbox directories left while the server runs: ${sandboxDirs.length}`)
  const cgroupName = serverCgroupName(server.dataDir)
  const childCgroups = ['memory', 'pids', 'cpu', 'freezer', '']
    .map((h) => join('/sys/fs/cgroup', h, cgroupName))
    .flatMap((p) => {
      try {
        return readdirSync(p, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(p, e.name))
      } catch {
        return []
      }
    })
  if (childCgroups.length) fail(`sandbox cgroups left while the server runs: ${childCgroups.slice(0, 5).join(', ')}`)
  const guestsNow = () => allProcesses().filter((p) => p.pid !== pid && p.cmdline.includes(server.dataDir))
  let guests = guestsNow()
  if (guests.length) {
    const ids = guests.map((p) => /sandboxes\/([a-z0-9]+)\//.exec(p.cmdline)?.[1])
    console.error(`load: ${guests.length} guest processes right after the kills: ${guests.map((p) => `${p.pid} ${p.cmdline}`).join('; ')}`)
    for (const id of new Set(ids)) console.error(`load: ${id}: ${(await request('list', `/sandboxes/${id}`))?.status}`)
    await new Promise((r) => setTimeout(r, 2000))
    guests = guestsNow()
  }
  if (guests.length) fail(`guest processes left while the server runs: ${guests.map((p) => `${p.pid} ${p.cmdline}`).join('; ')}`)

  // The HTTP client closes its idle keep-alive connections after 4 s; then only the server's own
  // descriptors are left. 15 s also outlasts the runtime's idle blocking threads (10 s), whose
  // malloc caches would count as live heap, and lets the server give its freed heap back.
  await new Promise((r) => setTimeout(r, SETTLE_S * 1000))
  sample()
  const after = samples.pop() // every sandbox and snapshot gone: descriptors back to the baseline
  after.kinds = fdKinds(pid)
  const heapAfter = heap.at(-1) // every sandbox and snapshot gone
  const stop = await server.stop()
  try {
    assertNoLeftovers({ dataDir: server.dataDir, sandboxIds: new Set() })
  } catch (e) {
    fail(e.message)
  }
  if (stop.code !== 0) fail(`the server exited with ${stop.code ?? stop.signal} after SIGTERM`)
  removeDataDir(server.dataDir)

  // ── the report ──
  const third = Math.max(1, Math.floor(samples.length / 3))
  const mean = (xs, f) => xs.reduce((a, x) => a + f(x), 0) / xs.length
  const first = samples.slice(0, third)
  const last = samples.slice(-third)
  const rss = { firstMb: mean(first, (s) => s.rssKb) / 1024, lastMb: mean(last, (s) => s.rssKb) / 1024, maxMb: Math.max(...samples.map((s) => s.rssKb)) / 1024 }
  const fds = { first: mean(first, (s) => s.fds), last: mean(last, (s) => s.fds), max: Math.max(...samples.map((s) => s.fds)) }
  const growth = (a, b, slack) => b > a * 1.25 && b - a > slack
  if (growth(rss.firstMb, rss.lastMb, 32)) fail(`RSS grew: ${rss.firstMb.toFixed(1)} MB → ${rss.lastMb.toFixed(1)} MB`)
  // Live heap once everything is gone: 1.0-1.2 MB after 60 s and after 180 s runs (0.1 MB before
  // any load). Memory kept per sandbox or per request would pile up here, whatever the allocator
  // does with the rest.
  if (heapAfter && heapAfter.inUseKb > heap[0].inUseKb + 8 * 1024) {
    fail(`live heap: ${(heap[0].inUseKb / 1024).toFixed(1)} MB before the load, ${(heapAfter.inUseKb / 1024).toFixed(1)} MB after everything was gone`)
  }
  // Under load the descriptors follow the number of live sandboxes; once all are gone they
  // must be back where they started.
  if (after.fds > idle.fds + 16) {
    fail(`open descriptors: ${idle.fds} before the load, ${after.fds} after everything was gone (${JSON.stringify(after.kinds)})`)
  }

  let total = 0
  let fiveXX = 0
  console.log(`\nload: ${CONCURRENCY} clients, ${elapsedS.toFixed(0)} s`)
  console.log('| request | count | p50 ms | p99 ms | statuses |')
  console.log('|---|---|---|---|---|')
  for (const [op, s] of [...stats].sort()) {
    total += s.n
    fiveXX += Object.entries(s.statuses).filter(([k]) => k === 'error' || Number(k) >= 500).reduce((a, [, v]) => a + v, 0)
    const st = Object.entries(s.statuses).map(([k, v]) => `${k}: ${v}`).join(', ')
    console.log(`| ${op} | ${s.n} | ${pct(s.ms, 50).toFixed(1)} | ${pct(s.ms, 99).toFixed(1)} | ${st} |`)
  }
  console.log(`\nload: ${total} requests (${(total / elapsedS).toFixed(0)}/s), ${fiveXX} 5xx or transport errors`)
  console.log(`load: server RSS ${rss.firstMb.toFixed(1)} MB (first third) → ${rss.lastMb.toFixed(1)} MB (last third), max ${rss.maxMb.toFixed(1)} MB; ` +
    `${(after.rssKb / 1024).toFixed(1)} MB idle after; open fds ${idle.fds} idle before, ${fds.first.toFixed(0)} → ${fds.last.toFixed(0)} under load ` +
    `(max ${fds.max}), ${after.fds} idle after; ${samples.length} samples`)
  // The run by tenths (mean of each tenth's samples): a leak keeps climbing, a cache levels off.
  const tenths = (xs, f) =>
    Array.from({ length: 10 }, (_, i) => xs.slice(Math.floor((i * xs.length) / 10), Math.floor(((i + 1) * xs.length) / 10)))
      .filter((part) => part.length)
      .map((part) => (mean(part, f) / 1024).toFixed(1))
      .join(', ')
  console.log(`load: RSS by tenth ${tenths(samples, (s) => s.rssKb)} MB; anonymous ${tenths(samples, (s) => s.anonKb)} MB; file ${tenths(samples, (s) => s.fileKb)} MB`)
  const underLoad = heap.filter((h) => h.t >= t0 && h.t <= t0 + elapsedS * 1000)
  if (underLoad.length) {
    console.log(`load: malloc in use by tenth ${tenths(underLoad, (h) => h.inUseKb)} MB; free in the heaps ${tenths(underLoad, (h) => h.freeKb)} MB; ` +
      `in use ${(heap[0].inUseKb / 1024).toFixed(1)} MB before the load, ${(heapAfter.inUseKb / 1024).toFixed(1)} MB once everything was gone ` +
      `(${(heapAfter.freeKb / 1024).toFixed(1)} MB free in the heaps)`)
  }
  if (JSON_OUT) {
    const ops = Object.fromEntries([...stats].map(([op, s]) => [op, { n: s.n, p50: pct(s.ms, 50), p99: pct(s.ms, 99), statuses: s.statuses }]))
    writeFileSync(JSON_OUT, JSON.stringify({ concurrency: CONCURRENCY, seconds: elapsedS, total, fiveXX, rss, fds, idle, after, ops, samples, heap, failures }, null, 2))
  }
  if (failures.length) {
    console.error(`\nload: FAILED: ${failures.length} problems (first: ${failures[0]})`)
    process.exit(1)
  }
  console.log('load: no 5xx, RSS and descriptors flat, nothing left behind')
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
