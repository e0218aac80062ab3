"""A custom environment in a dozen lines: a task list plus a verify function, registered and made with Gymnasium.

Run: python examples/custom_env.py
"""

import gymnasium as gym

import reflectgym

CAPITALS = [
    {"id": "fr", "prompt": "What is the capital of France?", "answer": "Paris"},
    {"id": "jp", "prompt": "What is the capital of Japan?", "answer": "Tokyo"},
    {"id": "ke", "prompt": "What is the capital of Kenya?", "answer": "Nairobi"},
]


def verify(task: reflectgym.Task, answer: str, feedback: str) -> reflectgym.Verdict:
    """Right if the reply names the capital; at `hint` level a wrong answer learns the first letter."""
    correct = task.reference.lower() in answer.lower()
    text = "Correct." if correct else "Not that city."
    if not correct and feedback == "hint":
        text += f" The city starts with {task.reference[0]!r}."
    return reflectgym.Verdict(reward=float(correct), passed=correct, feedback=text)


reflectgym.register_task_env("Capitals-v0", CAPITALS, verify, max_attempts=3, instructions="Answer in one word.")

if __name__ == "__main__":
    env = gym.make("reflectgym/Capitals-v0", feedback="hint")
    observation, info = env.reset(seed=0, options={"task_id": "fr"})
    print(observation)
    for reply in ("Lyon", "Paris, of course"):
        observation, reward, terminated, truncated, info = env.step(reply)
        print(f"> {reply}\n{observation}  (reward {reward})")
        if terminated or truncated:
            break
