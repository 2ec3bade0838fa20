"""The job environment's glibc tunables (sltgeom.heap)."""

from sltgeom.heap import VARIABLE, job_environment, tunables

OFF = "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"


def test_both_caches_are_turned_off_alone_or_after_other_tunables():
    assert tunables() == OFF
    other = "glibc.malloc.arena_max=2"
    assert tunables(other) == f"{other}:{OFF}"


def test_a_value_the_user_set_is_kept():
    mine = "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=3"
    assert tunables(mine) == f"{mine}:glibc.malloc.mxfast=0"
    both = "glibc.malloc.mxfast=64:glibc.malloc.tcache_count=3"
    assert tunables(both) == both


def test_the_job_environment_sets_only_the_tunables():
    assert job_environment({"PATH": "/bin"}) == {VARIABLE: OFF}
    assert job_environment({VARIABLE: "glibc.malloc.arena_max=2"}) == {
        VARIABLE: f"glibc.malloc.arena_max=2:{OFF}"
    }
