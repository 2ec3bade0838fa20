"""Keep a long CPU job's heap from growing: glibc's small-chunk caches and torch's aligned tensors.

torch allocates every CPU tensor with ``posix_memalign`` (64-byte alignment). glibc before 2.39
(bug 30723, "Enable merging of remainders in memalign") frees the remainders that alignment cuts
off such a chunk into its per-thread cache (tcache) or its fast bins, where they count as in
use: the chunk a tensor leaves when freed cannot merge with its neighbours, is then too small
for the next aligned request of the same size, and the heap grows while the memory in use does
not. An LLC sampler allocates tens of megabyte-sized tensors per step, for tens of thousands of
steps: on the 10⁵-parameter deep linear network (4 chains, glibc 2.36) the heap grew to 2.7 GB
within 11 500 steps and to 7.5 GB within 5 minutes in another run (in use: 0.2 GB), and two of
four runs were killed for memory.

With both caches off (``TUNABLES``) the remainders go straight to the allocator's bins and
merge: the heap stays at its size after the first steps (docs/llc.md, "Memory";
``tests/benchmarks/bench_llc_memory.py``). The tcache alone is not enough: that heap was flat
for 11 500 steps and then grew by 50 MB/s. glibc reads its tunables when a process starts, so
the workflow sets them in the environment it starts its jobs in (workflow/rules/common.smk);
other allocators and other C libraries ignore the variable.
"""

from __future__ import annotations

from collections.abc import Mapping

VARIABLE = "GLIBC_TUNABLES"
# no thread cache, no fast bins: every freed chunk merges with its free neighbours at once
TUNABLES = {"glibc.malloc.tcache_count": "0", "glibc.malloc.mxfast": "0"}


def tunables(current: str = "") -> str:
    """``GLIBC_TUNABLES`` with :data:`TUNABLES` added to ``current`` (colon-separated
    ``name=value``), whose own values win."""
    names = {item.split("=", 1)[0] for item in current.split(":") if item}
    added = [f"{name}={value}" for name, value in TUNABLES.items() if name not in names]
    return ":".join(filter(None, (current, *added)))


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``environ`` for a job: ``GLIBC_TUNABLES`` with both caches off."""
    return {VARIABLE: tunables(environ.get(VARIABLE, ""))}
