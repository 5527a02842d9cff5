// Attacks from inside a sandbox and through the API, against a real `sandbank serve` (on the btrfs
// layer store, with a disk limit) driven by the published novita-sandbox SDK. Each attack runs in its own sandbox; after
// each, a bystander sandbox must still run a command and the server must still start sandboxes.
// docs/RELIABILITY.md lists them with their outcome and how to run one.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { Sandbox, CommandExitError, NotEnoughSpaceError, NotFoundError } from 'novita-sandbox'
import { eventually, guestProcessesOfServer, layersRoot, loopDevicesOf, sandbankCgroups, serverCgroupName, startServer, stopAndCheck, userNamespaceOwner } from './helpers.mjs'
import { sandbankBinary } from '../scripts/local-server.mjs'
import { Sandbox as Sandbank } from 'sandbank'

const DISK_LIMIT_MB = 256

/** What root in a sandbox tries against the btrfs store: loop devices (existing, or made with
 * mknod) and btrfs's ioctls on its own files (request numbers `_IOC(dir, 0x94, nr, 4096)`);
 * prints `name=yes` for each that works. */
const STORE_PROBE = `import fcntl, os, glob
out = ['loops=%d' % len(glob.glob('/dev/loop*'))]
try:
    os.mknod('/tmp/loop9', 0o600 | 0o060000, os.makedev(7, 9))
    open('/tmp/loop9', 'rb').read(512)
    out.append('mknod-read=yes')
except OSError:
    out.append('mknod-read=no')
def ioc(d, nr): return (d << 30) | (4096 << 16) | (0x94 << 8) | nr
for name, req in [('ino_lookup', ioc(3, 18)), ('tree_search', ioc(3, 17)), ('snap_create', ioc(1, 23)), ('subvol_create', ioc(1, 14))]:
    for path in ['/', '/home/user']:
        fd = os.open(path, os.O_RDONLY)
        buf = bytearray(4096)
        if name == 'ino_lookup': buf[8:16] = (256).to_bytes(8, 'little')
        if name == 'snap_create': buf[0:8] = fd.to_bytes(8, 'little'); buf[56:60] = b'snap'
        if name == 'subvol_create': buf[8:12] = b'subv'
        try:
            fcntl.ioctl(fd, req, buf)
            out.append('%s:%s=yes' % (name, path))
        except OSError:
            out.append('%s:%s=no' % (name, path))
        os.close(fd)
print(' '.join(out))
`

let server
let bystander
before(async () => {
  server = await startServer({ extraArgs: ['--disk-limit-mb', String(DISK_LIMIT_MB)] })
  bystander = await create()
})
after(async () => {
  if (bystander) await bystander.kill().catch(() => {})
  if (server) await stopAndCheck(server)
})

async function create() {
  const sbx = await Sandbox.create({ ...server.novita(), timeoutMs: 120_000 })
  server.sandboxIds.add(sbx.sandboxId)
  return sbx
}

/** A sandbox for one attack, killed when the test ends. */
async function victim(t) {
  const sbx = await create()
  t.after(() => sbx.kill().catch(() => {}))
  return sbx
}

/** Runs `cmd` in the sandbox; resolves to its output whatever its exit status. */
async function sh(sbx, cmd, opts = {}) {
  try {
    const r = await sbx.commands.run(cmd, { timeoutMs: 60_000, ...opts })
    return { ...r, out: r.stdout + r.stderr }
  } catch (e) {
    if (e instanceof CommandExitError) return { exitCode: e.exitCode, error: e.error, stdout: e.stdout, stderr: e.stderr, out: e.stdout + e.stderr }
    throw e
  }
}
const root = (sbx, cmd, opts = {}) => sh(sbx, cmd, { user: 'root', ...opts })

/** The server survived: the bystander runs a command, and a new sandbox starts and runs one. */
async function assertServing() {
  assert.equal(server.proc.exitCode, null, 'the server died')
  assert.equal((await bystander.commands.run('echo alive')).stdout, 'alive\n')
  const fresh = await create()
  try {
    assert.equal((await fresh.commands.run('echo fresh')).stdout, 'fresh\n')
  } finally {
    await fresh.kill()
  }
}

/** Loop devices whose backing file's path contains `path` (an image, or a data dir). */

const marker = (what) => `sandbank-attack-${what}-${randomBytes(6).toString('hex')}`

/** A raw envd request to `sbx` (on `srv`), with its access token (novita-sandbox keeps it on the instance). */
const envd = (sbx, path, init = {}, srv = server) =>
  fetch(srv.url + path, {
    ...init,
    headers: { 'Novita-Sandbox-Id': sbx.sandboxId, 'Novita-Sandbox-Port': '49983', 'X-Access-Token': sbx.envdAccessToken ?? '', ...(init.headers ?? {}) },
  })

