from support.toy_envs import CounterEnv, LeakyCounterEnv

from reflectgym.core import audit_feedback_leaks


def test_clean_env_passes_the_audit() -> None:
    report = audit_feedback_leaks(CounterEnv(), episodes=10)
    assert report.ok and report.markers_checked > 0 and report.turns > 10


def test_leaky_env_is_caught_with_where_and_when() -> None:
    report = audit_feedback_leaks(LeakyCounterEnv(), episodes=5)
    assert not report.ok
    leak = report.leaks[0]
    assert leak.where in {"feedback", "observation"} and leak.turn >= 1
    assert "privileged text" in str(report)
