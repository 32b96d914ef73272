"""The browser tests' network namespace really isolates: only `lo` inside, the host's loopback is not
reachable from it, and deleting it ends everything still running inside."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.support.netns import LoopbackNamespace


def _inside(ns: LoopbackNamespace, code: str) -> str:
    return subprocess.run([*ns.prefix, sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()


def test_only_loopback_inside_and_the_host_is_out_of_reach() -> None:
    ns = LoopbackNamespace()
    ns.create()
    with socket.socket() as listener:  # on the host's loopback
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        try:
            assert _inside(ns, "import socket; print([n for _, n in socket.if_nameindex()])") == "['lo']"
            reached = _inside(ns, f"import socket; print(socket.socket().connect_ex(('127.0.0.1', {port})))")
            assert reached != "0"  # the namespace's 127.0.0.1 is its own
            # Started behind the harness's back, as a grandchild (a node's store, a browser) would be.
            stray = subprocess.Popen([*ns.prefix, sys.executable, "-c", "import time; print('up', flush=True); "
                                      "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
            assert stray.stdout is not None and stray.stdout.readline() == "up\n"  # running inside
        finally:
            ns.delete()
    assert stray.wait(10) != 0  # killed with the namespace
    stray.stdout.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert ns.name not in listed
