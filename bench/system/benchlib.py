"""What the bench/system scripts share: running a command, and ending what they started (every
process group, then the namespaces of the test network they made with tests/e2e/topology.sh)."""
import os, signal, subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sh(cmd, check=True, timeout=600):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd}: {r.stdout} {r.stderr}")
    return r


def end_all(procs, prefix):
    """SIGKILL every started process group, then remove the namespaces named PREFIX*."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    sh(f"bash {ROOT}/tests/e2e/topology.sh down {prefix}", check=False)
