"""The report's sentences as pure functions of typed facts: for any figures — negative,
NaN, ±Inf, absent — they never print a number that is not one, never claim headroom while
the objective is missed, a stage is stalled or load is shed, and say "exhausted" with the
factor instead of a negative budget. Fast: no Prometheus, no browser."""

from __future__ import annotations

import itertools
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from report import sentences, series
from report.charts import wrap_name
from report.facts import Capacity, Coverage, Outage, ServiceLevel, Stall, State, Throughput
from report.units import count, duration, fmt

#: Any figure Prometheus could hand over: absent, ordinary, huge, negative, NaN, ±Inf.
figures = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2, max_value=2),
    st.sampled_from([0.0, -0.0, 1.0, math.nan, math.inf, -math.inf, -70.07, 71.07, 1e300]),
)
states = st.sampled_from(list(State))
NOT_A_NUMBER = re.compile(r"\b(nan|inf|infinity)\b|[-−]\d|∞|not a number", re.I)
END = 1.8e9


def _clean(text: str) -> None:
    """A sentence a manager reads: no NaN/Inf, no negative number, ends with a full stop."""
    assert not NOT_A_NUMBER.search(text), text
    assert text.endswith("."), text
    assert "  " not in text and " ." not in text, text


@given(items=figures, mean=figures, peak=figures, rejected=figures, dropped=figures)
def test_throughput_never_prints_a_number_that_is_not_one(items, mean, peak, rejected, dropped):
    """Whatever the counts, the throughput sentence has no nan/inf/negative number
    ("Delivered nan items" before); an unknown count reads as unknown."""
    facts = Throughput(
        range_s=3600,
        items=items,
        mean_per_s=mean,
        peak_per_s=peak,
        coverage=Coverage(start=END - 3600, end=END, first=END - 3600),
        rejected=rejected,
        dropped_frames=dropped,
    )
    said = sentences.throughput(facts)
    _clean(said.text)
    if items is None:
        assert "is not known yet" in said.text
    elif math.isfinite(items) and items >= -1e-9:
        assert said.text.startswith("Delivered ")
    else:
        assert "is unknown: Prometheus answered a value that is not a finite count" in said.text
        assert said.state is not State.HEALTHY


@given(burn=figures, p95=figures, good=figures, left=figures)
def test_service_level_says_exhausted_never_a_negative_budget(burn, p95, good, left):
    """A burn rate above 1 is an exhausted budget with its factor; never "−7007.1 % of the
    latency error budget is left", never a share that is not one."""
    facts = ServiceLevel(
        objective_s=1.0, target=0.99, burn=burn, p95_s=p95, good_30d=good, budget_left_30d=left
    )
    said = sentences.service_level(facts)
    _clean(said.text)
    b = burn if burn is not None and math.isfinite(burn) else None
    if b is not None and b > 1 and b * 0.01 <= 1:
        assert said.state is State.EXHAUSTED
        assert "misses the 99.0 % target: the latency error budget is exhausted" in said.text
        assert "would be left" not in said.text
    if b is not None and 0 <= b <= 1:
        assert "meets the 99.0 % target" in said.text
    assert "requests succeeded;" not in said.text  # 30 days: "succeeded within the …"


def test_the_bad_day_sentence_of_the_issue():
    """28.9 % within the objective (burn 71.07): exhausted, 71×, and the 30-day sentence
    says what it counts."""
    said = sentences.service_level(
        ServiceLevel(
            objective_s=1.0, target=0.99, burn=71.07, p95_s=2.4, good_30d=0.241,
            budget_left_30d=-74.9,
        )
    )  # fmt: skip
    assert said.text == (
        "Only 28.9 % of requests finished within the 1 s latency objective on average over "
        "the range, which misses the 99.0 % target: the latency error budget is exhausted — "
        "71× the allowed share of slow requests. p95 latency averaged 2.40 s. Over 30 days "
        "24.1 % of requests succeeded within the 1 s objective (errors and slow requests count "
        "against it): the 30-day error budget is exhausted — 76× the allowed share."
    )


@given(
    headroom=figures,
    slo=states,
    stalled=st.booleans(),
    overloaded=st.booleans(),
    efficiency=figures,
    gpu=figures,
    restarted=st.none() | st.floats(0, 7200),
)
def test_headroom_is_claimed_only_when_nothing_argues_against_it(
    headroom, slo, stalled, overloaded, efficiency, gpu, restarted
):
    """ "Room for N more streams" only with a finite, non-negative headroom while the
    objective holds, no stage is stalled, no load is shed (the runtime's rule) and the
    delivered rate is not still filling its window after a (re)start; no_headroom() (the
    figure's reason) says why exactly when the sentence claims none."""
    stalls = (Stall(stage="preprocess", seconds=720, at_end=True),) if stalled else ()
    fact = Capacity(
        efficiency=efficiency,
        capacity_per_s=40.0,
        headroom_streams=headroom,
        gpu_busy=gpu,
        slo=slo,
        objective_s=1.0,
        stalls=stalls,
        overloaded=overloaded,
        restarted_ago_s=restarted,
        window_s=300.0,
    )
    said = sentences.capacity(fact)
    _clean(said.text)
    filling = restarted is not None and restarted < 300
    claimed = "Room for" in said.text
    allowed = (
        headroom is not None
        and math.isfinite(headroom)
        and headroom >= 0.05
        and slo < State.EXHAUSTED
        and not stalled
        and not overloaded
        and not filling
    )
    assert claimed == allowed, said.text
    refused = slo >= State.EXHAUSTED or stalled or overloaded or filling
    assert ("No headroom is claimed:" in said.text) == refused, said.text
    assert (sentences.no_headroom(fact) is not None) == refused


