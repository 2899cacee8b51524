"""The embedded broker's idle-fetch sleep: short after the first empty fetch, longer while the
consumer stays idle, never above the ceiling that bounds a quiet spell's first record."""

from app.embedded import IDLE_FETCH_BACKOFF_MAX_S, IDLE_FETCH_BACKOFF_S, idle_fetch_delay


def test_the_first_empty_fetch_sleeps_the_base_delay() -> None:
    assert idle_fetch_delay(1, 0.01, 0.04) == 0.01


def test_each_further_empty_fetch_doubles_the_sleep_up_to_the_ceiling() -> None:
    assert [idle_fetch_delay(n, 0.01, 0.04) for n in range(1, 6)] == [0.01, 0.02, 0.04, 0.04, 0.04]


def test_a_streak_of_zero_means_data_just_arrived_and_sleeps_the_base() -> None:
    assert idle_fetch_delay(0, 0.01, 0.04) == 0.01


def test_the_defaults_keep_the_worst_wait_under_a_blotter_hop_budget() -> None:
    # Two consumer hops (input, change feed) must stay well inside the 100 ms end-to-end target.
    assert IDLE_FETCH_BACKOFF_S <= IDLE_FETCH_BACKOFF_MAX_S
    assert 2 * idle_fetch_delay(10**6, IDLE_FETCH_BACKOFF_S, IDLE_FETCH_BACKOFF_MAX_S) < 0.1
