"""The code interpreter of the `code-interpreter-v1` template: on port 49999, the HTTP API the
official interpreter SDKs (@e2b/code-interpreter, novita-sandbox/code-interpreter) call, backed
by Jupyter kernels (one per context, started with jupyter_client).

Routes:
  GET  /health                  200 once the default context's kernel answers
  POST /execute                 {code, context_id?, language?, env_vars?} -> NDJSON lines, streamed:
                                stdout/stderr {text, timestamp}, result {<formats>, is_main_result},
                                error {name, value, traceback}, number_of_executions
                                {execution_count}, then end_of_execution (or
                                unexpected_end_of_execution when the kernel died)
  POST /contexts                {language?, cwd?} -> {id, language, cwd}
  GET  /contexts                [{id, language, cwd}]
  POST /contexts/{id}/restart   a fresh kernel, same id
  DELETE /contexts/{id}

Languages: Python (ipykernel, with `display.py` loaded for the SDKs' `data` and `chart`),
JavaScript and TypeScript (Deno's kernel), Bash (bash_kernel); another is a 400 that names it.
Standard library plus jupyter_client only, so it runs on the image's python3.
"""

import json
import os
import queue
import re
import select
import shlex
import site
import socket
import sys
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jupyter_client import KernelManager

PORT = int(os.environ.get("SANDBANK_INTERPRETER_PORT", "49999"))
DEFAULT_CWD = os.environ.get("SANDBANK_INTERPRETER_CWD", "/home/user")
# The names a request may give a language by (the SDKs send "python", "js", "ts", "bash" or
# nothing) -> the context's language and the kernel that runs it.
LANGUAGES = {
    **{n: ("python", "python3") for n in ("python", "python3", "py", "ipython")},
    **{n: ("javascript", "deno") for n in ("javascript", "js", "deno")},
    **{n: ("typescript", "deno") for n in ("typescript", "ts")},
    **{n: ("bash", "bash") for n in ("bash", "sh", "shell")},
}
# Loaded into every Python kernel: the `sandbank/data` and `sandbank/chart` display formats.
DISPLAY_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "display.py")
# Where kernels' connection files and ipc sockets live: unix sockets rather than TCP where the
# kernel speaks them, as a memory snapshot (CRIU) restores those most simply.
RUNTIME_DIR = os.environ.get("SANDBANK_INTERPRETER_RUNTIME", "/tmp/sandbank-interpreter")

# Jupyter MIME types -> the keys of the SDKs' Result; other types are passed under their MIME
# name (the SDKs put unknown keys in Result.extra).
FORMATS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
    "sandbank/data": "data",
    "sandbank/chart": "chart",
}


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class BadRequest(Exception):
    pass


class NotFound(Exception):
    pass


def now():
    return datetime.now(timezone.utc).isoformat()


class Context:
    """One kernel and the lock that runs its executions one at a time."""

    def __init__(self, language, kernel, cwd):
        self.id = str(uuid.uuid4())
        self.language = language
        self.kernel = kernel
        self.cwd = cwd
        self.lock = threading.Lock()
        self.km = None
        self.kc = None
        self.start()

    def start(self):
        os.makedirs(RUNTIME_DIR, exist_ok=True)
        # Deno's kernel speaks TCP only (loopback; CRIU keeps established TCP connections too).
        ipc = self.kernel != "deno"
        km = KernelManager(
            kernel_name=self.kernel,
            transport="ipc" if ipc else "tcp",
            ip=os.path.join(RUNTIME_DIR, self.id) if ipc else "127.0.0.1",
            connection_file=os.path.join(RUNTIME_DIR, self.id + ".json"),
        )
        # The inline backend: figures come back as image/png display data.
        env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline")
        km.start_kernel(cwd=self.cwd, env=env)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        self.km, self.kc = km, kc
        if self.language == "python":
            self.run_silently(
                "import importlib.util as __sb_u\n"
                f"__sb_s = __sb_u.spec_from_file_location('sandbank_display', {DISPLAY_PY!r})\n"
                "__sb_m = __sb_u.module_from_spec(__sb_s)\n"
                "__sb_s.loader.exec_module(__sb_m)\n"
                "__sb_m.register(get_ipython())\n"
                "del __sb_u, __sb_s, __sb_m\n"
            )

    def stop(self):
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None:
            self.km.shutdown_kernel(now=True)
        self.km = self.kc = None

    def restart(self):
        with self.lock:
            self.stop()
            self.start()

    def info(self):
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    def run_silently(self, code):
        """Runs setup code (no output, no history) and waits for it."""
        msg_id = self.kc.execute(code, silent=True, store_history=False)
        self.wait_idle(msg_id, lambda _m: None)

    def wait_idle(self, msg_id, emit, gone=lambda: False):
        """Passes `msg_id`'s iopub messages to `emit` until the kernel is idle after it; False
        if the kernel died first. When `gone()` says the client left (its timeout), the code is
        interrupted, so that the context is free again for the next execution."""
        interrupted = False
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                if not self.km.is_alive():
                    return False
                if not interrupted and gone():
                    self.km.interrupt_kernel()
                    interrupted, emit = True, (lambda _m: None)
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                return True
            emit(msg)

    def execute(self, code, env_vars, send, gone):
        """Runs `code`, sending the SDKs' NDJSON messages through `send` as they come."""
        with self.lock:
            if env_vars:
                # Set for this execution only, then put back as they were.
                self.run_silently(set_env_code(self.language, env_vars))
            msg_id, finished = None, False
            try:
                msg_id = self.kc.execute(code, store_history=True, allow_stdin=False)
                count = [None]

                def emit(msg):
                    kind, content = msg["msg_type"], msg["content"]
                    if kind == "stream":
                        stream = "stderr" if content.get("name") == "stderr" else "stdout"
                        send({"type": stream, "text": content.get("text", ""), "timestamp": now()})
                    elif kind in ("execute_result", "display_data"):
                        send(result(content.get("data", {}), kind == "execute_result"))
                    elif kind == "error":
                        send({
                            "type": "error",
                            "name": content.get("ename", ""),
                            "value": content.get("evalue", ""),
                            "traceback": "\n".join(content.get("traceback", [])),
                        })
                    elif kind == "execute_input":
                        count[0] = content.get("execution_count")

                finished = self.wait_idle(msg_id, emit, gone)
                if not finished:
                    send({"type": "unexpected_end_of_execution"})
                    return
                if count[0] is not None:
                    send({"type": "number_of_executions", "execution_count": count[0]})
                send({"type": "end_of_execution"})
            except (BrokenPipeError, ConnectionResetError):
                # The client went away (its timeout) while the code ran: stop the code rather
                # than let it hold the context.
                if msg_id is not None and not finished:
                    self.km.interrupt_kernel()
                    self.wait_idle(msg_id, lambda _m: None)
                raise
            finally:
                if env_vars and self.km is not None and self.km.is_alive():
                    self.run_silently(restore_env_code(self.language, env_vars))


