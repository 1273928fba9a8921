"""Fresh-process runs without paying the imports each time: a server process imports torch, transformers and the
toolkit once, then forks one child per request (a child is a new process: its own pid, killable with SIGKILL, its
exit status real), so a test that kills and resumes runs skips the imports each process paid (11.5 s measured on
the 2-core development machine for `nlptransfer.pipeline` and the CLI).

    server = ForkServer(env, folder)                       # one per test module (conftest's `server` fixture)
    done = server.run(script, argv, tmp_path, "killed")    # like subprocess.run(capture_output=True, text=True)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SERVER = textwrap.dedent('''
    import json, os, runpy, signal, sys, traceback
    import torch, transformers, accelerate  # the imports every child shares; no Python thread starts and no torch op
    # runs in the server (its native threads after import: torch's and jemalloc's, idle)
    import nlptransfer.pipeline, nlptransfer.cli.run  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.chdir(request["cwd"])
                signal.alarm(request["timeout"])
                if request["threads"]:
                    torch.set_num_threads(request["threads"])  # OMP_NUM_THREADS is read once, at the import
                sys.argv = [request["script"], *request["argv"]]
                try:
                    runpy.run_path(request["script"], run_name="__main__")
                    code = 0
                except SystemExit as stop:
                    code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
                    if not isinstance(stop.code, (int, type(None))):
                        print(stop.code, file=sys.stderr)
                except BaseException:
                    traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
''')


class ForkServer:
    """A long-lived importer that runs scripts in forked children (see the module's docstring)."""

    def __init__(self, env: dict[str, str], folder: Path):
        server = folder / "forkserver.py"
        server.write_text(SERVER)
        self.process = subprocess.Popen([sys.executable, str(server)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)

    def run(self, script: Path, argv: list[str], folder: Path, name: str, timeout: int = 300,
            threads: int | None = None):
        """Run `script argv` in a forked child (with `threads` torch threads, else the default); its stdout and stderr
        are kept in `folder` under `name`."""
        out, err = folder / f"{name}.stdout", folder / f"{name}.stderr"
        request = {"script": str(script), "argv": [str(a) for a in argv], "stdout": str(out), "stderr": str(err),
                   "cwd": os.getcwd(), "timeout": timeout,
                   "threads": threads}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline() or '{"error": "the fork server died"}')
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return subprocess.CompletedProcess([script, *argv], reply["returncode"], out.read_text(), err.read_text())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)
