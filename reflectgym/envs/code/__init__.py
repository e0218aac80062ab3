"""Code: function tasks checked by unit tests (HumanEval / MBPP family) and stdin/stdout programs checked by
input/output cases, each test run individually in a sandbox so feedback can name the failing one."""

from reflectgym.envs.code.extract import extract_code
from reflectgym.envs.code.formats import load_code_tasks
from reflectgym.envs.code.verifier import IOVerifier, UnitTestVerifier, VerifierConfig

__all__ = ["IOVerifier", "UnitTestVerifier", "VerifierConfig", "extract_code", "load_code_tasks"]