describe('host secrets', () => {
  test('host secrets: /root, /etc/shadow, the data dir and the api-key file are out of reach', async (t) => {
    const sbx = await victim(t)
    const secret = `/root/.${marker('secret')}`
    writeFileSync(secret, 'host secret')
    const keyFile = `${server.dataDir}/api-key`
    writeFileSync(keyFile, `${server.apiKey}\n`, { mode: 0o600 })
    t.after(() => rmSync(secret, { force: true }))
    for (const path of [secret, keyFile, `${server.dataDir}/state.db`]) {
      const r = await root(sbx, `cat ${path}`)
      assert.notEqual(r.exitCode, 0, `${path} is readable inside: ${r.out}`)
      await assert.rejects(sbx.files.read(path, { user: 'root' }), NotFoundError, `${path} through the files API`)
    }
    const hostShadow = existsSync('/etc/shadow') ? readFileSync('/etc/shadow', 'utf8') : ''
    const rootHash = /^root:([^:*!]{3,}):/m.exec(hostShadow)?.[1]
    const inside = await sbx.files.read('/etc/shadow', { user: 'root' })
    // The base image's own: no account has a password (`*`, or `!` for the locked `user`).
    assert.ok(inside.split('\n').filter(Boolean).every((l) => ['*', '!'].includes(l.split(':')[1])), inside)
    if (rootHash) assert.ok(!inside.includes(rootHash))
    // The key is nowhere a sandbox can read.
    const grep = await root(sbx, `grep -rIl --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr ${server.apiKey} / 2>/dev/null | head -5`)
    assert.equal(grep.stdout, '', grep.out)
    await assertServing()
  })
})

describe('host processes', () => {
  test('host processes: invisible, and the server cannot be signalled', async (t) => {
    const sbx = await victim(t)
    const ps = await root(sbx, 'ps -eo pid=,args=')
    const lines = ps.stdout.trim().split('\n')
    assert.ok(lines.length < 10, ps.stdout)
    assert.ok(!ps.stdout.includes('serve') && !ps.stdout.includes('node'), ps.stdout)
    const pid = server.proc.pid
    // The server's host pid names no process inside (sandbox pids start at 1).
    const kill = await root(sbx, `kill -9 ${pid} 2>&1; echo rc=$?`)
    assert.ok(kill.out.includes('No such process') || lines.some((l) => l.trim().startsWith(`${pid} `)), kill.out)
    await assertServing()
  })
})

describe('user namespace', () => {
  test("root inside is an unprivileged host user: host uid 100000, no say over the host's files", async (t) => {
    const sbx = await victim(t)
    const map = await root(sbx, 'cat /proc/self/uid_map')
    assert.deepEqual(map.stdout.trim().split(/\s+/), ['0', '100000', '65536'])
    // Seen from the host: the sandbox's root and its user are uids 100000 and 101000.
    const tag = marker('uid')
    await root(sbx, `exec -a ${tag}-root sleep 300 >/dev/null 2>&1 &`)
    await sh(sbx, `exec -a ${tag}-user sleep 300 >/dev/null 2>&1 &`)
    const hostUid = (name) => {
      const pid = readdirSync('/proc').find((p) => /^\d+$/.test(p) && readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith(`${tag}-${name}`))
      assert.ok(pid, `the ${name} process is visible from the host`)
      return readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)[1]
    }
    assert.equal(await eventually(() => hostUid('root')), '100000')
    assert.equal(await eventually(() => hostUid('user')), '101000')
    // The devices are the host's nodes: usable, but not root's to change.
    const before = statSync('/dev/null').mode
    const chmod = await root(sbx, 'chmod 000 /dev/null 2>&1; chown 0 /dev/null 2>&1; echo x > /dev/null && echo usable')
    assert.match(chmod.out, /Operation not permitted[\s\S]*Operation not permitted/)
    assert.ok(chmod.out.includes('usable'), chmod.out)
    assert.equal(statSync('/dev/null').mode, before, "the host's /dev/null is unchanged")
    // Its own files stay its own: /etc/hosts is root's inside.
    const hosts = await root(sbx, 'echo "10.0.0.1 extra" >> /etc/hosts && stat -c %u /etc/hosts && tail -1 /etc/hosts')
    assert.equal(hosts.stdout, '0\n10.0.0.1 extra\n')
    await assertServing()
  })
})

describe('network', () => {
  test('host loopback: the API port is unreachable from inside', async (t) => {
    const sbx = await victim(t)
    const port = new URL(server.url).port
    // Loopback, and the default gateway when the sandbox has one (host loopback is often mapped there).
    const probe = `python3 - <<'EOF'
import socket
targets = ['127.0.0.1']
for line in open('/proc/net/route').read().splitlines()[1:]:
    f = line.split()
    if f[1] == '00000000':
        targets.append(socket.inet_ntoa(bytes.fromhex(f[2])[::-1]))
for host in targets:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, ${port})); print('CONNECTED', host)
    except OSError as e:
        print('refused', host, e)
EOF`
    const r = await sh(sbx, probe)
    assert.ok(!r.out.includes('CONNECTED'), r.out)
    assert.ok(r.out.includes('refused 127.0.0.1'), r.out)
    await assertServing()
  })
})

