// The code interpreter against a real server: sandbank/code-interpreter and the published
// @e2b/code-interpreter run code in the built-in template code-interpreter-v1 (Jupyter kernels
// behind port 49999). The template takes minutes to build the first time, so this file's server
// runs on a data dir kept beside the base images (scripts/interpreter-template.mjs, which
// `npm test` runs first); the build here is then a no-op.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { Sandbox, Execution, Result, OutputMessage, ExecutionError, SandboxError, NotFoundError, Template } from 'sandbank/code-interpreter'
import * as e2bci from '@e2b/code-interpreter'
import * as novitaci from 'novita-sandbox/code-interpreter'
import { assertNoLeftovers, sandbankBinary, startServer } from './helpers.mjs'
import { interpreterDataDir } from '../scripts/interpreter-template.mjs'

let server
before(async () => {
  server = await startServer({ dataDir: interpreterDataDir() })
  const t0 = Date.now()
  const r = spawnSync(sandbankBinary(), ['templates', 'prepare', 'code-interpreter'], {
    encoding: 'utf8',
    env: { ...process.env, SANDBANK_URL: server.url, SANDBANK_API_KEY: server.apiKey },
  })
  assert.equal(r.status, 0, `sandbank templates prepare code-interpreter failed:\n${r.stderr}`)
  console.log(`# prepare: ${((Date.now() - t0) / 1000).toFixed(1)} s (${r.stderr.trim().split('\n').pop()})`)
})
after(async () => {
  if (!server) return
  // The data dir is kept (the built template in it); what the server ran must be gone.
  const r = await server.stop()
  assert.equal(r.code, 0, `the server exited with ${r.code ?? r.signal}; stderr:\n${server.stderr.slice(-4000)}`)
  assertNoLeftovers(server)
})

async function create(t, opts = {}) {
  const t0 = performance.now()
  const sbx = await Sandbox.create({ ...server.novita(), ...opts })
  server.sandboxIds.add(sbx.sandboxId)
  t.after(() => sbx.kill().catch(() => {}))
  return Object.assign(sbx, { createdMs: performance.now() - t0 })
}

