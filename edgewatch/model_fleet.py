"""Core room: the model fleet's statistics and rules, as pure functions.

Which version runs where, canary against stable (Mann-Whitney U with an effect size), drift
of a device's confidence against its own baseline (population stability index) and model
integrity (a device's model hash against its release). Values in, frozen dataclasses out: the
dashboard's Models page and the alerter's `model_drift` / `model_integrity` rules call the
same functions, so what the page lists is what the rules raise. No I/O, no clock.

The decisions (test, thresholds, integrity rule) are in docs/architecture.md, "Model fleet".
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgewatch.labels import effective_labels, label_overlays
from edgewatch.labels import matches as label_matches
from edgewatch.schema import parse_labels_text

# Canary against stable: below this many devices on either side, say so instead of a p-value.
# The normal approximation of U is poor for tiny samples and 3 against 3 cannot reach
# p < 0.05 two-sided in any case (the smallest exact p is 0.1).
MIN_DEVICES_PER_GROUP = 4
SIGNIFICANCE_LEVEL = 0.05

# Drift: PSI over 10 equal-width bins of confidence on [0, 1]. 0.1 is the usual "moderate
# shift", 0.2 the usual "significant shift" (credit-scoring practice, also Edge Impulse's
# and most model-monitoring tools' default); a device is drifting at PSI >= 0.2.
PSI_BINS = 10
PSI_THRESHOLD = 0.2
# A bin with no values gets this share instead of 0, so the logarithm stays finite.
PSI_EMPTY_BIN_SHARE = 1e-4
# Fewer values than this in either window (readings, or windowed means on a long range): no
# verdict for that device (which is not "not drifting").
MIN_READINGS_PER_WINDOW = 5


@dataclass(frozen=True, slots=True)
class MannWhitney:
    """Mann-Whitney U of sample a against sample b, normal approximation with tie correction.

    `u` is U of a (the number of pairs where a is larger, ties counting one half);
    `cliffs_delta` is P(a > b) - P(a < b), in -1..1 (equal to the rank-biserial correlation):
    positive when a tends to be larger.
    """

    n_a: int
    n_b: int
    u: float
    z: float
    p_value: float
    cliffs_delta: float


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) of `values`, and the sizes of the groups of ties."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties: list[int] = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        average = (start + end) / 2 + 1
        for position in range(start, end + 1):
            ranks[order[position]] = average
        ties.append(end - start + 1)
        start = end + 1
    return ranks, ties


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U test (normal approximation, tie and continuity corrected).

    The same figures as `scipy.stats.mannwhitneyu(a, b, method="asymptotic")`.
    """
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        raise ValueError("both samples need at least one value")
    ranks, ties = _ranks([*a, *b])
    rank_sum_a = sum(ranks[:n_a])
    u_a = rank_sum_a - n_a * (n_a + 1) / 2
    n = n_a + n_b
    mean_u = n_a * n_b / 2
    tie_term = sum(t**3 - t for t in ties)
    variance = n_a * n_b / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        # Every value equal: no evidence of any difference.
        return MannWhitney(n_a, n_b, u_a, 0.0, 1.0, 0.0)
    # Continuity correction towards the mean, as scipy does.
    z = (abs(u_a - mean_u) - 0.5) / math.sqrt(variance)
    z = max(z, 0.0) * (1 if u_a >= mean_u else -1)
    p_value = min(1.0, math.erfc(abs(z) / math.sqrt(2)))
    cliffs = 2 * u_a / (n_a * n_b) - 1
    return MannWhitney(n_a, n_b, u_a, z, p_value, cliffs)


def effect_size_words(delta: float) -> str:
    """Romano et al.'s thresholds for |Cliff's delta|: 0.147, 0.33, 0.474."""
    size = abs(delta)
    if size < 0.147:
        return "negligible"
    if size < 0.33:
        return "small"
    if size < 0.474:
        return "medium"
    return "large"


