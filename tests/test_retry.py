"""Error classification, retry budgets and backoff: the pure policy behind in-place retries."""

from __future__ import annotations

import errno
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openspec_cli.retry import (
    BASE_RETRIES,
    EXTRA_RETRIES,
    advice,
    backoff,
    errno_name,
    is_transient,
    retry_budget,
)


@pytest.mark.parametrize(
    "code", [errno.EINTR, errno.EAGAIN, errno.EIO, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY]
)
def test_transient_errors_are_retried(code: int) -> None:
    assert is_transient(OSError(code, "x"))


@pytest.mark.parametrize(
    "code",
    [errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG],
)
def test_permanent_errors_fail_fast(code: int) -> None:
    assert not is_transient(OSError(code, "x"))
    assert advice(OSError(code, "x"))


def test_no_space_advice_says_what_to_do() -> None:
    assert advice(OSError(errno.ENOSPC, "x")) == "free some space"
    assert errno_name(OSError(errno.ENOSPC, "x")) == "ENOSPC"


def test_budget_grows_with_progress() -> None:
    assert retry_budget(0, 100) == BASE_RETRIES
    assert retry_budget(100, 100) == BASE_RETRIES + EXTRA_RETRIES
    assert retry_budget(0, 0) == BASE_RETRIES


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**12))
def test_budget_is_monotonic_and_bounded(a: int, b: int, size: int) -> None:
    lo, hi = sorted((a, b))
    assert BASE_RETRIES <= retry_budget(lo, size) <= retry_budget(hi, size)
    assert retry_budget(hi, size) <= BASE_RETRIES + EXTRA_RETRIES


@given(st.integers(1, 50), st.integers(0, 2**32))
def test_backoff_is_jittered_within_bounds(attempt: int, seed: int) -> None:
    delay = backoff(attempt, random.Random(seed), base=0.05, cap=2.0)
    ideal = min(2.0, 0.05 * 2 ** (attempt - 1))
    assert ideal * 0.5 <= delay <= ideal