describe('sandbank/code-interpreter', () => {
  test('the package exports the interpreter surface, ESM and CJS alike', async () => {
    const cjs = createRequire(import.meta.url)('sandbank/code-interpreter')
    // ESM: every name of sandbank's entry too (code-interpreter.mjs lists them).
    const esm = await import('sandbank/code-interpreter')
    const missing = Object.keys(await import('sandbank')).filter((k) => !(k in esm))
    assert.deepEqual(missing, [], 'names of sandbank missing from sandbank/code-interpreter (ESM)')
    assert.deepEqual(Object.keys(esm).filter((k) => k !== 'default' && !(k in cjs)), [], 'the ESM and CJS entries differ')
    assert.equal(cjs.Sandbox, Sandbox)
    assert.equal(cjs.default, Sandbox)
    assert.equal(cjs.CodeInterpreterSandbox, Sandbox)
    for (const cls of [Execution, Result, OutputMessage, ExecutionError]) assert.equal(typeof cls, 'function')
    // And everything of sandbank.
    assert.equal(typeof cjs.Template, 'function')
    assert.equal(cjs.SandboxError, SandboxError)
  })

  test('state is kept between calls; stdout streams; the template is the default', async (t) => {
    const sbx = await create(t)
    const t0 = performance.now()
    const first = await sbx.runCode('x = 1')
    const firstMs = performance.now() - t0
    console.log(`# create ${sbx.createdMs.toFixed(0)} ms, first runCode ${firstMs.toFixed(0)} ms`)
    assert.ok(first instanceof Execution)
    assert.equal(first.error, undefined)
    assert.equal(first.text, undefined)
    const second = await sbx.runCode('x + 1')
    assert.equal(second.text, '2')
    assert.equal(second.results.length, 1)
    assert.equal(second.results[0].isMainResult, true)
    assert.equal(second.executionCount, first.executionCount + 1)
    assert.deepEqual(second.toJSON().logs, { stdout: [], stderr: [] })
    assert.equal((await sbx.getInfo()).templateId.length > 0, true)

    // onStdout gets each line as it is printed, not at the end.
    const seen = []
    const started = Date.now()
    const streamed = await sbx.runCode('import sys, time\nprint("one", flush=True)\ntime.sleep(1.5)\nprint("two")\nprint("err", file=sys.stderr)', {
      onStdout: (m) => seen.push({ line: m.line, at: Date.now() - started, m }),
      onStderr: (m) => seen.push({ line: m.line, at: Date.now() - started, m }),
    })
    const total = Date.now() - started
    assert.deepEqual(seen.map((s) => s.line), ['one\n', 'two\n', 'err\n'])
    assert.ok(seen[0].m instanceof OutputMessage && seen[0].m.error === false && seen[2].m.error === true)
    assert.ok(seen[0].at < total - 1000, `the first line came at ${seen[0].at} ms of ${total} ms: not streamed`)
    assert.deepEqual(streamed.logs, { stdout: ['one\n', 'two\n'], stderr: ['err\n'] })
  })

  test('an error has its name, value and traceback; envs are for one execution', async (t) => {
    const sbx = await create(t)
    const errors = []
    const e = await sbx.runCode('def f():\n    return 1 / 0\nf()', { onError: (err) => errors.push(err) })
    assert.ok(e.error instanceof ExecutionError)
    assert.equal(e.error.name, 'ZeroDivisionError')
    assert.equal(e.error.value, 'division by zero')
    assert.match(e.error.traceback, /ZeroDivisionError/)
    assert.match(e.error.traceback, /f\(\)/)
    assert.equal(errors[0], e.error)

    const withEnv = await sbx.runCode('import os; os.environ["GREETING"]', { envs: { GREETING: 'hello' } })
    assert.equal(withEnv.text, "'hello'")
    assert.equal((await sbx.runCode('import os; os.environ.get("GREETING", "unset")')).text, "'unset'")

    await assert.rejects(sbx.runCode('1', { language: 'r' }), (err) => err instanceof SandboxError && /language 'r' is not supported/.test(err.message))
    await assert.rejects(sbx.runCode('1', { language: 'python', context: { id: 'x' } }), /context or language/)
    // A long execution past timeoutMs is a TimeoutError, and the kernel is interrupted.
    await assert.rejects(sbx.runCode('import time; time.sleep(30)', { timeoutMs: 1000 }), (err) => err.name === 'TimeoutError')
    assert.equal((await sbx.runCode('6 * 7')).text, '42')
    // A cell's pip install (for the user; PyPI, as the template's build) is importable at once.
    const pip = await sbx.runCode('%pip install -q --disable-pip-version-check tabulate==0.9.0\nimport tabulate; tabulate.__version__', { timeoutMs: 120_000 })
    assert.equal(pip.text, "'0.9.0'", JSON.stringify(pip))
  })

  test('a matplotlib figure comes back as a PNG result; rich formats map to their keys', async (t) => {
    const sbx = await create(t)
    const results = []
    const e = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()', {
      onResult: (r) => results.push(r),
    })
    assert.equal(e.error, undefined, e.error?.traceback)
    const png = e.results.find((r) => r.png)
    assert.ok(png, `no PNG among ${JSON.stringify(e.results.map((r) => r.formats()))}`)
    assert.ok(png instanceof Result)
    assert.equal(png.isMainResult, false)
    assert.deepEqual(Buffer.from(png.png, 'base64').subarray(0, 8), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
    assert.ok(png.formats().includes('png'))
    assert.equal(results[0], png)
    // The figure's data too, as the cloud's chart object.
    assert.equal(png.chart?.type, 'line', JSON.stringify(png.chart))
    assert.equal(png.chart.title, 'squares')
    assert.deepEqual(png.chart.elements.map((l) => l.points), [[[1, 1], [2, 4], [3, 9]]])
    assert.equal(png.chart.x_scale, 'linear')
    assert.equal(png.chart.x_ticks.length, png.chart.x_tick_labels.length)

    const charts = await sbx.runCode(
      [
        'import matplotlib.pyplot as plt, pandas as pd',
        'fig, (bars, pie) = plt.subplots(1, 2)',
        'fig.suptitle("both")',
        'bars.bar(["a", "b"], [3, 5], label="2024")',
        'bars.set_xlabel("letter")',
        'pie.pie([1, 3], labels=["x", "y"])',
        'plt.show()',
        'plt.plot(pd.to_datetime(["2024-01-01", "2024-01-02"]), [1, 2])',
        'plt.show()',
      ].join('\n'),
    )
    assert.equal(charts.error, undefined, charts.error?.traceback)
    const [both, dated] = charts.results.map((r) => r.chart)
    assert.equal(both.type, 'superchart')
    assert.equal(both.title, 'both')
    const [bar, pie] = both.elements
    assert.deepEqual([bar.type, bar.x_label, bar.elements], ['bar', 'letter', [{ label: 'a', value: 3, group: '2024' }, { label: 'b', value: 5, group: '2024' }]])
    assert.deepEqual(pie.elements, [{ label: 'x', angle: 90, radius: 1 }, { label: 'y', angle: 270, radius: 1 }])
    assert.equal(dated.x_scale, 'datetime')
    assert.deepEqual(dated.elements[0].points, [['2024-01-01T00:00:00', 1], ['2024-01-02T00:00:00', 2]])

    const rich = await sbx.runCode(
      'from IPython.display import display, HTML, Markdown, JSON\nimport pandas as pd\ndisplay(HTML("<b>hi</b>"), Markdown("# title"), JSON({"a": 1}))\npd.DataFrame({"a": [1, 2]})',
    )
    assert.equal(rich.error, undefined, rich.error?.traceback)
    const [html, md, json, frame] = rich.results
    assert.equal(html.html, '<b>hi</b>')
    assert.equal(md.markdown, '# title')
    assert.deepEqual(JSON.parse(json.json), { a: 1 })
    assert.equal(frame.isMainResult, true)
    assert.match(frame.html, /<table/)
    assert.match(frame.text, /a\n0\s+1/)
    assert.deepEqual(frame.data, { a: [1, 2] })
    assert.ok(frame.formats().includes('data'))
    const table = await sbx.runCode('pd.DataFrame({"n": [1.5, float("nan")], "when": pd.to_datetime(["2024-05-01", None])})')
    assert.deepEqual(table.results[0].data, { n: [1.5, null], when: ['2024-05-01T00:00:00', null] })
  })

  test('contexts: separate variables, restart clears, list and remove', async (t) => {
    const sbx = await create(t)
    await sbx.runCode('shared = "default"')
    const ctx = await sbx.createCodeContext({ cwd: '/tmp' })
    assert.equal(ctx.language, 'python')
    assert.equal(ctx.cwd, '/tmp')
    assert.equal((await sbx.runCode('import os; os.getcwd()', { context: ctx })).text, "'/tmp'")
    const missing = await sbx.runCode('shared', { context: ctx })
    assert.equal(missing.error?.name, 'NameError', 'a new context does not see the default one\'s variables')
    await sbx.runCode('mine = 5', { context: ctx })
    assert.equal((await sbx.runCode('mine * 2', { context: ctx })).text, '10')
    assert.equal((await sbx.runCode('"mine" in dir()')).text, 'False')

    const ids = (await sbx.listCodeContexts()).map((c) => c.id)
    assert.ok(ids.includes(ctx.id), `${ctx.id} not in ${ids}`)
    assert.equal(ids.length, 2, 'the default context and the new one')

    await sbx.restartCodeContext(ctx)
    assert.equal((await sbx.runCode('mine', { context: ctx })).error?.name, 'NameError', 'restart clears the state')
    assert.equal((await sbx.runCode('shared')).text, "'default'", 'the other context is untouched')

    await sbx.removeCodeContext(ctx.id)
    assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === ctx.id))
    await assert.rejects(sbx.runCode('1', { context: ctx }), (err) => err instanceof NotFoundError && err.message.includes(ctx.id))
    await assert.rejects(sbx.createCodeContext({ cwd: '/nope' }), /cwd '\/nope' is not a directory/)
    await assert.rejects(sbx.createCodeContext({ language: 'r' }), /language 'r' is not supported/)
  })

  test('JavaScript and TypeScript (Deno) and Bash contexts', async (t) => {
    const sbx = await create(t)
    const out = []
    const js = await sbx.runCode('let n = 20; console.log("from js"); n + 1', { language: 'js', onStdout: (m) => out.push(m.line) })
    assert.equal(js.text, '21', JSON.stringify(js))
    assert.deepEqual(out, ['from js\n'])
    assert.equal((await sbx.runCode('n * 2', { language: 'javascript' })).text, '40', 'the default JS context keeps its state')
    const ts = await sbx.runCode('const k: number = 6; k * 7', { language: 'ts' })
    assert.equal(ts.text, '42', JSON.stringify(ts))
    const err = await sbx.runCode('throw new TypeError("nope")', { language: 'js' })
    assert.equal(err.error?.name, 'TypeError')
    assert.equal(err.error?.value, 'nope')
    const env = await sbx.runCode('Deno.env.get("WHO")', { language: 'js', envs: { WHO: 'js-env' } })
    assert.equal(env.text, '"js-env"')
    assert.equal((await sbx.runCode('Deno.env.get("WHO") ?? "unset"', { language: 'js' })).text, '"unset"')

    const ctx = await sbx.createCodeContext({ language: 'bash', cwd: '/tmp' })
    assert.equal(ctx.language, 'bash')
    const sh = await sbx.runCode('X=5; echo "$PWD $((X * 2)) $WHO"', { context: ctx, envs: { WHO: 'sh-env' } })
    assert.deepEqual(sh.logs.stdout.join(''), '/tmp 10 sh-env\n')
    const again = await sbx.runCode('echo "${X}-${WHO:-unset}"', { context: ctx })
    assert.deepEqual(again.logs.stdout.join(''), '5-unset\n', 'state kept; the execution\'s variable put back')
    const langs = (await sbx.listCodeContexts()).map((c) => c.language).sort()
    assert.deepEqual(langs, ['bash', 'javascript', 'python', 'typescript'])
    await assert.rejects(sbx.runCode('echo', { language: 'bash', envs: { 'A B': '1' } }), /'A B' is not an environment variable name/)
  })
})