@dataclass(frozen=True, slots=True)
class Comparison:
    """One metric of group a against group b, on per-device values, with a verdict in words."""

    metric: str
    n_a: int
    n_b: int
    median_a: float | None
    median_b: float | None
    test: MannWhitney | None
    verdict: str

    @property
    def enough_data(self) -> bool:
        return self.test is not None


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def compare_groups(
    metric: str,
    a_name: str,
    a: Sequence[float],
    b_name: str,
    b: Sequence[float],
    *,
    min_devices: int = MIN_DEVICES_PER_GROUP,
) -> Comparison:
    """Compare one metric's per-device values of two groups and say what it means."""
    median_a, median_b = _median(a), _median(b)
    if len(a) < min_devices or len(b) < min_devices:
        verdict = (
            f"too little data to tell: {a_name} has {len(a)} device(s), {b_name} {len(b)}; "
            f"the comparison needs at least {min_devices} on each side"
        )
        return Comparison(metric, len(a), len(b), median_a, median_b, None, verdict)
    test = mann_whitney_u(a, b)
    if test.p_value < SIGNIFICANCE_LEVEL:
        direction = "higher" if test.cliffs_delta > 0 else "lower"
        verdict = (
            f"{metric} of {a_name} is {direction} than {b_name} "
            f"(Mann-Whitney U={test.u:g}, p={test.p_value:.3g}, "
            f"Cliff's delta={test.cliffs_delta:+.2f}, {effect_size_words(test.cliffs_delta)})"
        )
    else:
        verdict = (
            f"no significant difference in {metric} between {a_name} and {b_name} "
            f"(Mann-Whitney U={test.u:g}, p={test.p_value:.3g}, "
            f"Cliff's delta={test.cliffs_delta:+.2f})"
        )
    return Comparison(metric, len(a), len(b), median_a, median_b, test, verdict)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation (numpy's default); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ---------------------------------------------------------------------------------- drift


# Bin upper edges as Flux's linearBins(start: 0.0, width: 0.1, count: 11) makes them, so a
# histogram counted in storage and one counted here put every value in the same bin.
PSI_UPPER_EDGES = tuple(0.0 + i * (1.0 / PSI_BINS) for i in range(1, PSI_BINS + 1))


def bin_counts(values: Iterable[float]) -> list[int]:
    """Counts in the PSI bins, right-closed like Flux's histogram: (0.1 k, 0.1 (k + 1)]."""
    counts = [0] * PSI_BINS
    for value in values:
        counts[min(PSI_BINS - 1, bisect.bisect_left(PSI_UPPER_EDGES, value))] += 1
    return counts


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [max(count / total, PSI_EMPTY_BIN_SHARE) for count in counts]


def psi_from_counts(baseline: Sequence[int], recent: Sequence[int]) -> float:
    """PSI of the recent bin counts against the baseline's (same bins)."""
    if sum(baseline) == 0 or sum(recent) == 0:
        raise ValueError("both windows need at least one value")
    expected, actual = _shares(baseline), _shares(recent)
    return sum((a - e) * math.log(a / e) for a, e in zip(actual, expected, strict=True))


def population_stability_index(baseline: Sequence[float], recent: Sequence[float]) -> float:
    """PSI of `recent` against `baseline`, values in [0, 1] in `PSI_BINS` equal-width bins."""
    return psi_from_counts(bin_counts(baseline), bin_counts(recent))


@dataclass(frozen=True, slots=True)
class DriftResult:
    site: str
    device: str
    psi: float | None
    baseline_readings: int
    recent_readings: int
    # The upper edge of the bin holding the median (bin counts cannot say more).
    baseline_median: float | None
    recent_median: float | None

    @property
    def drifting(self) -> bool:
        return self.psi is not None and self.psi >= PSI_THRESHOLD


def device_drift(
    site: str,
    device: str,
    baseline: Sequence[int],
    recent: Sequence[int],
    *,
    min_readings: int = MIN_READINGS_PER_WINDOW,
) -> DriftResult:
    """One device's confidence drift from bin counts (`bin_counts`, or a Flux histogram).

    No PSI (no verdict) when a window holds fewer than `min_readings` values.
    """
    n_base, n_recent = sum(baseline), sum(recent)
    psi = None
    if n_base >= min_readings and n_recent >= min_readings:
        psi = psi_from_counts(baseline, recent)
    return DriftResult(
        site, device, psi, n_base, n_recent, _bin_median(baseline), _bin_median(recent)
    )


def _bin_median(counts: Sequence[int]) -> float | None:
    """The upper edge of the bin holding the median value (what bin counts can tell)."""
    total = sum(counts)
    if total == 0:
        return None
    running = 0
    for index, count in enumerate(counts):
        running += count
        if running * 2 >= total:
            return round(PSI_UPPER_EDGES[index], 2)
    return 1.0


# ------------------------------------------------------------------------------ integrity


@dataclass(frozen=True, slots=True)
class DeviceModel:
    """What a device last said it runs (its latest status)."""

    site: str
    device: str
    model: str
    version: str
    sha256: str | None
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class IntegrityFlag:
    site: str
    device: str
    model: str
    version: str
    sha256: str
    expected: str
    rule: str  # "release" (a registered release) or "majority" (the rest of the fleet)

    @property
    def message(self) -> str:
        against = "the registered release" if self.rule == "release" else "the fleet majority"
        return (
            f"{self.model} {self.version} on {self.site}/{self.device} has sha256 "
            f"{self.sha256[:12]}…, {against} has {self.expected[:12]}…"
        )


def integrity_flags(
    devices: Iterable[DeviceModel], releases: Mapping[tuple[str, str], str]
) -> list[IntegrityFlag]:
    """Devices whose model hash differs from their version's release, or from the majority.

    With a registered release (model, version) -> sha256, every other hash is flagged. With
    none, the hash most devices of that version report is taken as the reference, and only a
    strict majority counts: two devices that disagree prove nothing about which one is wrong.
    Devices that report no hash are not judged (a v1 device).
    """
    by_version: dict[tuple[str, str], list[DeviceModel]] = {}
    for device in devices:
        if device.sha256 is not None:
            by_version.setdefault((device.model, device.version), []).append(device)
    flags: list[IntegrityFlag] = []
    for key, members in sorted(by_version.items()):
        expected = releases.get(key)
        rule = "release"
        if expected is None:
            rule = "majority"
            (common, count), *_ = Counter(m.sha256 for m in members).most_common(1)
            if common is None or count * 2 <= len(members):
                continue
            expected = common
        flags.extend(
            IntegrityFlag(m.site, m.device, m.model, m.version, m.sha256, expected, rule)
            for m in members
            if m.sha256 is not None and m.sha256 != expected
        )
    return sorted(flags, key=lambda f: (f.site, f.device))


# ------------------------------------------------------------------------------- rollouts


@dataclass(frozen=True, slots=True)
class StatusPoint:
    """One stored status of a device: when it was received and the version it named."""

    ts_ns: int
    site: str
    device: str
    model: str
    version: str


@dataclass(frozen=True, slots=True)
class VersionChange:
    """A device moved from one version of its model to another (a rollout mark)."""

    ts_ns: int
    site: str
    device: str
    model: str
    from_version: str
    to_version: str


def version_changes(history: Iterable[StatusPoint]) -> list[VersionChange]:
    """Where a device's reported (model, version) changed, in time order."""
    last: dict[tuple[str, str], StatusPoint] = {}
    changes: list[VersionChange] = []
    for point in sorted(history, key=lambda p: (p.ts_ns, p.site, p.device)):
        key = (point.site, point.device)
        before = last.get(key)
        if before is not None and before.model == point.model and before.version != point.version:
            changes.append(
                VersionChange(
                    point.ts_ns,
                    point.site,
                    point.device,
                    point.model,
                    before.version,
                    point.version,
                )
            )
        last[key] = point
    return changes


def matches_labels(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """A device is in a label group when it carries every wanted key with its value."""
    return label_matches(labels, wanted)


# --------------------------------------------------------------------- stored rows, read
# What the dashboard and the alerter both read from InfluxDB (the same .flux files), turned
# into the values above: rows in, values out.

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One stored birth's model fields."""

    ts_ns: int
    site: str
    device: str
    model: str | None
    version: str | None
    sha256: str | None
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class OpsState:
    """What operators registered: releases and labels (the latest action wins)."""

    releases: dict[tuple[str, str], str] = field(default_factory=dict)
    # Per device, the operators' label overlay: key -> value, or None where one was removed.
    labels: dict[Key, dict[str, str | None]] = field(default_factory=dict)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def parse_history(rows: Iterable[Mapping[str, Any]]) -> list[StatusRow]:
    out = [
        StatusRow(
            ts_ns=int(row["time_ns"]),
            site=str(row["site"]),
            device=str(row["device"]),
            model=_text(row.get("model")),
            version=_text(row.get("model_version")),
            sha256=_text(row.get("model_sha256")),
            labels=parse_labels_text(row.get("labels")),
        )
        for row in rows
    ]
    return sorted(out, key=lambda r: (r.ts_ns, r.site, r.device))


def shadow_status_rows(rows: Iterable[Mapping[str, Any]]) -> list[StatusRow]:
    """Each device's current model fields from the device shadow (one row per device and
    writer, edgewatch.schema.shadow_line): the writer that described it last. What
    `inventory` needs, without reading every birth ever stored."""
    newest: dict[Key, Mapping[str, Any]] = {}
    for row in rows:
        if row.get("model") is None or row.get("described_received_ns") is None:
            continue
        key = (str(row["site"]), str(row["device"]))
        held = newest.get(key)
        if held is None or int(row["described_received_ns"]) > int(held["described_received_ns"]):
            newest[key] = row
    return parse_history(
        {**row, "time_ns": row["described_received_ns"]} for row in newest.values()
    )


def parse_ops(rows: Iterable[Mapping[str, Any]]) -> OpsState:
    """Releases by (model, version) and labels by device, oldest action first."""
    state = OpsState()
    label_rows: list[Mapping[str, Any]] = []
    for row in rows:
        if row.get("_measurement") == "release_action":
            sha = _text(row.get("sha256"))
            if sha:
                state.releases[(str(row["model"]), str(row["version"]))] = sha
        else:
            label_rows.append(row)
    state.labels.update(label_overlays(label_rows))
    return state


def inventory(history: Sequence[StatusRow], ops: OpsState) -> list[DeviceModel]:
    """Each device's latest model, version, hash, and labels (an operator's label wins)."""
    latest: dict[Key, StatusRow] = {}
    for row in history:
        if row.model is not None and row.version is not None:
            latest[(row.site, row.device)] = row
    return [
        DeviceModel(
            site=row.site,
            device=row.device,
            model=row.model or "",
            version=row.version or "",
            sha256=row.sha256,
            labels=effective_labels(row.labels, ops.labels.get(key)),
        )
        for key, row in sorted(latest.items())
    ]


def histogram_counts(cumulative: Mapping[float, float]) -> list[int]:
    """Flux's cumulative histogram (upper bound -> count) as counts per PSI bin.

    The bound 0.0 holds values <= 0, which belong to the first bin (0, 0.1] as in
    `bin_counts`; every other bound closes one bin.
    """
    bounds = sorted(cumulative)
    counts = [0] * PSI_BINS
    previous = 0.0
    for bound in bounds:
        index = max(0, min(PSI_BINS - 1, round(bound * PSI_BINS) - 1))
        counts[index] += int(cumulative[bound] - previous)
        previous = cumulative[bound]
    return counts


def drift_results(rows: Iterable[Mapping[str, Any]], keys: set[Key]) -> list[DriftResult]:
    """Per device: its recent third of the range against its first third (histogram rows)."""
    hist: dict[Key, dict[str, dict[float, float]]] = {}
    for row in rows:
        key = (str(row["site"]), str(row["device"]))
        if key in keys and row.get("_value") is not None:
            windows = hist.setdefault(key, {"baseline": {}, "recent": {}})
            windows.setdefault(str(row["window"]), {})[float(row["le"])] = float(row["_value"])
    return [
        device_drift(
            site,
            device,
            histogram_counts(windows["baseline"]),
            histogram_counts(windows["recent"]),
        )
        for (site, device), windows in sorted(hist.items())
    ]


# ------------------------------------------------------------------------ operators' input

_SHA256 = re.compile(r"[0-9a-f]{64}")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,255}")
MAX_LABEL_VALUE_CHARS = 64
LABEL_ACTIONS = ("set", "remove")


def validate_release(model: str, version: str, sha256: str, user: str) -> str:
    """Refuse a release registration that could not match any device; the normalised hash."""
    if not user:
        raise ValueError("a release is registered by a signed-in operator")
    if not _NAME.fullmatch(model) or not _NAME.fullmatch(version):
        raise ValueError("model and version: letters, digits and . _ + - (as devices report them)")
    digest = sha256.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise ValueError("sha256: 64 hex digits, e.g. the output of `sha256sum model.onnx`")
    return digest


def validate_label(key: str, value: str, action: str, user: str) -> None:
    """The same bounds as a device's own labels (contract v1.1)."""
    if not user:
        raise ValueError("a label is set by a signed-in operator")
    if action not in LABEL_ACTIONS:
        raise ValueError(f"label action must be one of {', '.join(LABEL_ACTIONS)}")
    if not _LABEL_KEY.fullmatch(key):
        raise ValueError("label key: a lowercase letter, then up to 31 of a-z, 0-9 and _")
    if action == "set" and not 0 < len(value) <= MAX_LABEL_VALUE_CHARS:
        raise ValueError(f"label value: 1 to {MAX_LABEL_VALUE_CHARS} characters")
