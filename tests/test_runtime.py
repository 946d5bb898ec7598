"""koin_hf.runtime: the allocator and thread-wait set-up, observed in real processes.

What the allocator setting changes is countable without a clock: freeing and reallocating a
large block costs fresh page faults when glibc hands it back to the kernel, and none when the
heap keeps it. Each check runs in a fresh interpreter, as a user's process would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from koin_hf import runtime

pytestmark = pytest.mark.skipif(
    runtime._glibc() is None, reason="the allocator setting is glibc's (Linux)"
)

# numpy asks for transparent huge pages on large arrays, which would count 2 MB per fault;
# PR_SET_THP_DISABLE (inherited by children) makes every fault one 4 KB page, as torch's are.
NO_HUGE_PAGES = "import ctypes; ctypes.CDLL('libc.so.6').prctl(41, 1, 0, 0, 0)\n"
# Allocate, touch and free a 64 MB block 20 times; print the minor page faults that cost.
COUNT_FAULTS = """
import resource
import numpy as np
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = np.ones(8 * 2**20)  # 64 MB of float64, written
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(code: str, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "OMP_WAIT_POLICY")}
    result = subprocess.run(
        [sys.executable, "-c", NO_HUGE_PAGES + textwrap.dedent(code)],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout.strip()


def _faults(prelude: str, env: dict[str, str] | None = None) -> int:
    return int(_run(prelude + COUNT_FAULTS, env).splitlines()[-1])


CONFIGURE = "import koin_hf.runtime as r; r.configure_process()\n"
ONE_BLOCK_OF_PAGES = 64 * 2**20 // 4096


def test_large_blocks_stay_in_the_heap_after_configure_process():
    default = _faults("")
    configured = _faults(CONFIGURE)
    # Default glibc maps and unmaps the block every time: ~20 blocks' worth of faults.
    assert default > 10 * ONE_BLOCK_OF_PAGES
    # Kept in the heap: the pages are faulted in once, then reused.
    assert configured < 2 * ONE_BLOCK_OF_PAGES


def test_child_processes_inherit_the_setting():
    child = f"import subprocess, sys; print(subprocess.run([sys.executable, '-c', {COUNT_FAULTS!r}], capture_output=True, text=True).stdout)"
    assert int(_run(CONFIGURE + child).split()[-1]) < 2 * ONE_BLOCK_OF_PAGES


WORKER_SCRIPT = """
import multiprocessing, sys
import koin_hf.runtime as r

def faults(_):
    import resource, numpy as np
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        block = np.ones(8 * 2**20)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

if __name__ == "__main__":
    r.configure_process()
    with multiprocessing.get_context(sys.argv[1]).Pool(1) as pool:
        print(pool.map(faults, [0])[0])
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_worker_processes_keep_large_blocks(tmp_path, start_method):
    """DataLoader workers: forked ones inherit the heap, spawned ones the environment."""
    script = tmp_path / "workers.py"  # spawn re-imports the main module from its file
    script.write_text(NO_HUGE_PAGES + WORKER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    printed = subprocess.run(
        [sys.executable, str(script), start_method],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert int(printed.split()[-1]) < 2 * ONE_BLOCK_OF_PAGES


def test_switched_off_changes_nothing():
    env = {"KOIN_HF_RUNTIME": "off"}
    assert _faults(CONFIGURE, env) > 10 * ONE_BLOCK_OF_PAGES
    printed = _run(CONFIGURE + "import os; print(os.environ.get('OMP_WAIT_POLICY'))", env)
    assert printed == "None"


def test_sets_passive_waits_and_keeps_what_the_user_chose():
    show = "import os, json; print(json.dumps({k: os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'GLIBC_TUNABLES')}))"
    ours = json.loads(_run(CONFIGURE + show))
    assert ours["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "glibc.malloc.mmap_threshold=2147483647" in ours["GLIBC_TUNABLES"]
    mine = "glibc.malloc.mmap_threshold=1048576"
    theirs = json.loads(
        _run(CONFIGURE + show, {"OMP_WAIT_POLICY": "ACTIVE", "GLIBC_TUNABLES": mine})
    )
    assert theirs == {"OMP_WAIT_POLICY": "ACTIVE", "GLIBC_TUNABLES": mine}
    # The user's own threshold also wins inside the process: the default behaviour remains.
    assert _faults(CONFIGURE, {"GLIBC_TUNABLES": mine}) > 10 * ONE_BLOCK_OF_PAGES


def test_other_tunables_are_kept():
    show = "import os; print(os.environ['GLIBC_TUNABLES'])"
    printed = _run(CONFIGURE + show, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert printed.startswith("glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=")


@pytest.mark.parametrize(
    "entry", [["train.py", "--help"], ["-m", "koin_hf.cli", "train", "no-such-preset.yaml"]]
)
def test_entry_points_configure_before_torch_loads(entry):
    """train.py and the koin command set OMP_WAIT_POLICY before torch reads it at import."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    probe = textwrap.dedent(
        """
        import os, sys, runpy
        import builtins
        real_import = builtins.__import__
        seen = {}
        def watching(name, *args, **kwargs):
            if name == "torch" and "policy" not in seen:
                seen["policy"] = os.environ.get("OMP_WAIT_POLICY")
                print("torch imported with OMP_WAIT_POLICY=%s" % seen["policy"], file=sys.stderr)
            return real_import(name, *args, **kwargs)
        builtins.__import__ = watching
        sys.argv = sys.argv[1:]
        if sys.argv[0] == "-m":
            sys.argv = sys.argv[1:]
            runpy.run_module(sys.argv[0], run_name="__main__")
        else:
            runpy.run_path(sys.argv[0], run_name="__main__")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run(
        [sys.executable, "-c", probe, *entry], cwd=repo, env=env, capture_output=True, text=True
    )
    assert "torch imported with OMP_WAIT_POLICY=PASSIVE" in result.stderr, result.stderr[-2000:]


def test_release_free_memory_hands_kept_blocks_back():
    code = """
    import koin_hf.runtime as r
    r.configure_process()
    import numpy as np
    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    before = rss_mb()
    blocks = [np.ones(8 * 2**20) for _ in range(4)]  # 256 MB, kept in the heap once freed
    del blocks
    kept = rss_mb() - before
    released = r.release_free_memory()
    print(kept, rss_mb() - before, released)
    """
    kept, after, released = _run(code).split()
    assert int(kept) > 200 and released == "True"
    assert int(after) < 50


def test_release_free_memory_does_nothing_when_switched_off():
    printed = _run(
        "import koin_hf.runtime as r; print(r.release_free_memory())", {"KOIN_HF_RUNTIME": "off"}
    )
    assert printed == "False"
