// The addon loads in worker threads, and more than once per process: two Workers load `sandbank`
// at the same time (beside this file's own copy, itself in a worker under --pool=threads), each
// runs a snippet, and every thread exits by itself.
import { expect, test } from 'vitest'
import { isMainThread, Worker } from 'node:worker_threads'
import { version } from 'sandbank'

const WORKER = new URL('./fixtures/worker.js', import.meta.url)

function runWorker(code) {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { workerData: { code } })
    let result
    w.on('message', (m) => (result = m))
    w.on('error', reject)
    w.on('exit', (exitCode) => (exitCode === 0 && result ? resolve(result) : reject(new Error(`worker exited ${exitCode}, result ${JSON.stringify(result)}`))))
  })
}

test('sandbank works in two worker threads at once', async () => {
  const [a, b] = await Promise.all([runWorker('print("from a")'), runWorker('print("from b")')])
  expect(a).toMatchObject({ version: version(), stdout: 'from a\n', exitCode: 0 })
  expect(b).toMatchObject({ version: version(), stdout: 'from b\n', exitCode: 0 })
  expect(a.threadId).not.toBe(b.threadId)
  console.log(`test file on the ${isMainThread ? 'main thread' : 'worker thread'}; workers ${a.threadId} and ${b.threadId}`)
})

test('a third worker after the first two have exited loads it again', async () => {
  expect(await runWorker('print("again")')).toMatchObject({ stdout: 'again\n', exitCode: 0 })
})
