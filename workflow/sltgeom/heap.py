"""Keep a long CPU job's heap from growing: glibc's thread cache and torch's aligned tensors.

torch allocates every CPU tensor with ``posix_memalign`` (64-byte alignment). glibc before 2.39
(bug 30723, "Enable merging of remainders in memalign") frees the remainders that alignment cuts
off such a chunk into its per-thread cache (tcache), where they count as in use: the chunk a
tensor leaves when freed cannot merge with its neighbours, is then too small for the next
aligned request of the same size, and the heap grows while the memory in use does not. An LLC
sampler allocates tens of megabyte-sized tensors per step, for tens of thousands of steps: on
the 10⁵-parameter deep linear network (4 chains, glibc 2.36) the heap grew to 2.7 GB within
11 500 steps and to 7.5 GB within 5 minutes in another run (in use: 0.2 GB), and two of four
runs were killed for memory.

Without the tcache (the tunable ``glibc.malloc.tcache_count=0``) the remainders go to the
allocator's own bins and merge: the heap stays at its size after the first steps
(``tests/benchmarks/bench_llc_memory.py``: heap and peak memory, and the step time, side by
side). glibc reads its tunables when a process starts, so the workflow sets them in the
environment it starts its jobs in (workflow/rules/common.smk); other allocators and other C
libraries ignore the variable.
"""

from __future__ import annotations

from collections.abc import Mapping

VARIABLE = "GLIBC_TUNABLES"
TCACHE = "glibc.malloc.tcache_count"
TUNABLE = f"{TCACHE}=0"


def tunables(current: str = "") -> str:
    """``GLIBC_TUNABLES`` with the tcache off, keeping the other tunables of ``current``
    (colon-separated ``name=value``) and a tcache count set there."""
    names = [item.split("=", 1)[0] for item in current.split(":") if item]
    if TCACHE in names:
        return current
    return ":".join(filter(None, (current, TUNABLE)))


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``environ`` for a job: ``GLIBC_TUNABLES`` with the tcache off."""
    return {VARIABLE: tunables(environ.get(VARIABLE, ""))}
