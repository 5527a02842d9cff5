// The app: run a user's Python snippet in a fresh sandbox and return what it printed.
// With no configuration, sandbank starts a local engine (Linux, root); with NOVITA_API_KEY set it
// uses the Novita cloud. The code is the same either way.
import { Sandbox, CommandExitError } from 'sandbank'

/**
 * @param {string} code Python source
 * @param {{ timeoutMs?: number, metadata?: Record<string, string> }} [opts]
 * @returns {Promise<{ stdout: string, stderr: string, exitCode: number }>}
 */
export async function runPython(code, { timeoutMs = 30_000, metadata = {} } = {}) {
  const sandbox = await Sandbox.create({ timeoutMs: timeoutMs + 30_000, metadata: { app: 'run-python', ...metadata } })
  try {
    await sandbox.files.write('/home/user/snippet.py', code)
    const r = await sandbox.commands.run('python3 /home/user/snippet.py', { timeoutMs })
    return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode }
  } catch (e) {
    // A snippet that fails is a result, not an error of the app.
    if (e instanceof CommandExitError) return { stdout: e.stdout, stderr: e.stderr, exitCode: e.exitCode }
    throw e
  } finally {
    await sandbox.kill()
  }
}
