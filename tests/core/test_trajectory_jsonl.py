from pathlib import Path

import numpy as np
import pytest

from reflectgym.core import Trajectory, Turn, Verdict, read_trajectories, write_trajectories


def make_trajectory(seed: int) -> Trajectory:
    verdict = Verdict(reward=1.0, passed=True, feedback="ok ✓", details={"tests": [1, 2]})
    turns = [
        Turn(observation="board\n#@.", action="garbage", reward=-0.1, feedback="expected a move", parse_error="bad"),
        Turn(
            observation="b2",
            action="up",
            reward=1.0,
            feedback="ok ✓",
            terminated=True,
            verdict=verdict,
            action_token_ids=(1, 2, 3),
            action_logprobs=(-0.5, -0.25, -1.0),
        ),
    ]
    return Trajectory(
        env_id="reflectgym/X-v0",
        task_id="t1",
        seed=seed,
        turns=turns,
        final_observation="done",
        privileged="plan",
        metadata={"agent": "oracle"},
    )


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "t.jsonl"
    originals = [make_trajectory(seed) for seed in range(3)]
    assert write_trajectories(path, originals) == 3
    loaded = list(read_trajectories(path))
    assert loaded == originals
    assert loaded[0].success and loaded[0].total_reward == pytest.approx(0.9) and loaded[0].done


def test_append_keeps_earlier_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_trajectories(path, [make_trajectory(0)])
    write_trajectories(path, [make_trajectory(1)], append=True)
    assert [t.seed for t in read_trajectories(path)] == [0, 1]


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(make_trajectory(0).to_json() + "\n{not json\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:2"):
        list(read_trajectories(path))


def test_any_text_and_numpy_details_write_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    odd = Trajectory(
        env_id="x",
        task_id="t",
        seed=0,
        turns=[Turn(observation="o", action="up \ud800 \udcff", reward=0.0, feedback="é")],
        metadata={"score": np.float32(0.5), "flags": np.array([1, 2])},
    )
    assert write_trajectories(path, [odd, make_trajectory(1)]) == 2
    loaded = list(read_trajectories(path))
    assert loaded[0].turns[0].action == "up \ud800 \udcff" and loaded[0].turns[0].feedback == "é"
    assert loaded[0].metadata == {"score": 0.5, "flags": [1, 2]} and loaded[1] == make_trajectory(1)


def test_a_last_line_cut_short_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [make_trajectory(seed).to_json() for seed in range(3)]
    path.write_text("\n".join(lines)[:-40])  # a run killed while writing its last line
    with pytest.warns(UserWarning, match=r"t\.jsonl:3: skipped the last line, cut short"):
        assert [t.seed for t in read_trajectories(path)] == [0, 1]
    path.write_text(lines[0] + "\n" + lines[1][:-40] + "\n" + lines[2] + "\n")  # in the middle: an error
    with pytest.raises(ValueError, match=r"t\.jsonl:2: not a trajectory"):
        list(read_trajectories(path))