describe('files API', () => {
  test('files API: .. in paths stays inside (read, write, list, rename)', async (t) => {
    const sbx = await victim(t)
    const name = marker('dotdot')
    await sbx.files.write(`/../../../../tmp/${name}`, 'inside')
    assert.equal(existsSync(`/tmp/${name}`), false, 'written on the host')
    assert.equal(await sbx.files.read(`/tmp/${name}`), 'inside')
    assert.equal(await sbx.files.read('/../../../etc/hostname'), `${sbx.sandboxId}\n`)
    const listing = (await sbx.files.list('/../..')).map((e) => e.name)
    assert.ok(listing.includes('tmp') && !listing.includes('work'), `host's / listed: ${listing}`)
    await sbx.files.rename(`/tmp/${name}`, `/../../../tmp/${name}.moved`)
    assert.equal(existsSync(`/tmp/${name}.moved`), false)
    assert.equal(await sbx.files.exists(`/tmp/${name}.moved`), true)
    await assertServing()
  })

  test('files API: symlinks resolve inside the sandbox, never to the host', async (t) => {
    const sbx = await victim(t)
    await root(sbx, `ln -s / /tmp/root-link; ln -s ${server.dataDir} /tmp/data-link; ln -s /etc /home/user/etc-link`)
    assert.equal(await sbx.files.read('/tmp/root-link/etc/hostname'), `${sbx.sandboxId}\n`)
    await assert.rejects(sbx.files.list('/tmp/data-link'), NotFoundError)
    await assert.rejects(sbx.files.read('/tmp/data-link/state.db'), NotFoundError)
    const name = marker('symlink')
    await sbx.files.write(`/tmp/root-link/tmp/${name}`, 'x')
    assert.equal(existsSync(`/tmp/${name}`), false)
    await assertServing()
  })

  test('files API: magic links of PID 1 (/proc/*/fd, exe, map_files, root) are refused', async (t) => {
    const sbx = await victim(t)
    const maps = (await sbx.files.read('/proc/1/maps')).split('\n').filter((l) => l.includes(' /'))
    assert.ok(maps.length > 0)
    const mapped = maps.map((l) => l.split(/\s+/)[0])
    const magic = ['/proc/self/fd/2', '/proc/1/fd/0', '/proc/1/exe', '/proc/self/root/etc/hostname', `/proc/1/map_files/${mapped[0]}`]
    for (const path of magic) {
      await assert.rejects(sbx.files.read(path), (e) => !(e instanceof assert.AssertionError), `read ${path}`)
    }
    // The same through symlinks made inside, and for writes (a truncating open would hit the
    // host file: the server's stderr, the sandbank binary, the host's libc).
    const secret = marker('stderr')
    for (const [i, path] of magic.entries()) {
      await root(sbx, `ln -sf ${path} /tmp/magic-${i}`)
      await assert.rejects(sbx.files.read(`/tmp/magic-${i}`), (e) => !(e instanceof assert.AssertionError), `read via link to ${path}`)
      await assert.rejects(sbx.files.write(`/tmp/magic-${i}`, `${secret}\n`), (e) => !(e instanceof assert.AssertionError), `write via link to ${path}`)
    }
    await assert.rejects(sbx.files.write('/proc/self/fd/2', `${secret}\n`))
    assert.ok(!server.stderr.includes(secret), "wrote into the server's stderr")
    // Nor from a shell inside: PID 1 is not dumpable.
    for (const path of ['/proc/1/fd/2', '/proc/1/exe', `/proc/1/map_files/${mapped[0]}`, '/proc/1/environ', '/proc/1/mem']) {
      const r = await root(sbx, `head -c 1 ${path} > /dev/null; echo rc=$?`)
      assert.ok(r.out.includes('Permission denied') && !r.out.includes('rc=0'), `${path}: ${r.out}`)
    }
    // envd's socket is in the sandbox's /dev, but envd answers the server only.
    const knock = await root(sbx, `python3 -c "
import socket
s = socket.socket(socket.AF_UNIX)
s.connect('/dev/.sandbank/envd.sock')
try:
    s.sendall(b'GET /health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')
    data = s.recv(100)
except (ConnectionResetError, BrokenPipeError):
    data = b''
print('answer', repr(data))
"`)
    assert.equal(knock.stdout, "answer b''\n", knock.out)
    await assertServing()
  })

  test('files API: hard links and bind mounts cannot reach host files', async (t) => {
    const sbx = await victim(t)
    const ln = await root(sbx, 'ln /proc/1/exe /tmp/exe 2>&1; ln /etc/shadow /tmp/shadow-link && echo linked')
    assert.ok(!existsSync('/tmp/exe') && ln.out.includes('linked'), ln.out)
    // The link is the sandbox's own shadow: root reads it; `user` may not, through the link either.
    assert.equal(await sbx.files.read('/tmp/shadow-link', { user: 'root' }), await sbx.files.read('/etc/shadow', { user: 'root' }))
    await assert.rejects(sbx.files.read('/tmp/shadow-link'), /denied/i)
    const bind = await root(sbx, 'mkdir -p /tmp/b && mount --bind / /tmp/b 2>&1; echo rc=$?')
    assert.ok(!bind.out.includes('rc=0'), bind.out)
    await assertServing()
  })

  test('files API: multipart filenames with .. or relative paths stay inside', async (t) => {
    const sbx = await victim(t)
    const name = marker('multipart')
    const upload = async (filename) => {
      const form = new FormData()
      form.append('file', new Blob(['payload']), filename)
      return envd(sbx, '/files?username=user', { method: 'POST', body: form })
    }
    let res = await upload(`/../../../../tmp/${name}`)
    assert.equal(res.status, 200, await res.text())
    assert.equal(existsSync(`/tmp/${name}`), false)
    assert.equal(await sbx.files.read(`/tmp/${name}`), 'payload')
    // A relative name is in the user's home, as envd has it; `..` climbs inside the sandbox only.
    res = await upload(`../../../../tmp/${name}.rel`)
    assert.equal(res.status, 200, await res.text())
    assert.equal(existsSync(`/tmp/${name}.rel`), false)
    assert.equal(await sbx.files.read(`/tmp/${name}.rel`), 'payload')
    res = await upload('/proc/self/fd/2')
    assert.ok(res.status >= 400, `${res.status} ${await res.text()}`)
    await assertServing()
  })
})

