"""The factories' own promise: a territory they number never takes the number a test gives its own."""
from __future__ import annotations

import re
from pathlib import Path

from tests.factories import CHOSEN_NUMBERS, GENERATED_NUMBERS

TESTS = Path(__file__).parent
CHOSEN = re.compile(r"""number(?:=|: str = )["']([0-9AB]{2})["']""")


def test_every_two_digit_number_a_test_chooses_is_never_generated():
    chosen = {number for path in TESTS.rglob("*.py") for number in CHOSEN.findall(path.read_text(encoding="utf-8"))}
    assert chosen, "the pattern no longer finds the numbers tests choose"
    assert chosen <= CHOSEN_NUMBERS, f"add {sorted(chosen - CHOSEN_NUMBERS)} to tests/factories.py CHOSEN_NUMBERS"
    assert not CHOSEN_NUMBERS & set(GENERATED_NUMBERS)
