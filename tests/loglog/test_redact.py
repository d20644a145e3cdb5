"""The one redaction helper: no credential in any URL survives it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
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


# -- no false positives: the forms the sources accept pass unchanged -----------------------

_host = st.from_regex(r"\A[a-z][a-z0-9\-]{0,12}(\.[a-z][a-z0-9\-]{0,8}){0,2}\Z", fullmatch=True)
_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda p: ".".join(map(str, p)))
_path = st.lists(st.from_regex(r"\A[A-Za-z0-9_.\-]{1,12}\Z", fullmatch=True), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)
#: Parameters real camera and video URLs carry: none is a secret.
_benign = st.sampled_from(
    ["channel", "subtype", "transport", "transportmode", "unicast", "profile", "resolution",
     "fps", "seconds", "start", "t", "loop", "codec", "stream", "width", "height", "keyframe",
     "keyint", "author", "bypass", "monkey", "expires", "format"]
)  # fmt: skip
_query = st.lists(
    st.tuples(_benign, st.from_regex(r"\A[A-Za-z0-9_.\-]{0,10}\Z", fullmatch=True)), max_size=4
).map(lambda pairs: ("?" + "&".join(f"{k}={v}" for k, v in pairs)) if pairs else "")


@given(
    width=st.integers(16, 7680),
    height=st.integers(16, 4320),
    fps=st.one_of(st.integers(0, 240).map(str), st.floats(0.5, 240).map(lambda f: f"{f:.2f}")),
    seconds=st.one_of(st.just(""), st.integers(1, 3600).map(lambda s: f"?seconds={s}")),
)
def test_synthetic_sources_are_not_credentials(width, height, fps, seconds):
    """synthetic://WxH@FPS is a size and a frame rate: never shown as synthetic://***@15
    (it was, in logs and `jobs ls`)."""
    source = f"synthetic://{width}x{height}@{fps}{seconds}"
    assert redact(source) == source
    assert (
        redact(f"cannot open source {source!r}: refused")
        == f"cannot open source {source!r}: refused"
    )


@given(
    scheme=st.sampled_from(["rtsp", "rtsps", "http", "https", "rtmp"]),
    host=st.one_of(_host, _ipv4),
    port=st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")),
    path=_path,
    query=_query,
)
def test_urls_without_credentials_pass_unchanged(scheme, host, port, path, query):
    """rtsp/http sources with ordinary parameters (keyframe, bypass, expires …) are left
    as they are."""
    url = f"{scheme}://{host}{port}{path}{query}"
    assert redact(url) == url


@given(path=st.from_regex(r"\A(/|\./)?[A-Za-z0-9_.@\- ]{1,20}(/[A-Za-z0-9_.@\-]{1,12}){0,3}\Z",
                          fullmatch=True))  # fmt: skip
def test_file_paths_pass_unchanged(path):
    """Video files, even with an @ in their name (video@2x.mp4), and file:// URLs."""
    assert redact(path) == path
    assert redact(f"file://{path}" if path.startswith("/") else path) == (
        f"file://{path}" if path.startswith("/") else path
    )


# -- no false negatives: the red team's credential forms never pass in clear ----------------

#: Secret parameter names seen in the wild (the red team's list and more), as written.
SECRET_NAMES = [
    "X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Credential", "X-Goog-Signature",
    "X-Goog-Credential", "AWSAccessKeyId", "Signature", "sig", "client_secret",
    "access_key", "secret_key", "aws_secret_access_key", "refresh_token", "access_token",
    "id_token", "session_token", "private_token", "api-key", "apiKey", "apikey", "x-api-key",
    "auth_key", "authToken", "auth", "token", "password", "passwd", "pwd", "passphrase",
    "key", "stream_key", "jwt", "sessionid", "credentials",
]  # fmt: skip
_value = st.from_regex(r"\AS3cr[A-Za-z0-9%+/=_\-]{4,24}\Z", fullmatch=True)


def _variants(name: str) -> list[str]:
    """The same name as people write it: case and - / _ swapped."""
    return sorted(
        {name, name.lower(), name.upper(), name.replace("-", "_"), name.replace("_", "-")}
    )


@pytest.mark.parametrize("name", SECRET_NAMES)
@settings(max_examples=15)  # × 34 names × their variants
@given(value=_value, where=st.sampled_from(["?", "?a=1&", "#", "#state=x&", ";"]))
def test_secret_parameters_are_hidden_in_query_and_fragment(name, value, where):
    """Every form, whatever its case or separator, in the query or the fragment
    (``#access_token=…``): the value never appears in the output."""
    for variant in _variants(name):
        url = f"https://bucket.example.com/v.mp4{where}{variant}={value}&x=1"
        out = redact(f"GET {url} failed")
        assert value not in out, (variant, out)
        assert f"{variant}=***" in out


@given(
    user=st.from_regex(r"\A[A-Za-z0-9._\-]{0,12}\Z", fullmatch=True),
    # RFC 3986: an unencoded / ends the authority, so a password holds none.
    password=st.from_regex(r"\AS3cr[A-Za-z0-9%+=_!$*:@\-]{4,24}\Z", fullmatch=True),
    host=st.one_of(_host, _ipv4, st.just("[fe80::1]")),
    scheme=st.sampled_from(["rtsp", "http", "https", "amqp", "redis", "postgres"]),
    after=st.sampled_from(["/path", ":554/live", "", ", retrying", " refused", "?x=1"]),
)
def test_userinfo_passwords_are_hidden(user, password, host, scheme, after):
    """scheme://user:pass@host — with a port, a path, or none, at the end of a sentence."""
    out = redact(f"could not open {scheme}://{user}:{password}@{host}{after}")
    assert password not in out
    assert f"{scheme}://{user}:***@{host}{after}" in out


def test_a_token_as_the_user_is_hidden():
    """https://TOKEN@host (a token in the user part) is hidden whole."""
    assert redact("git clone https://ghp_S3cr3tT0ken@github.com/o/r") == (
        "git clone https://***@github.com/o/r"
    )