describe('limits', () => {
  /** A file of the sandbox's cgroup, v1 (`controller` hierarchy) or v2. */
  const cgroupFile = (sbx, controller, file) => {
    const group = `${serverCgroupName(server.dataDir)}/${sbx.sandboxId}`
    const p = [`/sys/fs/cgroup/${controller}/${group}/${file}`, `/sys/fs/cgroup/${group}/${file}`].find(existsSync)
    assert.ok(p, `no ${file} for ${group}`)
    return readFileSync(p, 'utf8').trim()
  }

  test('fork bomb: stopped by the pids limit', async (t) => {
    const sbx = await victim(t)
    await sbx.commands.run(`bash -c ':(){ :|:& };:' >/dev/null 2>&1`, { background: true })
    await new Promise((r) => setTimeout(r, 3000))
    const current = Number(cgroupFile(sbx, 'pids', 'pids.current'))
    assert.ok(current > 500 && current <= 1024, `pids.current ${current}`)
    await assertServing()
    const started = performance.now()
    await sbx.kill()
    assert.ok(performance.now() - started < 10_000, 'killing the bomb took over 10 s')
    await assertServing()
  })

  test('memory hog: OOM-killed inside the sandbox only', async (t) => {
    const sbx = await victim(t)
    // Writes every page of 2 GiB, four times the sandbox's memory.
    const r = await sh(sbx, `python3 -c 'b = b"x" * (2 << 30); print(len(b))'`)
    assert.ok(r.exitCode === 137 || /killed/.test(r.error), `not OOM-killed: ${r.exitCode} ${r.error} ${r.out}`)
    assert.equal((await sbx.commands.run('echo survived')).stdout, 'survived\n', 'envd survives the OOM kill')
    await assertServing()
  })

  test('disk filler: EDQUOT inside, NotEnoughSpaceError from the files API', async (t) => {
    const sbx = await victim(t)
    const dd = await sh(sbx, `dd if=/dev/zero of=/home/user/fill bs=1M count=${DISK_LIMIT_MB * 2} 2>&1`)
    assert.ok(dd.out.includes('Disk quota exceeded'), dd.out)
    const layer = join(layersRoot(server), 'sandboxes', sbx.sandboxId, 'layer')
    const used = Number(spawnSync('du', ['-sB1', layer], { encoding: 'utf8' }).stdout.split('\t')[0])
    assert.ok(used > 0 && used <= (DISK_LIMIT_MB + 8) * 2 ** 20, `the store holds ${used} bytes for the sandbox`)
    await assert.rejects(sbx.files.write('/home/user/more', 'x'.repeat(8 << 20)), NotEnoughSpaceError)
    assert.equal(await sbx.files.exists('/home/user/more'), false, 'the partial upload is removed')
    await sh(sbx, 'rm -f /home/user/fill /home/user/more')
    await sbx.files.write('/home/user/after', 'room again')
    assert.equal(await sbx.files.read('/home/user/after'), 'room again')
    await sbx.kill()
    assert.equal(existsSync(layer), false, 'the layer outlived the sandbox')
    await assertServing()
  })

  test('the btrfs store: a sandbox cannot reach its image, its loop device or other subvolumes', async (t) => {
    const sbx = await victim(t)
    await bystander.files.write('/home/user/bystander-secret', 'of the bystander')
    // As root inside: no loop device, none to make; no mount; no btrfs ioctl through the
    // overlay (subvolume lookup, tree search, snapshot, subvolume creation); no store image
    // anywhere in its file system; nothing of the bystander's layer.
    await sbx.files.write('/tmp/probe.py', STORE_PROBE)
    const r = await sh(sbx, "python3 /tmp/probe.py; mount -t btrfs /dev/loop0 /mnt 2>/dev/null && echo mounted || echo mount=no; find / -xdev \\( -name cow.img -o -name bystander-secret \\) 2>/dev/null | head; echo done", { user: 'root' })
    assert.match(r.stdout, /loops=0 mknod-read=no/, r.out)
    assert.doesNotMatch(r.stdout, /=yes/, r.out)
    assert.match(r.stdout, /mount=no\ndone\n$/, `no store image or bystander file in reach: ${r.out}`)
    await assertServing()
  })

  test('disk limit: a server killed with SIGKILL leaves no mount or loop device', async () => {
    const other = await startServer({ extraArgs: ['--disk-limit-mb', '64'] })
    try {
      const sbx = await Sandbox.create(other.novita())
      other.sandboxIds.add(sbx.sandboxId)
      await sbx.files.write('/home/user/x', 'x')
      assert.equal(loopDevicesOf(other.dataDir).length, 1, 'the store image on its loop device')
      other.proc.kill('SIGKILL')
      await eventually(() => {
        assert.deepEqual(loopDevicesOf(other.dataDir), [])
        assert.deepEqual(guestProcessesOfServer(other.dataDir), [])
      })
      assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(other.dataDir))
    } finally {
      await other.stop()
    }
    // The next server on that data dir removes the layer the killed one left.
    const again = await startServer({ dataDir: other.dataDir, extraArgs: ['--disk-limit-mb', '64'] })
    assert.deepEqual(readdirSync(join(layersRoot(again), 'sandboxes')), [])
    await stopAndCheck(again)
  })

  test('process flood: capped by the pids limit', async (t) => {
    const sbx = await victim(t)
    const r = await sh(sbx, 'n=0; for i in $(seq 3000); do sleep 120 & n=$((n+1)); done 2>/dev/null; echo started; pgrep -c sleep')
    const count = Number(r.stdout.trim().split('\n').pop())
    assert.ok(count < 1024, `${count} sleeps running: ${r.out.slice(-300)}`)
    await assertServing()
  })

  test('open files flood: each process stops at its limit, the host does not run out', async (t) => {
    const sbx = await victim(t)
    const flood = `python3 - <<'EOF'
import os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
except (ValueError, OSError):
    pass
fds = []
try:
    while True:
        fds.append(os.open('/dev/null', os.O_RDONLY))
except OSError as e:
    print(len(fds), e.strerror)
EOF`
    const runs = await Promise.all([1, 2, 3, 4].map(() => sh(sbx, flood)))
    for (const r of runs) assert.ok(/Too many open files|Cannot allocate memory/.test(r.out), r.out)
    const [used, , max] = readFileSync('/proc/sys/fs/file-nr', 'utf8').trim().split(/\s+/).map(Number)
    assert.ok(used < max / 2, `host file-nr ${used} of ${max}`)
    await assertServing()
  })
})