describe('@e2b/code-interpreter (published) against the local server', () => {
  // With sandboxUrl set, its interpreter requests go to the server with the sandbox and port
  // in headers (E2b-Sandbox-Id, E2b-Sandbox-Port: 49999); the server carries them to the port.
  test('state, stdout, errors, a PNG, contexts', async (t) => {
    const sbx = await e2bci.Sandbox.create(server.e2b())
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill().catch(() => {}))
    await sbx.runCode('x = 1')
    assert.equal((await sbx.runCode('x + 1')).text, '2')
    const lines = []
    const printed = await sbx.runCode('print("hello")', { onStdout: (m) => lines.push(m.line) })
    assert.deepEqual(lines, ['hello\n'])
    assert.deepEqual(printed.logs.stdout, ['hello\n'])
    const e = await sbx.runCode('1 / 0')
    assert.equal(e.error.name, 'ZeroDivisionError')
    assert.equal(e.error.value, 'division by zero')
    const plot = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()')
    assert.ok(plot.results.some((r) => r.png?.startsWith('iVBORw0KGgo')), 'a PNG result')
    assert.equal(plot.results[0].chart?.type, 'line')
    assert.deepEqual((await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1]})')).results[0].data, { a: [1] })
    assert.equal((await sbx.runCode('[1, 2].length', { language: 'js' })).text, '2')
    const ctx = await sbx.createCodeContext()
    assert.equal((await sbx.runCode('"x" in dir()', { context: ctx })).text, 'False')
    assert.ok((await sbx.listCodeContexts()).some((c) => c.id === ctx.id))
    await sbx.runCode('y = 2', { context: ctx })
    await sbx.restartCodeContext(ctx)
    assert.equal((await sbx.runCode('y', { context: ctx })).error?.name, 'NameError')
    await sbx.removeCodeContext(ctx)
    assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === ctx.id))
  })
})

