"""Helpers the bench scripts share: free loopback ports and waiting for a listener."""
import socket
import time


def free_port():
    """A port on 127.0.0.1 that was free a moment ago (bound to 0, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30):
    """Returns once something accepts connections on 127.0.0.1:port; exits the bench after `timeout`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def append_results(section, intro, text, path="bench/RESULTS.md"):
    """Adds a dated block of figures to `section` of bench/RESULTS.md (newest first, right after the
    section's introduction), creating the section with `intro` at the end of the file if it is new."""
    results = open(path).read()
    heading = f"## {section}"
    if heading not in results:
        results = results.rstrip("\n") + f"\n\n{heading}\n\n{intro}\n"
    start = results.index(heading)
    following = results.find("\n## ", start + len(heading))
    end = len(results) if following < 0 else following + 1
    first_block = results.find("\n### ", start, end)
    at = end if first_block < 0 else first_block + 1
    block = text.strip("\n") + "\n\n"
    if at == len(results) and not results.endswith("\n\n"):
        block = "\n" + block
    open(path, "w").write(results[:at] + block + results[at:])
