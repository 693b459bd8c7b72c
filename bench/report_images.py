"""The bench report's section on images (issue 16): the rendition ladder's cost, each format's
bytes at equal quality, libvips, the lossless mozjpeg pass, and the worker's pipeline.

Reads what bench/test_bench_renditions.py wrote (bench/results/renditions.json) and the
pipeline's result (pipeline.json, bench/test_bench_pipeline.py); ``section({"renditions": ...,
"pipeline": ...})`` returns Markdown lines, either input may be None (not measured). Every
verdict is computed from the data: targets are marked met / not met, and so are the formats'
default qualities and the mozjpeg pass. Standard library only.
"""

from __future__ import annotations

from typing import Any

LADDER_TARGET = 1.4  # the default JPEG ladder's CPU / compress()'s (12 MP photo), at most
VIPS_JPEG_TARGET = 1.2  # libvips's JPEG ladder CPU / ours, at least
PIPELINE_SET_TARGET = 0.85  # worker images/s with the default set / compress-only same set
# The lossless mozjpeg pass is worth its time when it saves at least 1 % of the JPEG bytes for
# every 10 % it adds to the JPEG ladder's CPU time (a rendition is made once and served many
# times, so bytes may cost some CPU, but not any amount of it).
MOZJPEG_BYTES_PER_CPU = 0.1
FORMAT_NAMES = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.1f} %"


def _saving(share: float | None) -> str:
    """A share saved as a change in bytes: 0.2 -> "−20.0 %", -0.05 -> "+5.0 %"."""
    if share is None:
        return "–"
    return f"{'−' if share >= 0 else '+'}{abs(share) * 100:.1f} %"


def _mark(value: float | None, target: float, *, at_most: bool = False) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= target if at_most else value >= target) else "not met"


def _rounds(values: list[float] | None) -> str:
    return ", ".join(f"{value:.2f}" for value in values or [])


