"""The pieces of the bulk reprocess command that need no services: its arguments, what it
re-checks under each product's lock, the fingerprint of the image settings, the pacing and the
progress bar."""

from __future__ import annotations

import io

import pytest

from catalogue import image_state, reprocessing
from catalogue.fingerprint import settings_fingerprint
from compressor import reprocess
from compressor.pacing import TokenBucket
from compressor.progress import Progress, bar
from config import load_settings
from db.products import ReprocessFilter

SETTINGS = load_settings({}, dotenv=None)


def ready(fingerprint: str | None = None) -> dict[str, object]:
    entry = {**image_state.new_entry("a", 1), "status": "ready", "url": "u", "key": "k.jpg"}
    return entry if fingerprint is None else {**entry, "fingerprint": fingerprint}


def test_the_fingerprint_changes_with_every_setting_that_shapes_outputs_only():
    current = settings_fingerprint(SETTINGS)
    assert settings_fingerprint(SETTINGS) == current  # stable
    shaping = (
        {"image_rendition_sizes": (320, 800)},
        {"image_output_formats": ("jpeg",)},
        {"image_output_formats": ("webp", "jpeg")},
        {"image_quality_jpeg": 60},
        {"image_quality_webp": 60},
    )
    for change in shaping:
        assert settings_fingerprint(SETTINGS.replace(**change)) != current, change
    # Settings of a format not made, and limits that only refuse sources, change nothing.
    for change in ({"image_quality_avif": 50}, {"image_avif_speed": 4}, {"image_max_pixels": 9}):
        assert settings_fingerprint(SETTINGS.replace(**change)) == current, change
    with_avif = SETTINGS.replace(image_output_formats=("jpeg", "avif"))
    assert settings_fingerprint(with_avif.replace(image_avif_speed=4)) != settings_fingerprint(
        with_avif
    )


def test_under_the_lock_pending_and_no_longer_matching_products_are_skipped():
    fingerprint = settings_fingerprint(SETTINGS)
    rule = reprocess.skip_rule(
        ReprocessFilter(statuses=("failed",), outdated_fingerprint=fingerprint)
    )
    failed_old = {**ready("old"), "status": "failed", "error": "x"}
    assert rule([failed_old]) is None
    assert rule([image_state.new_entry("a", 2)]) == "pending"
    assert rule([ready("old")]) == "now_done"
    assert rule([{**ready(fingerprint), "status": "failed", "error": "x"}]) == "up_to_date"
    assert reprocessing.why_not(None, rule) == "missing"
    assert reprocessing.why_not([], rule) == "no_images"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--all", "--user", "3"],
        ["--all", "--outdated"],
        ["--user", "x"],
        ["--status", "pending"],
        ["--all", "--rate", "fast"],
    ],
)
def test_arguments_that_select_nothing_or_everything_ambiguously_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        reprocess.parse_args(argv)
    assert exited.value.code == 2


def test_filters_combine_and_the_rate_is_read_per_second():
    args = reprocess.parse_args(["--user", "3", "--status", "failed", "--status", "partial"])
    assert (args.user, args.status, args.outdated) == ("3", ["failed", "partial"], False)
    assert args.rate == 20.0  # the default
    assert reprocess.parse_args(["--all", "--rate", "120/min"]).rate == 2.0
    assert reprocess.parse_args(["--all", "--rate", "0"]).rate is None


def test_the_summary_counts_skips_per_reason():
    summary = reprocess.Summary(dry_run=False, selected=4)
    for reason in (None, None, "pending", "up_to_date"):
        summary.count(reason)
    assert summary.text() == (
        "reprocess: selected 4, queued 2, skipped 2 (pending: 1, up_to_date: 1)"
    )
    assert summary.as_dict()["skipped"] == {"pending": 1, "up_to_date": 1}


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_the_token_bucket_paces_to_its_rate_after_its_burst():
    time = FakeTime()
    bucket = TokenBucket(4.0, burst=2, clock=time.clock, sleep=time.sleep)
    for _ in range(6):
        await bucket.take()
    assert time.slept == [0.25] * 4  # two at once, then one every quarter second
    time.now += 10  # idle: the bucket fills up to its burst, no more
    for _ in range(3):
        await bucket.take()
    assert time.slept[4:] == [0.25]


def test_the_progress_bar_shows_the_share_done():
    assert bar(3, 10, "queued 3", width=10) == "[###-------] 3/10  30%  queued 3"
    assert bar(0, 0, width=4) == "[----] 0/1   0%"


def test_off_a_terminal_progress_prints_a_line_at_the_start_and_per_tenth():
    stream = io.StringIO()
    progress = Progress(100, stream)
    for done in range(1, 101):
        progress.update(done)
    progress.finish(100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[0].startswith("[" + "-" * 30 + "] 1/100")
    assert lines[-1].startswith("[" + "#" * 30 + "] 100/100 100%")