describe('PID 1', () => {
  test('kill PID 1: kill -9 1 and kill -9 -1 from root inside', async (t) => {
    const sbx = await victim(t)
    await root(sbx, 'kill -9 1; kill -KILL 1; kill -STOP 1')
    assert.equal((await sbx.commands.run('echo still here')).stdout, 'still here\n')
    await sbx.commands.run('sleep 300', { background: true })
    await root(sbx, 'kill -9 -1') // every process but PID 1, itself included
    assert.equal((await sbx.commands.run('echo after kill -1')).stdout, 'after kill -1\n')
    assert.equal((await sh(sbx, 'pgrep -c sleep')).stdout.trim(), '0')
    await assertServing()
  })
})

describe('seccomp', () => {
  test('seccomp-denied syscalls: namespaces, mount, keyctl, bpf, perf, modules, device nodes', async (t) => {
    const sbx = await victim(t)
    for (const cmd of ['unshare -m true', 'unshare -U -r true', 'unshare -n true', 'mount -t tmpfs none /mnt', 'mknod /tmp/sda b 8 0']) {
      const r = await root(sbx, `${cmd} 2>&1; echo rc=$?`)
      assert.ok(/Operation not permitted|permission denied/i.test(r.out) && !r.out.includes('rc=0'), `${cmd}: ${r.out}`)
    }
    const calls = `python3 - <<'EOF'
import ctypes, os, platform
nr = {'x86_64': dict(keyctl=250, add_key=248, bpf=321, perf_event_open=298, init_module=175, setns=308, userfaultfd=323, io_uring_setup=425),
      'aarch64': dict(keyctl=219, add_key=217, bpf=280, perf_event_open=241, init_module=105, setns=268, userfaultfd=282, io_uring_setup=425)}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
for name, n in nr.items():
    r = libc.syscall(n, 0, 0, 0, 0, 0)
    print(name, r, os.strerror(ctypes.get_errno()))
EOF`
    for (const user of ['root', 'user']) {
      const r = await sh(sbx, calls, { user })
      const lines = r.stdout.trim().split('\n')
      assert.equal(lines.length, 8, r.out)
      for (const l of lines) assert.ok(l.endsWith('-1 Operation not permitted'), `${user}: ${l}`)
    }
    assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n')
    await assertServing()
  })
})

