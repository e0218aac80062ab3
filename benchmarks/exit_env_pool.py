"""Claim: ExIt plays a step's replies faster with a pool of envs in threads (`num_envs`) than with one env playing
them in turn, on a code env whose verifier runs every reply in a sandbox.

Side by side in one run, the same step (the same instances, the same replies) played by `ExItTrainer.play_slots`
with `num_envs=1` (the baseline) and `num_envs=N`. The replies are scripted, so the figure is the env's time
alone: each slot is a HumanEval problem (`reflectgym/HumanEval-v0`, 2 attempts, the default sandbox), and its G
replies define the entry point as a function that returns None (wrong, fails quickly) or spins for a while
before it returns (`--spin` seconds of CPU, the shape of a slow or looping answer). Prints the seconds per step
and the ratio.

Run: .venv/bin/python benchmarks/exit_env_pool.py [--envs 8] [--tasks 4] [--group 4] [--spin 0.2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.policy import Generation, Sampling
from reflectgym.agents.tiny import build_tiny_model
from reflectgym.trainers.exit import ExItConfig, ExItTrainer


def scripted_replies(trainer: ExItTrainer, spin: float) -> Any:
    """`generate_ids` that answers each prompt with code for its problem: wrong and quick, or spinning, in turn."""
    counter = {"n": 0}

    def generate_ids(prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[Generation]:
        out = []
        for prompt in prompts:
            text = trainer.policy.tokenizer.decode(list(prompt))
            name = text.split("def ", 1)[1].split("(", 1)[0] if "def " in text else "solution"
            spinning = f"import time\n    t = time.process_time()\n    while time.process_time() - t < {spin}: pass"
            body = "return None" if counter["n"] % 2 == 0 else f"{spinning}\n    return None"
            counter["n"] += 1
            reply = f"```python\ndef {name}(*args, **kwargs):\n    {body}\n```"
            out.append(Generation(reply, (1,), (0.0,)))
        return out

    return generate_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=8, help="envs of the pool (default: 8)")
    parser.add_argument("--tasks", type=int, default=4, help="slots per step (default: 4)")
    parser.add_argument("--group", type=int, default=4, help="replies per slot (default: 4)")
    parser.add_argument("--spin", type=float, default=0.2, help="CPU seconds a spinning reply burns per call")
    parser.add_argument("--rounds", type=int, default=3, help="steps timed per setting, alternating (default: 3)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="exit-env-pool-"))
    policy = HFPolicy.from_pretrained(build_tiny_model(folder / "model"))
    times: dict[int, list[float]] = {1: [], args.envs: []}
    trainers = {}
    for envs in times:
        config = ExItConfig(
            env_id="reflectgym/HumanEval-v0", env_kwargs={"max_attempts": 2}, output_dir=str(folder / f"run-{envs}"),
            tasks_per_step=args.tasks, group_size=args.group, num_envs=envs, progress=False, device="cpu",
            max_new_tokens=8, min_buffer=1,
        )  # fmt: skip
        trainer = ExItTrainer(config, policy)
        trainer.policy.generate_ids = scripted_replies(trainer, args.spin)  # type: ignore[method-assign]
        trainers[envs] = trainer
    for round_ in range(args.rounds + 1):  # round 0 warms the envs and their sandboxes up
        for envs, trainer in trainers.items():
            slots, _ = trainer.choose_slots(round_)
            started = time.perf_counter()
            groups = trainer.play_slots(slots)
            seconds = time.perf_counter() - started
            failed = sum(reply.outcome is None for group in groups for reply in group)
            if failed:
                raise SystemExit(f"{failed} replies failed to play with num_envs={envs}: the figure would be wrong")
            if round_:
                times[envs].append(seconds)
    for trainer in trainers.values():
        trainer.close()
    replies = args.tasks * args.group
    base = statistics.median(times[1])
    pool = statistics.median(times[args.envs])
    print(
        f"{replies} replies a step (half wrong and quick, half spinning {args.spin} s of CPU), median of {args.rounds}"
    )
    print(f"num_envs=1 (baseline)  {base:7.3f} s/step")
    print(f"num_envs={args.envs:<2}           {pool:7.3f} s/step   {base / pool:5.2f}x")


if __name__ == "__main__":
    main()