def _get(data: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def mozjpeg_verdict(renditions: dict[str, Any] | None) -> tuple[bool | None, float | None]:
    """(worth it?, bytes saved per CPU added), from the 12 MP photo's interleaved rounds."""
    saved = _get(renditions, "mozjpeg", "saved_share")
    over = _get(renditions, "mozjpeg", "over_jpeg_ladder", "cpu")
    if saved is None or over is None or over <= 0:
        return None, None
    rate = saved / over
    return rate >= MOZJPEG_BYTES_PER_CPU, rate


def target_rows(
    results: dict[str, dict[str, Any] | None], *, pipeline_row: bool = True
) -> list[tuple[str, str, Any, str]]:
    """(target, wanted, measured, status) of the images' targets; without ``pipeline_row`` the
    pipeline's, which bench/report.py's own table already has."""
    renditions, pipeline = results.get("renditions"), results.get("pipeline")
    ladder = _get(renditions, "ladder", "jpeg_ladder_over_compress", "cpu")
    vips = _get(renditions, "vips", "vips_over_ours", "jpeg", "cpu")
    ratio = _get(pipeline, "ratio") if _get(pipeline, "renditions") else None
    rows = [
        (
            "Default JPEG ladder vs `compress()`'s single 1600 px JPEG, CPU (12 MP photo)",
            f"≤ {LADDER_TARGET}×",
            ladder,
            _mark(ladder, LADDER_TARGET, at_most=True),
        ),
        (
            "libvips's JPEG ladder vs ours, CPU (same file, same qualities, one thread)",
            f"≥ {VIPS_JPEG_TARGET}×",
            vips,
            _mark(vips, VIPS_JPEG_TARGET),
        ),
    ]
    if pipeline_row:
        rows.append(
            (
                "Pipeline with the default set vs compress-only producing the same set",
                f"≥ {PIPELINE_SET_TARGET}×",
                ratio,
                _mark(ratio, PIPELINE_SET_TARGET),
            )
        )
    formats = _get(renditions, "efficiency", "formats") or {}
    for fmt in ("webp", "avif"):
        entry = formats.get(fmt)
        meets = None if entry is None else entry.get("default_meets")
        quality = _get(entry, "default", "quality")
        rows.append(
            (
                f"{FORMAT_NAMES[fmt]} default quality ({quality if quality else '?'}): mean SSIM"
                " ≥ JPEG q80's on the corpus",
                "yes",
                None if meets is None else ("yes" if meets else "no"),
                "not measured" if meets is None else ("met" if meets else "not met"),
            )
        )
    return rows


def measured_cell(value: Any) -> str:
    """A target's measured value as its table shows it: a ratio with ×, a word as it is."""
    if value is None or isinstance(value, str):
        return "–" if value is None else value
    return f"{value:.2f}×"


def targets_table(results: dict[str, dict[str, Any] | None]) -> list[str]:
    lines = ["| target | wanted | measured | status |", "|---|---|---:|---|"]
    for name, wanted, value, status in target_rows(results):
        measured = measured_cell(value)
        lines.append(f"| {name} | {wanted} | {measured} | {status} |")
    return [*lines, ""]


def _ladder_lines(renditions: dict[str, Any]) -> list[str]:
    ladder = renditions.get("ladder")
    if not ladder:
        return ["Ladder cost: not measured.", ""]
    times = ladder["times"]
    sizes = ", ".join(str(s) for s in ladder.get("sizes", []))
    qualities = ladder.get("qualities", {})
    lines = [
        "### Ladder cost: one source, every size",
        "",
        f"`{ladder['source']}` ({ladder['source_bytes'] / 1e6:.1f} MB). `render()` of the"
        f" default ladder ({sizes} px) in one format a row, against `compress()`'s single"
        f" {ladder.get('compress_size', ['?'])[-1]} px JPEG; {ladder['rounds']} interleaved"
        " rounds (order rotating), medians. CPU is the working process's time (all threads),"
        " the figure compared; wall time shows how busy the machine was. × compress() is the"
        " median of the per-round ratios.",
        "",
        "| per source | quality | CPU (ms) | wall (ms) | × compress() (CPU) | bytes, all sizes |",
        "|---|---:|---:|---:|---:|---:|",
        f"| `compress()`: one 1600 px JPEG | {qualities.get('jpeg', '?')}"
        f" | {_num(times['compress']['cpu_ms'], '{:.0f}')}"
        f" | {_num(times['compress']['wall_ms'], '{:.0f}')} | 1.00× |"
        f" {ladder.get('compress_bytes', 0):,} |",
    ]
    for fmt in ("jpeg", "webp", "avif"):
        entry = times.get(f"ladder_{fmt}")
        if entry is None:
            continue
        over = _get(ladder, "over_compress", fmt, "cpu")
        extra = f", speed {ladder.get('avif_speed')}" if fmt == "avif" else ""
        lines.append(
            f"| {FORMAT_NAMES[fmt]} ladder | {qualities.get(fmt, '?')}{extra}"
            f" | {_num(entry['cpu_ms'], '{:.0f}')} | {_num(entry['wall_ms'], '{:.0f}')}"
            f" | {_num(over)}× | {sum(ladder['bytes'].get(fmt, [])):,} |"
        )
    jpeg = ladder.get("jpeg_ladder_over_compress") or {}
    set_ms = sum(
        times[f"ladder_{fmt}"]["cpu_ms"] for fmt in ("jpeg", "webp") if f"ladder_{fmt}" in times
    )
    lines += [
        "",
        f"- **JPEG ladder / `compress()`: {_num(jpeg.get('cpu'))}×** CPU (target ≤"
        f" {LADDER_TARGET}×: {_mark(jpeg.get('cpu'), LADDER_TARGET, at_most=True)}; rounds:"
        f" {_rounds(jpeg.get('cpu_rounds'))}); wall {_num(jpeg.get('wall'))}×.",
        f"- The worker's default set (JPEG + WebP ladders from one decode) costs at most the two"
        f" ladders' sum, {_num(set_ms, '{:.0f}')} ms CPU per source (one decode fewer).",
        "",
    ]
    return lines


def _vips_lines(renditions: dict[str, Any]) -> list[str]:
    vips, ladder = renditions.get("vips"), renditions.get("ladder")
    if not vips or not ladder:
        return ["libvips: not measured.", ""]
    about = vips.get("about", {})
    parity = renditions.get("parity") or {}
    lines = [
        "### Against libvips",
        "",
        f"libvips {about.get('libvips', '?')} (pyvips {about.get('pyvips', '?')}, pyvips-binary"
        f" {about.get('pyvips_binary', '?')}) in its own process under bench/.venv-vips,"
        f" VIPS_CONCURRENCY={vips.get('concurrency', '?')} and its operation cache off, in the"
        " same rounds as ours: `thumbnail_buffer` for 1600 px, each smaller size by"
        " `thumbnail_image` from the one above (made once into memory), `jpegsave`"
        " (optimised Huffman, progressive from 1024 px) / `webpsave` (effort 4) at the same"
        " qualities, no metadata. SSIM of both on the same references (the 12 MP photo resized"
        " with LANCZOS), when the efficiency test ran.",
        "",
        "| ladder | ours CPU (ms) | libvips CPU (ms) | **libvips / ours** (CPU) | wall |"
        " bytes ours | bytes libvips | SSIM ours | SSIM libvips |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fmt, ratio in vips.get("vips_over_ours", {}).items():
        ours_ms = ladder["times"][f"ladder_{fmt}"]["cpu_ms"]
        theirs_ms = ladder["times"][f"vips_{fmt}"]["cpu_ms"]
        lines.append(
            f"| {FORMAT_NAMES[fmt]} | {_num(ours_ms, '{:.0f}')} | {_num(theirs_ms, '{:.0f}')}"
            f" | **{_num(ratio['cpu'])}×** | {_num(ratio['wall'])}×"
            f" | {sum(ladder['bytes'][fmt]):,} | {sum(vips['bytes'][fmt]):,}"
            f" | {_num(_get(parity, f'ours_{fmt}', 'mean_ssim'), '{:.4f}')}"
            f" | {_num(_get(parity, f'vips_{fmt}', 'mean_ssim'), '{:.4f}')} |"
        )
    jpeg = vips.get("vips_over_ours", {}).get("jpeg", {})
    lines += [
        "",
        f"- JPEG target ≥ {VIPS_JPEG_TARGET}×: {_mark(jpeg.get('cpu'), VIPS_JPEG_TARGET)}"
        f" (rounds: {_rounds(jpeg.get('cpu_rounds'))}).",
        "",
    ]
    return lines


def _mozjpeg_lines(renditions: dict[str, Any]) -> list[str]:
    moz = renditions.get("mozjpeg")
    if not moz:
        return ["mozjpeg: not measured.", ""]
    worth, rate = mozjpeg_verdict(renditions)
    over = _get(moz, "over_jpeg_ladder", "cpu")
    corpus = _get(renditions, "efficiency", "mozjpeg_saved_share")
    verdict = "not measured" if worth is None else ("adopt" if worth else "do not adopt")
    times = _get(renditions, "ladder", "times") or {}
    set_ms = sum(_get(times, f"ladder_{fmt}", "cpu_ms") or 0 for fmt in ("jpeg", "webp"))
    moz_ms = _get(times, "mozjpeg", "cpu_ms")
    over_set = moz_ms / set_ms if moz_ms is not None and set_ms else None
    before, after = moz.get("bytes_before", []), moz.get("bytes_after", [])
    return [
        "### Lossless mozjpeg pass on the JPEG outputs",
        "",
        f"`mozjpeg-lossless-optimization` {moz.get('version', '?')} over the four JPEGs of the"
        " photo's ladder, timed in the same rounds (the same pixels after it: checked).",
        "",
        "| | |",
        "|---|---:|",
        f"| bytes of the photo's JPEG ladder | {sum(before):,} → {sum(after):,}"
        f" (**{_saving(moz.get('saved_share'))}**) |",
        f"| bytes of the corpus's JPEG renditions (q80) | {_saving(corpus)} |",
        f"| CPU added, × the JPEG ladder's own | **+{_pct(over)}** (rounds:"
        f" {_rounds(_get(moz, 'over_jpeg_ladder', 'cpu_rounds'))}) |",
        f"| CPU added, × the default set's (JPEG + WebP ladders) | +{_pct(over_set)} |",
        f"| bytes saved per CPU added (worth it from {MOZJPEG_BYTES_PER_CPU}) | {_num(rate, '{:.3f}')} |",
        f"| **verdict** | **{verdict}** |",
        "",
    ]


def _format_row(fmt: str, entry: dict[str, Any], jpeg_bytes: float) -> str:
    default = entry["default"]
    lowest = entry.get("lowest_meeting")
    equal = entry.get("at_equal_quality") or {}
    if fmt == "jpeg":
        return (
            f"| JPEG | {default['quality']} | {default['mean_bytes']:,.0f} |"
            f" {default['mean_ssim']:.4f} | – | (the target) | – | – |"
        )
    meets = "yes" if entry.get("default_meets") else "**no**"
    exact = "" if entry.get("exact") else f" (≈ {_num(entry.get('interpolated'), '{:.0f}')})"
    return (
        f"| {FORMAT_NAMES[fmt]} | {default['quality']} | {default['mean_bytes']:,.0f}"
        f" ({_saving(entry.get('saved_share_at_default'))}) | {default['mean_ssim']:.4f}"
        f" | {meets} | {lowest if lowest is not None else '–'}{exact}"
        f" | {_num(equal.get('mean_bytes'), '{:,.0f}')}"
        f" | **{_saving(entry.get('saved_share_at_equal_quality'))}** |"
    )


def _largest(efficiency: dict[str, Any]) -> str:
    for entry in efficiency["formats"].values():
        if "largest" in entry:
            return str(entry["largest"]["size"])
    return "largest"


def _efficiency_lines(renditions: dict[str, Any]) -> list[str]:
    efficiency = renditions.get("efficiency")
    if not efficiency:
        return ["Efficiency: not measured.", ""]
    formats = efficiency["formats"]
    jpeg_bytes = formats["jpeg"]["default"]["mean_bytes"]
    corpus = ", ".join(f"{c['name']} {c['width']}×{c['height']}" for c in efficiency["corpus"])
    search = (
        "bisection to the exact quality"
        if efficiency.get("bisected")
        else "the first bracket only (quick mode), the crossing interpolated"
    )
    lines = [
        "### Efficiency: bytes at equal quality",
        "",
        f"Corpus (testkit/photo_corpus.py, JPEG q92 sources): {corpus}. Every rendition of the"
        f" default ladder; {efficiency['metric']}, against the {efficiency['reference']}."
        f" Target: JPEG q80's mean SSIM, **{efficiency['target_ssim']:.4f}** (over its"
        f" {_largest(efficiency)} px renditions alone:"
        f" {_num(efficiency.get('target_ssim_largest'), '{:.4f}')}). WebP and AVIF are"
        f" searched from their defaults in steps of 8, then {search}.",
        "",
        "| format | default q | mean bytes / rendition (vs JPEG) | mean SSIM | default meets JPEG"
        " | lowest q meeting it | mean bytes there | saved vs JPEG at equal SSIM |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    lines += [
        _format_row(fmt, formats[fmt], jpeg_bytes)
        for fmt in ("jpeg", "webp", "avif")
        if fmt in formats
    ]
    lines += ["", *_recommendation(formats), ""]
    lines += _by_size_lines(formats)
    lines += [
        "Measured points (mean over the corpus):",
        "",
        "| format | q | mean bytes | mean SSIM |",
        "|---|---:|---:|---:|",
    ]
    for fmt in ("webp", "avif"):
        for point in formats.get(fmt, {}).get("sweep", []):
            lines.append(
                f"| {FORMAT_NAMES[fmt]} | {point['quality']} | {point['mean_bytes']:,.0f}"
                f" | {point['mean_ssim']:.4f} |"
            )
    return [*lines, ""]


def _verdict(name: str, entry: dict[str, Any], what: str) -> str:
    """One format's default against JPEG q80 over ``what`` (every rendition, or one size)."""
    default = entry["default_quality"]
    lowest = entry.get("lowest_meeting")
    exact = (
        "" if entry.get("exact") else f" (bracketed, ≈ {_num(entry.get('interpolated'), '{:.0f}')})"
    )
    if lowest is None:
        return f"- {name}, {what}: no quality measured reaches JPEG q80's SSIM."
    if not entry.get("default_meets"):
        return (
            f"- {name}, {what}: the default {default} falls **short** of JPEG q80's SSIM; the"
            f" lowest quality that reaches it is {lowest}{exact}, {_saving(entry.get('saved_share_at_equal_quality'))}"
            " bytes against JPEG there."
        )
    if lowest < default:
        return (
            f"- {name}, {what}: the default {default} meets JPEG q80's SSIM with room; {lowest}{exact}"
            f" is the lowest that still does ({_saving(entry.get('saved_share_at_equal_quality'))}"
            f" bytes against JPEG, {_saving(entry.get('saved_share_at_default'))} at {default})."
        )
    return f"- {name}, {what}: the default {default} meets JPEG q80's SSIM."


def _recommendation(formats: dict[str, Any]) -> list[str]:
    lines = []
    for fmt in ("webp", "avif"):
        entry = formats.get(fmt)
        if not entry:
            continue
        name = FORMAT_NAMES[fmt]
        lines.append(
            _verdict(
                name, {**entry, "default_quality": entry["default"]["quality"]}, "every rendition"
            )
        )
        largest = entry.get("largest")
        if largest:
            lines.append(_verdict(name, largest, f"{largest['size']} px renditions only"))
    return lines


def _by_size_lines(formats: dict[str, Any]) -> list[str]:
    present = [fmt for fmt in ("jpeg", "webp", "avif") if fmt in formats]
    sizes = list(formats["jpeg"]["default"].get("by_size", {}))
    if not sizes:
        return []
    header = " | ".join(f"{FORMAT_NAMES[f]} q{formats[f]['default']['quality']}" for f in present)
    lines = [
        "At the default qualities, by size (mean bytes / mean SSIM):",
        "",
        f"| longest side | {header} |",
        "|---:|" + "---:|" * len(present),
    ]
    for size in sizes:
        cells = []
        for fmt in present:
            entry = formats[fmt]["default"].get("by_size", {}).get(size)
            jpeg = formats["jpeg"]["default"].get("by_size", {}).get(size)
            if entry is None:
                cells.append("–")
                continue
            ssim = f"{entry['mean_ssim']:.4f}"
            if jpeg is not None and entry["mean_ssim"] < jpeg["mean_ssim"]:
                ssim = f"**{ssim}** (below JPEG)"
            cells.append(f"{entry['mean_bytes']:,.0f} / {ssim}")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _pipeline_lines(pipeline: dict[str, Any] | None) -> list[str]:
    if not pipeline:
        return ["Pipeline: not measured.", ""]
    breakdown = pipeline.get("breakdown", {})
    per_image = breakdown.get("supervisor_cpu_ms_per_image")
    produced = pipeline.get("renditions")
    lines = ["### Pipeline with the default set", ""]
    if not produced:
        lines.append("The pipeline benchmark ran without renditions (compress only).")
    else:
        lines.append(
            f"`run_workers.py --processes {pipeline.get('processes', '?')}`, every source"
            f" rendered as {produced}, against a compress-only pool of the same processes"
            " rendering the same set (`render()`, the worker's options), same run:"
            f" **{_num(pipeline.get('ratio'))}×** (target ≥ {PIPELINE_SET_TARGET}×:"
            f" {_mark(pipeline.get('ratio'), PIPELINE_SET_TARGET)})."
        )
    lines += [
        "",
        f"- Supervisor CPU per source image: **{_num(per_image, '{:.1f}')} ms**"
        f" ({_num(breakdown.get('supervisor_cpu_s'))} s over {pipeline.get('images', '?')}"
        " images: download, upload, database, Kafka, passing the outputs out of the pool).",
        "",
    ]
    return lines


def section(results: dict[str, dict[str, Any] | None]) -> list[str]:
    """The report's images section: {"renditions": renditions.json, "pipeline": pipeline.json},
    either None when not measured."""
    renditions = results.get("renditions")
    lines = ["## Images: renditions, formats, libvips", ""]
    lines += targets_table(results)
    if renditions is None:
        lines += ["No results (bench/results/renditions.json is missing).", ""]
    else:
        lines += _ladder_lines(renditions)
        lines += _vips_lines(renditions)
        lines += _efficiency_lines(renditions)
        lines += _mozjpeg_lines(renditions)
    return [*lines, *_pipeline_lines(results.get("pipeline"))]
