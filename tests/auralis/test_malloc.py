"""auralis.malloc.favour_speed: a process started with Dask's small malloc thresholds reuses freed
memory again instead of faulting every large temporary in afresh (the cluster's tasks call it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHILD = """
import resource, sys
from auralis.malloc import favour_speed

def faults_per_cycle():
    blocks = [bytearray(1 << 20) for _ in range(4)]  # warm: the first ones are faulted in anyway
    del blocks
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        block = bytearray(1 << 20)  # 1 MiB, zero-filled: every page is touched
        del block
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50

untuned = faults_per_cycle()
assert favour_speed()
tuned = faults_per_cycle()
print(untuned, tuned)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_favour_speed_stops_the_page_faults_of_dasks_small_thresholds() -> None:
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")  # what Dask's nanny gives its workers
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    untuned, tuned = (float(v) for v in out.stdout.split())
    assert untuned > 200  # the control: a 1 MiB block is 256 pages, each faulted in again per allocation
    assert tuned < 5, f"{tuned} page faults per 1 MiB allocation after favour_speed"


TRIM_CHILD = """
import resource
from auralis.malloc import free_heap_bytes, release_free_memory

pins = []

def freed(mib):
    blocks = []
    for _ in range(mib * 16):
        blocks.append(bytearray(64 << 10))  # heap blocks (below the mmap threshold)
        pins.append(bytearray(4096))  # between them (malloc, not pymalloc): the freed blocks stay holes
    del blocks

freed(4)
small = free_heap_bytes()
kept = release_free_memory(8 << 20)  # 4 MiB free: kept for the next job
after_kept = free_heap_bytes()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()

freed(40)
before = rss()
given = release_free_memory(8 << 20)  # 40 MiB free: given back
print(small, kept, after_kept, given, before - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_job_that_leaves_a_few_mib_free_keeps_them_and_a_large_one_gives_them_back() -> None:
    out = subprocess.run([sys.executable, "-c", TRIM_CHILD], capture_output=True, text=True, check=True)
    small, kept, after_kept, given, returned = out.stdout.split()
    if small == "None":
        pytest.skip("no mallinfo2 (glibc < 2.33): every job trims")
    assert 3 << 20 < int(small) < 8 << 20 and kept == "False" and int(after_kept) == int(small)
    assert given == "True" and int(returned) > 32 << 20  # the control: a trim does give the pages back
