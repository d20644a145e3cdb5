"""The one redaction helper: no credential in any URL survives it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loglog.redact import redact, redact_url

_secret = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!$%*-_~",
    min_size=4,
    max_size=20,
)


def test_password_and_token_are_hidden() -> None:
    """user:pass@ keeps the user and hides the password; secret query values go too."""
    assert redact_url("rtsp://admin:hunter2@10.0.0.7:554/live?token=abc&x=1") == (
        "rtsp://admin:***@10.0.0.7:554/live?token=***&x=1"
    )


def test_free_text_and_urls_without_secrets() -> None:
    """URLs inside a message are redacted; URLs without credentials are left as they are."""
    assert redact("open rtsp://u:p@cam/1 failed") == "open rtsp://u:***@cam/1 failed"
    assert redact("http://loki:3100/loki/api/v1/push") == "http://loki:3100/loki/api/v1/push"
    assert redact("plain words") == "plain words"


@given(user=_secret, password=_secret, host=st.sampled_from(["cam", "10.0.0.1:554", "h.example"]))
def test_no_password_survives(user: str, password: str, host: str) -> None:
    """Whatever the user and password, the password never appears in the output."""
    for scheme in ("rtsp", "http", "https", "rtmp"):
        out = redact(f"error: {scheme}://{user}:{password}@{host}/path?x=1 is down")
        assert f":{password}@" not in out
        assert "***" in out


@given(value=_secret)
def test_secret_query_parameters(value: str) -> None:
    """api_key, token and password parameters are hidden whatever their value."""
    for name in ("api_key", "token", "Password"):
        assert (
            value not in redact(f"https://h/p?{name}={value}&y=2").split("?", 1)[1].split("&y")[0]
        )
