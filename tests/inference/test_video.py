"""Decoding request images: the format from the bytes, no container probing, hostile bytes
answered with an InputError that says what to send."""

from __future__ import annotations

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.errors import InputError
from inference.media import video
from inference.media.video import decode_image, encode_jpeg, encode_png, image_format


def _rgb(height: int = 48, width: int = 64, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)


def _encode(codec: str, rgb: np.ndarray, pix_fmt: str) -> bytes:
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = frame.width, frame.height, pix_fmt
    return b"".join(bytes(p) for p in [*context.encode(frame), *context.encode(None)])


@pytest.fixture
def no_probing(monkeypatch):
    """av.open (the container probe) fails the test if decode_image reaches it."""

    def forbidden(*args, **kwargs):
        raise AssertionError("decode_image opened a container (probing) for a known format")

    monkeypatch.setattr(video.av, "open", forbidden)


def test_png_round_trips_exactly_without_opening_a_container(no_probing):
    """PNG is lossless: the pixels come back as sent, through the png decoder alone."""
    rgb = _rgb()
    assert np.array_equal(decode_image(encode_png(rgb), "image/png"), rgb)


def test_jpeg_decodes_without_opening_a_container_to_the_probed_pixels(monkeypatch):
    """The mjpeg decoder gives exactly what the old probing path gave, without av.open."""
    data = encode_jpeg(_rgb(240, 320))
    probed = video._decode_probed(data)
    monkeypatch.setattr(video.av, "open", lambda *a, **k: pytest.fail("probed a JPEG"))
    decoded = decode_image(data, "image/jpeg")
    assert decoded.shape == (240, 320, 3) and decoded.dtype == np.uint8
    assert np.array_equal(decoded, probed)


def test_the_bytes_not_the_content_type_pick_the_decoder(no_probing):
    """A PNG labelled image/jpeg (or with no label) is still decoded as PNG."""
    rgb = _rgb()
    assert np.array_equal(decode_image(encode_png(rgb), "image/jpeg"), rgb)
    assert np.array_equal(decode_image(encode_png(rgb)), rgb)
    assert image_format(encode_jpeg(rgb)) == "jpeg" and image_format(b"BM....") is None


@pytest.mark.parametrize("pix_fmt", ["gray", "rgba", "rgb48be"])
def test_png_of_any_pixel_format_becomes_three_channel_uint8(no_probing, pix_fmt):
    """Grey, alpha and 16-bit PNGs all come out as HWC uint8 RGB, what preprocess expects."""
    decoded = decode_image(_encode("png", _rgb(), pix_fmt))
    assert decoded.shape == (48, 64, 3) and decoded.dtype == np.uint8


def test_other_formats_still_decode_through_the_probe():
    """BMP has no fast path; it still decodes (the container is probed)."""
    rgb = _rgb()
    assert np.array_equal(decode_image(_encode("bmp", rgb, "bgr24"), "image/bmp"), rgb)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", "image/jpeg", "body is empty"),
        (b"\xff\xd8\xff" + b"\x00" * 500, "image/jpeg", "could not decode"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "image/png", "could not decode"),
        (b"not an image at all" * 10, "image/jpeg", "Content-Type says JPEG"),
    ],
)
def test_hostile_bodies_get_an_input_error_that_says_what_to_send(body, content_type, message):
    with pytest.raises(InputError, match=message) as caught:
        decode_image(body, content_type)
    assert "send image/jpeg, image/png" in str(caught.value) or "empty" in message


def test_a_truncated_png_is_an_input_error():
    data = encode_png(_rgb())
    with pytest.raises(InputError, match="could not decode"):
        decode_image(data[: len(data) // 2], "image/png")


@settings(max_examples=150, deadline=None)
@given(
    magic=st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b""]),
    tail=st.binary(max_size=2048),
)
def test_arbitrary_bytes_either_decode_or_raise_input_error(magic, tail):
    """Whatever follows the magic bytes, the only exception is InputError (a 4xx)."""
    try:
        decoded = decode_image(magic + tail, "image/jpeg")
    except InputError:
        return
    assert decoded.ndim == 3 and decoded.shape[2] == 3 and decoded.dtype == np.uint8


def test_as_frame_gives_the_decoders_frame_and_preprocess_sees_the_same_picture(no_probing):
    """The frame (YUV for a JPEG) converts to exactly the RGB array decode_image returns,
    and the model input resized from it differs from the RGB route only by rounding."""
    from inference.core.stages import Preprocess
    from inference.engines import load_engine

    data = encode_jpeg(_rgb(480, 640))
    frame = decode_image(data, "image/jpeg", as_frame=True)
    assert isinstance(frame, av.VideoFrame) and (frame.width, frame.height) == (640, 480)
    rgb = decode_image(data, "image/jpeg")
    assert np.array_equal(frame.to_ndarray(format="rgb24"), rgb)
    preprocess = Preprocess(load_engine(threads=1).describe())
    from_frame, from_rgb = preprocess.tensor(frame), preprocess.tensor(rgb)
    assert from_frame.shape == from_rgb.shape
    # Normalised units: 1.0 ≈ one standard deviation of ImageNet pixels (~58 levels).
    assert float(np.mean(np.abs(from_frame - from_rgb))) < 0.05  # measured: 0.012–0.019


def test_the_http_decode_stage_hands_preprocess_the_decoders_frame(no_probing):
    """The HTTP path (request_item → the decode stage → preprocess) keeps the fast route:
    the decode stage leaves the decoder's own frame on the item (JPEG and PNG), not an RGB
    copy, and preprocess turns it into the same model input as the RGB array."""
    from inference.core.stages import Decode, Preprocess
    from inference.engines import load_engine
    from inference.server.bodies import request_item

    preprocess = Preprocess(load_engine(threads=1).describe())
    decode = Decode(preprocess)
    rgb = _rgb(480, 640)
    [item] = decode([request_item(encode_jpeg(rgb), "image/jpeg")])
    assert isinstance(item.image, av.VideoFrame) and item.payload is None
    [png_item] = decode([request_item(encode_png(rgb), "image/png")])
    assert isinstance(png_item.image, av.VideoFrame)
    [item, png_item] = preprocess([item, png_item])
    assert item.tensor is not None and png_item.tensor is not None
    assert item.tensor.shape == png_item.tensor.shape == preprocess.tensor(rgb).shape
    assert float(np.mean(np.abs(png_item.tensor - preprocess.tensor(rgb)))) < 0.05


def test_the_http_decode_stage_passes_the_content_type_to_the_error(monkeypatch):
    """The request's Content-Type reaches decode_image: bytes that are not what it announces
    get the error that says so."""
    from inference.core.stages import Decode, Preprocess
    from inference.engines import load_engine
    from inference.server.bodies import request_item

    decode = Decode(Preprocess(load_engine(threads=1).describe()))
    with pytest.raises(InputError, match="Content-Type says JPEG"):
        decode([request_item(b"GIF89a not really an image", "image/jpeg")])