def set_env_code(language, env_vars):
    """Code, in the context's language, that sets `env_vars` and keeps what they replace."""
    if language == "python":
        return (
            "import os as __sb_os\n"
            f"__sb_saved_env = {{k: __sb_os.environ.get(k) for k in {list(env_vars)!r}}}\n"
            f"__sb_os.environ.update({dict(env_vars)!r})\n"
        )
    if language in ("javascript", "typescript"):
        return (
            f"globalThis.__sbSavedEnv = Object.fromEntries({json.dumps(list(env_vars))}"
            ".map((k) => [k, Deno.env.get(k)]));\n"
            f"for (const [k, v] of Object.entries({json.dumps(env_vars)})) Deno.env.set(k, v);\n"
        )
    lines = []
    for k, v in env_vars.items():
        lines.append(
            f'if [ -n "${{{k}+x}}" ]; then __sb_had_{k}=1; __sb_old_{k}="${k}"; else __sb_had_{k}=0; fi; '
            f"export {k}={shlex.quote(v)}"
        )
    return "\n".join(lines)


def restore_env_code(language, env_vars):
    """Code that puts back what `set_env_code` replaced."""
    if language == "python":
        return (
            "for __sb_k, __sb_v in __sb_saved_env.items():\n"
            "    if __sb_v is None: __sb_os.environ.pop(__sb_k, None)\n"
            "    else: __sb_os.environ[__sb_k] = __sb_v\n"
            "del __sb_saved_env\n"
        )
    if language in ("javascript", "typescript"):
        return (
            "for (const [k, v] of Object.entries(globalThis.__sbSavedEnv)) "
            "v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);\n"
            "delete globalThis.__sbSavedEnv;\n"
        )
    return "\n".join(
        f'if [ "$__sb_had_{k}" = 1 ]; then export {k}="$__sb_old_{k}"; else unset {k}; fi; '
        f"unset __sb_had_{k} __sb_old_{k}"
        for k in env_vars
    )


