import { describe, expect, test } from 'vitest'
import { Sandbox } from 'sandbank'
import { runPython } from '../src/run-python.js'

describe('runPython', () => {
  test('returns what the snippet prints', async () => {
    expect(await runPython('print(6 * 7)')).toEqual({ stdout: '42\n', stderr: '', exitCode: 0 })
  })

  test('a failing snippet gives its exit code and traceback', async () => {
    const r = await runPython('print("partial")\nraise SystemExit(3)')
    expect(r).toMatchObject({ exitCode: 3, stdout: 'partial\n' })
    const boom = await runPython('1 / 0')
    expect(boom.exitCode).toBe(1)
    expect(boom.stderr).toMatch(/ZeroDivisionError/)
  })

  test('runs concurrently, each in its own sandbox', async () => {
    const results = await Promise.all([1, 2, 3].map((n) => runPython(`import socket\nprint(${n}, socket.gethostname())`)))
    const hosts = results.map((r, i) => {
      const [n, host] = r.stdout.trim().split(' ')
      expect(Number(n)).toBe(i + 1)
      return host
    })
    expect(new Set(hosts).size).toBe(3)
  })

  test('no sandbox is left running after a run', async () => {
    const run = `vitest-${process.pid}-${Date.now()}`
    await runPython('print("bye")', { metadata: { run } })
    expect(await Sandbox.list({ query: { metadata: { run } } }).nextItems()).toEqual([])
  })
})