describe('novita-sandbox/code-interpreter (published) against the local server', () => {
  // It builds `https://${getHost(49999)}` and sends no sandbox headers: unmodified it cannot
  // reach a plain-HTTP local server. A subclass sends its requests the way e2b's SDK does.
  class LocalSandbox extends novitaci.Sandbox {
    get jupyterUrl() {
      return server.url
    }
    get jupyterHeaders() {
      return { ...super.jupyterHeaders, 'E2b-Sandbox-Id': this.sandboxId, 'E2b-Sandbox-Port': '49999' }
    }
  }

  test('with the documented subclass: state, stdout, errors, contexts', async (t) => {
    const sbx = await LocalSandbox.create(server.novita())
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill().catch(() => {}))
    await sbx.runCode('x = 41')
    assert.equal((await sbx.runCode('x + 1')).text, '42')
    const lines = []
    await sbx.runCode('print("hi")', { onStdout: (m) => lines.push(m.line) })
    assert.deepEqual(lines, ['hi\n'])
    assert.equal((await sbx.runCode('1 / 0')).error.name, 'ZeroDivisionError')
    const ctx = await sbx.createCodeContext()
    assert.equal((await sbx.runCode('"x" in dir()', { context: ctx })).text, 'False')
    await sbx.removeCodeContext(ctx)
    assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === ctx.id))
  })
})