describe('deep trees', () => {
  // Far past PATH_MAX (4096), and past any walk that recurses on the stack: 20,000 levels already
  // overflowed envd's and the server's, and the next start on that data dir, every time.
  const DEEP = 30_000

  /** Makes `dir` and, below it, DEEP nested directories `d`, as `user`. */
  async function makeDeep(sbx, dir) {
    const r = await sh(sbx, `python3 -c "
import os, time
t = time.time()
os.makedirs('${dir}')
os.chdir('${dir}')
for _ in range(${DEEP}):
    os.mkdir('d')
    os.chdir('d')
print('made in %.2f s' % (time.time() - t))"`)
    assert.match(r.stdout, /^made in/, r.out)
  }

  /** How many nested directories `d` there are below `dir`. */
  async function depthOf(sbx, dir) {
    const r = await sh(sbx, `python3 -c "
import os
os.chdir('${dir}')
n = 0
while os.path.isdir('d'):
    os.chdir('d')
    n += 1
print(n)"`)
    return Number(r.stdout.trim())
  }

  /** What a failed run left in a data dir: rm copes with trees deeper than PATH_MAX, Node's rmSync does not. */
  function removeDeep(dir) {
    if (existsSync(dir) && !readFileSync('/proc/self/mountinfo', 'utf8').includes(dir)) spawnSync('rm', ['-rf', '--one-file-system', dir])
  }

  test('deep directory: files.remove, then kill, of a tree 30,000 levels deep that user made', async (t) => {
    const sbx = await victim(t)
    await makeDeep(sbx, '/home/user/deep')
    const started = performance.now()
    await sbx.files.remove('/home/user/deep')
    t.diagnostic(`files.remove of ${DEEP} levels: ${Math.round(performance.now() - started)} ms`)
    assert.equal(await sbx.files.exists('/home/user/deep'), false)
    assert.equal((await sbx.commands.run('echo envd lives')).stdout, 'envd lives\n')
    await makeDeep(sbx, '/home/user/deep')
    await sbx.kill()
    await assertServing()
    assert.deepEqual(readdirSync(join(layersRoot(server), 'sandboxes')).filter((n) => n.startsWith(sbx.sandboxId)), [])
  })

  test('deep directory on the copy store: metrics, snapshot and kill walk it on the host; a crash, then the starts after it', async (t) => {
    // On the copy store the layer is in the data dir's file system, and the host walks it.
    const copy = { extraArgs: ['--store', 'copy'] }
    const other = await startServer(copy)
    let third, again
    try {
      const create = async (s, template) => {
        const sbx = await Sandbox.create(...(template ? [template] : []), { ...s.novita(), timeoutMs: 120_000 })
        s.sandboxIds.add(sbx.sandboxId)
        return sbx
      }
      const sbx = await create(other)
      await makeDeep(sbx, '/home/user/deep')

      // Metrics measure all of it (as du does), through no symlink.
      const layer = `${other.dataDir}/sandboxes/${sbx.sandboxId}/layer/root`
      const du = Number(spawnSync('du', ['-sB1', layer], { encoding: 'utf8' }).stdout.split('\t')[0])
      const [m] = await Sandbox.getMetrics(sbx.sandboxId, other.novita())
      assert.ok(du > 0 && Math.abs(m.diskUsed - du) <= du / 10, `diskUsed ${m.diskUsed}, du ${du}`)

      // A snapshot copies all of it; a sandbox started from it has the whole tree.
      let started = performance.now()
      const snap = await sbx.createSnapshot()
      t.diagnostic(`snapshot of ${DEEP} levels: ${Math.round(performance.now() - started)} ms`)
      const copy = await create(other, snap.snapshotId)
      assert.equal(await depthOf(copy, '/home/user/deep'), DEEP)
      await copy.kill()
      assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, other.novita()), true)

      started = performance.now()
      await sbx.kill()
      t.diagnostic(`kill, removing ${DEEP} levels on the host: ${Math.round(performance.now() - started)} ms`)
      const fresh = await create(other)
      assert.equal((await fresh.commands.run('echo fresh')).stdout, 'fresh\n')
      await fresh.kill()
      assert.deepEqual(readdirSync(`${other.dataDir}/sandboxes`), [])
      await eventually(() => assert.deepEqual(readdirSync(`${other.dataDir}/layers`).filter((n) => !n.startsWith('.')), [], 'the layers'))

      // The server dies with the tree on disk (and its cgroups left behind).
      const doomed = await create(other)
      await makeDeep(doomed, '/home/user/deep')
      other.proc.kill('SIGKILL')
      await other.stop()
      await eventually(() => assert.deepEqual(guestProcessesOfServer(other.dataDir), []))
      const own = serverCgroupName(other.dataDir)
      const left = sandbankCgroups().filter((p) => p.includes(own))
      assert.notDeepEqual(left, [], 'a server killed with SIGKILL leaves its cgroups')
      // Its sandboxes' processes go with it (the next start leaves groups with processes alone).
      await eventually(() => assert.deepEqual(left.flatMap((g) => readFileSync(`${g}/cgroup.procs`, 'utf8').split('\n').filter(Boolean)), []))

      // Any server's start removes the cgroups of a server that is gone: a restart on its data dir may never come.
      third = await startServer(copy)
      assert.deepEqual(sandbankCgroups().filter((p) => p.includes(own)), [], 'the cgroups of the dead server remain')
      await stopAndCheck(third)
      third = undefined

      // The next start on its data dir removes the tree, and serves.
      started = performance.now()
      again = await startServer({ ...copy, dataDir: other.dataDir })
      t.diagnostic(`restart, removing ${DEEP} levels on the host: ${Math.round(performance.now() - started)} ms`)
      assert.deepEqual(readdirSync(`${other.dataDir}/sandboxes`), [])
      assert.equal(existsSync(`${other.dataDir}/quarantine`), false, 'nothing quarantined')
      const restarted = await create(again)
      assert.equal((await restarted.commands.run('echo restarted')).stdout, 'restarted\n')
      await restarted.kill()
      await stopAndCheck(again)
      again = undefined
    } finally {
      for (const s of [third, again, other]) if (s) await s.stop()
      for (const s of [third, other]) if (s) removeDeep(s.dataDir)
    }
  })
})

