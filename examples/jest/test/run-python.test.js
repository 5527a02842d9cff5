const { runPython } = require('../src/run-python')

describe('runPython', () => {
  test('returns what the snippet prints', async () => {
    const r = await runPython('print(6 * 7)')
    expect(r).toEqual({ stdout: '42\n', stderr: '', exitCode: 0 })
  })

  test('a failing snippet gives its exit code and traceback', async () => {
    const r = await runPython('import sys\nprint("partial")\nraise SystemExit(3)')
    expect(r.exitCode).toBe(3)
    expect(r.stdout).toBe('partial\n')

    const boom = await runPython('1 / 0')
    expect(boom.exitCode).toBe(1)
    expect(boom.stderr).toMatch(/ZeroDivisionError/)
  })
})