describe('snapshots and forks', () => {
  test('a sandbox started from a snapshot has the interpreter\'s variables', async (t) => {
    const sbx = await create(t)
    await sbx.runCode('kept = [1, 2, 3]')
    const ctx = await sbx.createCodeContext()
    await sbx.runCode('other = "ctx"', { context: ctx })
    const snap = await sbx.createSnapshot()
    t.after(() => Sandbox.deleteSnapshot(snap.snapshotId, server.novita()).catch(() => {}))
    const t0 = performance.now()
    const copy = await Sandbox.create(snap.snapshotId, server.novita())
    server.sandboxIds.add(copy.sandboxId)
    t.after(() => copy.kill().catch(() => {}))
    const e = await copy.runCode('sum(kept)')
    console.log(`# from the snapshot (${snap.mode ?? '?'}): create + first runCode ${(performance.now() - t0).toFixed(0)} ms`)
    assert.equal(e.error, undefined, e.error?.traceback)
    assert.equal(e.text, '6')
    assert.equal((await copy.runCode('other', { context: ctx })).text, "'ctx'")
    // The original goes on by itself.
    await copy.runCode('kept.append(4)')
    assert.equal((await sbx.runCode('len(kept)')).text, '3')
  })

  test('a fork has the interpreter\'s variables, as the interpreter\'s Sandbox', async (t) => {
    const sbx = await create(t)
    await sbx.runCode('forked = "yes"')
    const [fork] = await sbx.fork({ count: 1 })
    assert.ok(fork instanceof Sandbox, String(fork))
    server.sandboxIds.add(fork.sandboxId)
    t.after(() => fork.kill().catch(() => {}))
    assert.equal((await fork.runCode('forked')).text, "'yes'")
  })
})

describe('templates on the interpreter', () => {
  // Last in the file: it removes the built-in template, which the build then
  // makes again (from its cached pip layers: seconds).
  test("a user's template fromTemplate('code-interpreter-v1') builds the built-in first when it is not built", async (t) => {
    const env = { ...process.env, SANDBANK_URL: server.url, SANDBANK_API_KEY: server.apiKey }
    const rm = spawnSync(sandbankBinary(), ['templates', 'rm', 'code-interpreter-v1'], { encoding: 'utf8', env })
    assert.equal(rm.status, 0, rm.stderr)
    const name = `ci-user-${process.pid}`
    t.after(() => spawnSync(sandbankBinary(), ['templates', 'rm', name], { env }))
    const logs = []
    const template = Template().fromTemplate('code-interpreter-v1').runCmd('echo made-by-user > /home/user/mine.txt', { user: 'user' })
    await Template.build(template, name, { ...server.e2b(), onBuildLogs: (l) => logs.push(l.message) })
    const listed = spawnSync(sandbankBinary(), ['templates', 'ls', '--json'], { encoding: 'utf8', env })
    const names = JSON.parse(listed.stdout).flatMap((x) => x.aliases ?? x.names ?? [])
    assert.ok(names.some((n) => n.startsWith('code-interpreter-v1')), `the built-in was built again: ${listed.stdout}`)
    const sbx = await Sandbox.create(name, server.novita())
    server.sandboxIds.add(sbx.sandboxId)
    t.after(() => sbx.kill().catch(() => {}))
    const e = await sbx.runCode('open("/home/user/mine.txt").read().strip()')
    assert.equal(e.text, "'made-by-user'", JSON.stringify(e))
  })
})