describe('host information through metrics', () => {
  // Issue 21, finding 5: the server measures a sandbox's disk use by walking its layer on the host.
  // Swapping a directory and a symlink to a host directory in a loop (renameat2 RENAME_EXCHANGE)
  // made a path-based walk step into the host directory and add its size.
  test('a directory/symlink swap race cannot make metrics count a host directory', async (t) => {
    const sbx = await victim(t)
    const hostDir = `/var/tmp/${marker('metrics')}`
    mkdirSync(hostDir, { mode: 0o700 })
    t.after(() => rmSync(hostDir, { recursive: true, force: true }))
    const BIG = 96 << 20
    writeFileSync(`${hostDir}/big`, Buffer.alloc(BIG, 1)) // written, so its blocks are allocated
    const racer = `
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
os.chdir('/home/user')
os.mkdir('d')
for i in range(20):
    os.mkdir(f'd/sub{i}')
os.symlink('${hostDir}', 'l')
end = time.time() + 8
n = 0
while time.time() < end:
    if libc.renameat2(-100, b'd', -100, b'l', 2) != 0:
        raise OSError(ctypes.get_errno(), 'renameat2')
    n += 1
print(n)
`
    await sbx.files.write('/home/user/racer.py', racer)
    const run = sbx.commands.run('python3 /home/user/racer.py', { timeoutMs: 60_000 })
    const seen = []
    const until = Date.now() + 7000
    while (Date.now() < until) {
      const [m] = await sbx.getMetrics()
      seen.push(m.diskUsed)
    }
    const swaps = Number((await run).stdout.trim())
    assert.ok(swaps > 1000, `the race ran (${swaps} swaps)`)
    const worst = Math.max(...seen)
    t.diagnostic(`${seen.length} metrics during ${swaps} swaps; largest diskUsed ${worst} bytes`)
    assert.ok(worst < BIG / 2, `metrics counted the host directory: diskUsed ${worst} (the host file is ${BIG} bytes)`)
  })
})

describe('host binary', () => {
  // Issue 21, finding 1: envd (PID 1) and what it forks before an exec are the `sandbank` binary.
  // Root inside replaces a program envd runs with a `#!/proc/self/exe` script and puts a library in
  // /etc/ld.so.preload: the kernel then starts that binary inside the sandbox with the library
  // loaded, and it changes the binary's mode and owner through /proc/self/exe (with
  // `--no-userns`, root inside holds CAP_FOWNER and CAP_CHOWN over the host's files).
  const evil = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static const char *result(int rc) { return rc == 0 ? "ok" : strerror(errno); }
__attribute__((constructor)) static void evil(void) {
  const char *out = getenv("SANDBANK_ATTACK_OUT");
  if (!out) return;
  FILE *f = fopen(out, "w");
  char exe[4096] = {0};
  readlink("/proc/self/exe", exe, sizeof exe - 1);
  int fd = open("/proc/self/exe", O_PATH);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  struct stat st;
  fprintf(f, "exe=%s\\nstat=%s\\n", exe, result(stat(path, &st)));
  // chown first: it would clear the setuid bit that chmod sets.
  fprintf(f, "chown=%s\\n", result(chown(path, st.st_uid, st.st_gid)));
  fprintf(f, "chmod=%s\\n", result(chmod(path, (st.st_mode & 07777) | 04000)));
  fprintf(f, "write=%s\\n", result(open(path, O_WRONLY) < 0 ? -1 : 0));
  fclose(f);
  _exit(0);
}
`

  async function attack(t, sbx, srv, rootIsHostRoot) {
    // The server says which mode it is in (sandbank's SDK reads it).
    assert.equal((await Sandbank.getInfo(sbx.sandboxId, srv.novita())).rootIsHostRoot, rootIsHostRoot ? true : undefined)
    const bin = sandbankBinary()
    const before = statSync(bin)
    // On a binary without the fix the attack succeeds: put the mode back whatever happens.
    t.after(() => chmodSync(bin, before.mode & 0o7777))
    // Built on the host (the base image has no compiler; its glibc is the host's Debian's).
    const work = mkdtempSync(join(tmpdir(), 'sandbank-evil-'))
    t.after(() => rmSync(work, { recursive: true, force: true }))
    writeFileSync(join(work, 'evil.c'), evil)
    const cc = spawnSync('gcc', ['-shared', '-fPIC', '-o', join(work, 'evil.so'), join(work, 'evil.c')], { encoding: 'utf8' })
    assert.equal(cc.status, 0, cc.stderr)
    await sbx.files.write('/tmp/evil.so', readFileSync(join(work, 'evil.so')))
    const build = await root(sbx, 'chmod 755 /tmp/evil.so && printf "#!/proc/self/exe\\n" > /tmp/trigger && chmod 755 /tmp/trigger && echo /tmp/evil.so > /etc/ld.so.preload')
    assert.equal(build.exitCode, 0, build.out)
    // envd execs the script itself (the SDKs' commands go through bash, which would be the one
    // resolving /proc/self/exe).
    const body = JSON.stringify({ process: { cmd: '/tmp/trigger', args: [], envs: { SANDBANK_ATTACK_OUT: '/tmp/evil.out' } } })
    const frame = Buffer.alloc(5)
    frame.writeUInt32BE(Buffer.byteLength(body), 1)
    const headers = {
      authorization: `Basic ${Buffer.from('root:').toString('base64')}`,
      'content-type': 'application/connect+json',
      'connect-protocol-version': '1',
    }
    const res = await envd(sbx, '/process.Process/Start', { method: 'POST', headers, body: Buffer.concat([frame, Buffer.from(body)]) }, srv)
    await res.arrayBuffer() // to the process's end
    const report = await sbx.files.read('/tmp/evil.out')
    t.diagnostic(report.replaceAll('\n', '; '))
    assert.match(report, /^stat=ok$/m, 'the library ran in the process started through /proc/self/exe')
    // envd runs from the sandbox's own /usr/bin/envd: a change lands in the sandbox's layer.
    assert.match(report, /^exe=\/usr\/bin\/envd$/m)
    assert.doesNotMatch(report, /^write=ok$/m)
    const after = statSync(bin)
    assert.deepEqual([after.mode.toString(8), after.uid, after.gid], [before.mode.toString(8), before.uid, before.gid], `the host's ${bin} was changed`)
    // Nor the copy every sandbox runs (the envd layer of the data directory).
    const layers = readdirSync(join(srv.dataDir, 'envd')).filter((n) => !n.startsWith('.'))
    assert.equal(layers.length, 1, layers.join(', '))
    const copy = statSync(join(srv.dataDir, 'envd', layers[0], 'bin/envd'))
    assert.deepEqual([copy.mode.toString(8), copy.uid, copy.gid], ['100755', 0, 0], "the data directory's envd was changed")
    return report
  }

  test('host binary: a #!/proc/self/exe program with a preloaded library cannot change it (no user namespace)', async (t) => {
    const plain = await startServer({ extraArgs: ['--no-userns'] })
    t.after(() => stopAndCheck(plain))
    const sbx = await Sandbox.create({ ...plain.novita(), timeoutMs: 120_000 })
    t.after(() => sbx.kill().catch(() => {}))
    await attack(t, sbx, plain, true)
  })

  test('host binary: the same attack in a user namespace', async (t) => {
    await attack(t, await victim(t), server, false)
  })
})