def client_gone(sock):
    """Whether the client closed its connection (a read would see its end)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def result(data, is_main):
    out = {"type": "result", "is_main_result": is_main}
    for mime, value in data.items():
        key = FORMATS.get(mime, mime)
        if key == "json" and not isinstance(value, str):
            # The SDKs type `json` as a string of JSON.
            value = json.dumps(value)
        out[key] = value
    return out


class Contexts:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_id = {}
        # The context an execution without one runs in, per language.
        self.defaults = {}

    def language(self, language):
        """The context's language and kernel for the name a request gave."""
        name = (language or "python").strip().lower()
        if name not in LANGUAGES:
            raise BadRequest(
                f"language {language!r} is not supported by this interpreter: use python, "
                "javascript (js), typescript (ts) or bash"
            )
        return LANGUAGES[name]

    def create(self, language=None, cwd=None):
        language, kernel = self.language(language)
        cwd = cwd or DEFAULT_CWD
        if not os.path.isdir(cwd):
            raise BadRequest(f"cwd {cwd!r} is not a directory in the sandbox")
        ctx = Context(language, kernel, cwd)
        with self.lock:
            self.by_id[ctx.id] = ctx
        return ctx

    def get(self, context_id):
        with self.lock:
            ctx = self.by_id.get(context_id)
        if ctx is None:
            raise NotFound(f"context {context_id!r} not found")
        return ctx

    def remove(self, context_id):
        with self.lock:
            ctx = self.by_id.pop(context_id, None)
            if ctx is not None and self.defaults.get(ctx.language) is ctx:
                del self.defaults[ctx.language]
        if ctx is None:
            raise NotFound(f"context {context_id!r} not found")
        ctx.stop()

    def list(self):
        with self.lock:
            return [c.info() for c in self.by_id.values()]

    def for_execution(self, context_id, language):
        if context_id:
            return self.get(context_id)
        name = self.language(language)[0]
        # One default per language, made by the first execution that needs it.
        with self.lock:
            ctx = self.defaults.get(name)
        if ctx is None:
            ctx = self.create(name)
            with self.lock:
                ctx = self.defaults.setdefault(name, ctx)
        return ctx


CONTEXTS = Contexts()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbank-interpreter"
    # An execution streams small lines: without TCP_NODELAY each waits for the client's delayed
    # ACK (40 ms).
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.command, fmt % args))

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as e:
            raise BadRequest(f"the body is not JSON: {e}")
        if not isinstance(value, dict):
            raise BadRequest("the body must be a JSON object")
        return value

    def reply(self, status, value=None):
        raw = b"" if value is None else json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def path_parts(self):
        return [p for p in self.path.split("?", 1)[0].split("/") if p]

    def handle_errors(self, f):
        try:
            f()
        except BadRequest as e:
            self.reply(400, {"error": str(e)})
        except NotFound as e:
            self.reply(404, {"error": str(e)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - any failure is the client's 500, and logged
            sys.stderr.write(f"{self.command} {self.path}: {e!r}\n")
            try:
                self.reply(500, {"error": f"{type(e).__name__}: {e}"})
            except OSError:
                self.close_connection = True

    def do_GET(self):
        def go():
            parts = self.path_parts()
            if parts == ["health"]:
                self.reply(200, {"status": "ok"})
            elif parts == ["contexts"]:
                self.reply(200, CONTEXTS.list())
            else:
                raise NotFound(f"no route GET {self.path}")

        self.handle_errors(go)

    def do_POST(self):
        def go():
            parts = self.path_parts()
            body = self.body()
            if parts == ["execute"]:
                self.execute(body)
            elif parts == ["contexts"]:
                ctx = CONTEXTS.create(body.get("language"), body.get("cwd"))
                self.reply(200, ctx.info())
            elif len(parts) == 3 and parts[0] == "contexts" and parts[2] == "restart":
                CONTEXTS.get(parts[1]).restart()
                self.reply(204)
            else:
                raise NotFound(f"no route POST {self.path}")

        self.handle_errors(go)

    def do_DELETE(self):
        def go():
            parts = self.path_parts()
            if len(parts) == 2 and parts[0] == "contexts":
                CONTEXTS.remove(parts[1])
                self.reply(204)
            else:
                raise NotFound(f"no route DELETE {self.path}")

        self.handle_errors(go)

    def execute(self, body):
        code = body.get("code")
        if not isinstance(code, str):
            raise BadRequest(f"code must be a string, got {code!r}")
        env_vars = body.get("env_vars") or {}
        if not isinstance(env_vars, dict) or not all(isinstance(v, str) for v in env_vars.values()):
            raise BadRequest(f"env_vars must be an object of strings, got {env_vars!r}")
        for key in env_vars:
            if not ENV_NAME.fullmatch(key):
                raise BadRequest(f"env_vars: {key!r} is not an environment variable name")
        context_id, language = body.get("context_id"), body.get("language")
        if context_id and language:
            raise BadRequest("give context_id or language, not both")
        ctx = CONTEXTS.for_execution(context_id, language)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(msg):
            line = json.dumps(msg).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()

        ctx.execute(code, env_vars, send, lambda: client_gone(self.connection))
        self.wfile.write(b"0\r\n\r\n")


def main():
    # Python puts the user's site-packages on sys.path only if it exists when it starts: made
    # now, so that `%pip install x` in a cell (a user install) can be imported right away.
    try:
        os.makedirs(site.getusersitepackages(), exist_ok=True)
    except OSError as e:
        sys.stderr.write(f"user site-packages: {e}\n")
    # The default context starts before the port opens, so /health passing means the first
    # execution finds a kernel ready (and a template snapshot has it running).
    CONTEXTS.for_execution(None, None)
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    sys.stderr.write(f"interpreter listening on :{PORT}\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
