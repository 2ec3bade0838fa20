"""The job environment's glibc tunables (sltgeom.heap)."""

from sltgeom.heap import TUNABLE, VARIABLE, job_environment, tunables


def test_the_tcache_is_turned_off_alone_or_after_other_tunables():
    assert tunables() == TUNABLE == "glibc.malloc.tcache_count=0"
    other = "glibc.malloc.arena_max=2"
    assert tunables(other) == f"{other}:{TUNABLE}"


def test_a_tcache_count_the_user_set_is_kept():
    mine = "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=3"
    assert tunables(mine) == mine


def test_the_job_environment_sets_only_the_tunables():
    assert job_environment({"PATH": "/bin"}) == {VARIABLE: TUNABLE}
    assert job_environment({VARIABLE: "glibc.malloc.mxfast=0"}) == {
        VARIABLE: f"glibc.malloc.mxfast=0:{TUNABLE}"
    }
