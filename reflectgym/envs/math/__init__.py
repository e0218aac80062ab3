"""Math: answer-checked problems (datasets, procedural generators, reasoning-gym) with self-correction."""