describe('kernel budgets', () => {
  // Issue 21, finding 3: the kernel charges per-user budgets (inotify instances and watches,
  // pending signals, …) up the user-namespace chain to each namespace's owner. Every sandbox's
  // namespace was owned by host root, so `user` in one sandbox holding 128 inotify instances made
  // host root's inotify_init1 fail with EMFILE, and watchDir in every other sandbox.
  const INOTIFY = 'import ctypes; libc = ctypes.CDLL(None, use_errno=True)'
  test('inotify: a sandbox that takes every instance it may have leaves the host and other sandboxes theirs', async (t) => {
    const hog = await victim(t)
    const other = await victim(t)
    await hog.files.write('/home/user/hog.py', `${INOTIFY}
import os, time
fds = []
while True:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    fds.append(fd)
print(len(fds), os.strerror(ctypes.get_errno()), flush=True)
time.sleep(120)
`)
    let said = ''
    const holding = await hog.commands.run('python3 /home/user/hog.py', { background: true, onStdout: (d) => { said += d } })
    t.after(() => holding.kill().catch(() => {}))
    await eventually(() => assert.match(said, /^\d+ Too many open files\n/))
    t.diagnostic(`the hog holds ${said.trim()}`)
    const held = Number(said.split(' ')[0])
    assert.ok(held >= 100, `the sandbox had its own budget (${held} instances)`)

    const host = spawnSync('python3', ['-c', `${INOTIFY}\nimport os\nfd = libc.inotify_init1(0)\nprint('ok' if fd >= 0 else os.strerror(ctypes.get_errno()))`], { encoding: 'utf8' })
    assert.equal(host.stdout.trim(), 'ok', `host root's inotify_init1: ${host.stdout}${host.stderr}`)
    const watcher = await other.files.watchDir('/home/user', () => {})
    await watcher.stop()
    const inside = await sh(other, `python3 -c "${INOTIFY}; import os; print('ok' if libc.inotify_init1(0) >= 0 else os.strerror(ctypes.get_errno()))"`)
    assert.equal(inside.stdout.trim(), 'ok', inside.out)

    // Because each sandbox's user namespace has an owner of its own, neither host root nor the
    // other sandbox's (ioctl NS_GET_OWNER_UID on a process of each, from the host).
    const owners = []
    for (const sbx of [hog, other]) owners.push(await userNamespaceOwner(sbx))
    t.diagnostic(`owners of the two sandboxes' user namespaces: ${owners.join(', ')}`)
    assert.ok(owners.every((o) => o >= 2_000_000_000), `owned by unprivileged host ids: ${owners}`)
    assert.notEqual(owners[0], owners[1])
  })
})
