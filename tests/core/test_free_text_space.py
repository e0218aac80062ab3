from reflectgym.core import FreeText


def test_contains_any_string_within_the_bound() -> None:
    space = FreeText(max_length=5)
    assert "héllo" in space and "" in space
    assert "toolong" not in space and 3 not in space and b"bytes" not in space
    assert "x" * 10_000 in FreeText()


def test_sampling_is_seeded() -> None:
    first = [FreeText(seed=42).sample() for _ in range(1)] + [FreeText(seed=42).sample()]
    assert first[0] == first[1]
    space = FreeText(seed=1)
    samples = {space.sample() for _ in range(50)}
    assert len(samples) > 40 and all(isinstance(s, str) for s in samples)


def test_equality_and_json() -> None:
    assert FreeText(10) == FreeText(10) and FreeText(10) != FreeText(11)
    assert FreeText().to_jsonable(["a", "b"]) == ["a", "b"] == FreeText().from_jsonable(["a", "b"])
