"""Red-team findings (red26) on admission: hostile X-Request-Timeout values, and the
refusal of a deadline no request could meet on an idle server."""

from __future__ import annotations

import pytest

from inference.core.admission import Admission
from inference.errors import InputError, ShedError
from tests.inference.test_admission import header_admission, served  # noqa: F401 - a fixture
from tests.inference.test_core import FakeClock


def _admission() -> Admission:
    return header_admission(FakeClock())


@pytest.mark.parametrize(
    "header",
    [
        "0.5" + " " * 40 + "garbage",  # was cut to 40 characters, then read as 0.5
        "1" * 39 + " x",
        "1_000",  # Python's digit grouping: not a number in HTTP
        "\u0661",  # ARABIC-INDIC DIGIT ONE: float() reads it as 1
        "1" * 5000,
    ],
)
def test_a_timeout_header_is_read_whole_and_only_as_a_plain_decimal(header):
    with pytest.raises(InputError, match="X-Request-Timeout") as caught:
        _admission().deadline(header)
    assert caught.value.status == 400
    assert len(str(caught.value)) < 300, "a huge header is not echoed whole"


def test_a_deadline_no_request_can_meet_is_not_blamed_on_capacity(served):  # noqa: F811
    """X-Request-Timeout: 0.01 against an idle server whose one item takes 0.1 s was a
    503 saying "the server is past its capacity … retry after 1s": false (nothing is
    queued), and a retry can never succeed. It is still refused and counted, with the
    truth and the fix."""
    s = served(per_item=0.1)
    deadline = s.admission.deadline("0.01")
    with pytest.raises(ShedError) as caught:
        s.admission.check(deadline)
    message = str(caught.value)
    assert "past its capacity" not in message
    assert "X-Request-Timeout" in message and "alone" in message
    assert s.counted("inference_requests_shed_total", "predicted_wait") == 1
