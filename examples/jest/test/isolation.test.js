const { Sandbox } = require('sandbank')
const { runPython } = require('../src/run-python')

test('each run gets a fresh sandbox: files do not leak between runs', async () => {
  await runPython('open("/home/user/secret.txt", "w").write("mine")')
  const r = await runPython('import os\nprint(os.path.exists("/home/user/secret.txt"))')
  expect(r.stdout).toBe('False\n')
})

test('no sandbox is left running after a run', async () => {
  const run = `jest-${process.pid}-${Date.now()}`
  const r = await runPython('print("bye")', { metadata: { run } })
  expect(r.stdout).toBe('bye\n')
  const mine = await Sandbox.list({ query: { metadata: { run } } }).nextItems()
  expect(mine).toEqual([])
})

test('the snippet runs as an unprivileged user', async () => {
  const r = await runPython('import os, pwd\nprint(os.getuid(), pwd.getpwuid(os.getuid()).pw_name)')
  expect(r.stdout).toBe('1000 user\n')
})

test('errors are sandbank error classes in the test realm (instanceof works under Jest)', async () => {
  const { SandboxError, SandboxNotFoundError } = require('sandbank')
  const err = await Sandbox.connect('nosuchsandbox0000000').catch((e) => e)
  expect(err).toBeInstanceOf(SandboxNotFoundError)
  expect(err).toBeInstanceOf(SandboxError)
  expect(err).toBeInstanceOf(Error)
  expect(err.name).toBe('SandboxNotFoundError')
})

test('bytes made in the test realm upload intact (ArrayBuffer, typed array, Blob)', async () => {
  const sandbox = await Sandbox.create()
  try {
    const bytes = new Uint8Array([0, 1, 2, 253, 254, 255])
    await sandbox.files.write('/tmp/ab.bin', bytes.buffer)
    await sandbox.files.write('/tmp/u8.bin', bytes)
    await sandbox.files.write('/tmp/blob.bin', new Blob([bytes]))
    for (const name of ['ab', 'u8', 'blob']) {
      const back = await sandbox.files.read(`/tmp/${name}.bin`, { format: 'bytes' })
      expect(Array.from(back)).toEqual(Array.from(bytes))
    }
  } finally {
    await sandbox.kill()
  }
})