@given(value=st.floats(allow_nan=True, allow_infinity=True), unit=st.sampled_from(
    ["short", "reqps", "s", "percentunit", "bytes", "watt", "celsius", "suffix: fps"]
))  # fmt: skip
def test_a_figure_is_never_shown_as_nan_or_inf(value, unit):
    """fmt(): NaN is "not a number" and ±Inf "∞", never "nan %" or "inf G"."""
    text = fmt(value, unit)
    assert not re.search(r"\b(nan|inf)\b", text, re.I), text
    if not math.isfinite(value):
        assert text in ("∞", "−∞", "not a number")
    assert not re.search(r"\b(nan|inf)\b", count(value) + duration(value), re.I)


@given(factor=st.floats(min_value=1.0, max_value=1e6, exclude_min=True))
def test_more_than_allowed_never_reads_as_one_times(factor):
    """An exhausted budget's factor never rounds down to "1.0×"."""
    said = sentences.exhausted(1.0 - factor)
    assert said.startswith("exhausted (") and "1.0×" not in said


def test_outages_are_said_with_when_and_how_long():
    """One outage, an outage lasting to the end, and several."""
    one = (Outage(start=END - 3000, end=END - 2640),)
    assert sentences.outages(one, 7200, "down").endswith("UTC: down.")
    assert "No data for 6 min, from " in sentences.outages(one, 7200, "down")
    last = (Outage(start=END - 600, end=END, ongoing=True),)
    assert "(the last 10 min of the range)" in sentences.outages(last, 7200, "down")
    two = (Outage(start=END - 5000, end=END - 4880), Outage(start=END - 600, end=END, ongoing=True))
    said = sentences.outages(two, 7200, "down")
    assert "No data for 12 min in 2 outages (the longest 10 min" in said
    assert said.endswith("The last one lasts to the end of the range.")


# -- series: gaps, ramps, presence ----------------------------------------------------------


@given(
    present=st.lists(st.booleans(), min_size=1, max_size=60),
    window_steps=st.integers(min_value=0, max_value=8),
)
def test_gaps_and_ramps_are_never_drawn(present, window_steps):
    """A series sampled every step where ``present``: no line crosses a gap (a NaN sits in
    every gap), and no point is drawn within the rate window after a run (re)starts
    inside the range — the rate is still filling there."""
    step, start = 15.0, 1000.0
    asked_from = start - window_steps * step
    points = [(asked_from + i * step, 1.0) for i, here in enumerate(present) if here]
    drawn = series.drawable(
        points, step=step, start=start, asked_from=asked_from, window=window_steps * step
    )
    times = [t for t, v in drawn if not math.isnan(v)]
    for (a, va), (b, vb) in itertools.pairwise(drawn):
        if not math.isnan(va) and not math.isnan(vb):
            assert b - a <= 1.5 * step  # consecutive drawn points are neighbours
    for first, _ in series.runs([t for t, _ in points], step):
        if first > asked_from + step / 2:
            assert not [t for t in times if first <= t < first + window_steps * step]
    assert all(t >= start - step / 2 for t in times)


def test_a_rate_that_outlives_its_series_is_not_drawn():
    """With a presence signal (the scraped counter), rate points after it stopped are
    dropped: an outage shows as an outage, not as the last rate held for 5 minutes."""
    step = 15.0
    rate = [(t, 10.0) for t in range(0, 1200, 15)]  # the recorded rate never stopped
    presence = series.runs([t for t in range(0, 1200, 15) if not 300 < t < 700], step)
    drawn = series.drawable(rate, step=step, start=0, asked_from=0, window=300, presence=presence)
    times = [t for t, v in drawn if not math.isnan(v)]
    assert not [t for t in times if 300 < t < 700 + 300]
    assert any(math.isnan(v) for _, v in drawn)


def test_coverage_finds_late_data_and_outages():
    """Presence points every 15 s: data from 600 s in, a gap of 6 min, gone for the last 5."""
    times = [t for t in range(600, 3300, 15) if not 1200 < t < 1560]
    cov = series.coverage(times, start=0, end=3600, step=15)
    assert cov.late == 600
    assert [(g.start, g.end, g.ongoing) for g in cov.outages] == [
        (1200, 1560, False),
        (3285, 3600, True),
    ]


def test_rate_windows_are_read_from_the_queries():
    """Recorded ``:rate5m`` names and ``[1h]`` selectors count; a subquery's range does not."""
    assert series.rate_window(['job:inference_delivered_items:rate5m{job=~".*"}']) == 300
    assert series.rate_window(["sum(rate(x[1h])) * 3600", "y"]) == 3600
    assert series.rate_window(["avg_over_time((sum(up))[7200s:60s])"]) == 0
    assert series.rate_window(["job:inference_request_slow:ratio_rate30m"]) == 1800


@given(name=st.text(alphabet=st.characters(categories=("L", "N"), include_characters="_-"),
                    min_size=1, max_size=120))  # fmt: skip
def test_a_long_name_is_wrapped_whole(name):
    """Wrapping only adds line breaks: the name is all there, and no line is wider than
    24 characters (names are never cut off, only broken)."""
    wrapped = wrap_name(name)
    assert wrapped.replace("\n", "") == name
    assert all(0 < len(line) <= 24 for line in wrapped.split("\n"))


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        ("InferenceThroughputCollapsed", ["InferenceThroughput", "Collapsed"]),
        ("InferenceStalled", ["InferenceStalled"]),
        ("FleetBacklogPastDrainDeadline", ["FleetBacklogPastDrain", "Deadline"]),
    ],
)
def test_alert_names_break_at_words(name, lines):
    """The names the old PDF clipped ("hputCollapsed") break at CamelCase."""
    assert wrap_name(name).split("\n") == lines
