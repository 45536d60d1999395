"""Reports of simulation runs: tables (Markdown and CSV), plots (PNG), and comparisons.

:func:`write_report` reads a run directory (``manifest.json`` and ``events.jsonl``, see
:mod:`simnet.runner`) and writes:

* ``summary.json`` (every figure), ``summary.md`` (the tables), ``summary.csv`` (metric,
  value), ``by_class.csv`` (discovery per node class), ``bootstrap.csv`` (load per bootstrap
  server);
* ``figures/latency_cdf.png`` (discovery and publish-to-deliver latency CDFs),
  ``figures/delivery_over_time.png`` (delivery ratio by publish time, timed events marked),
  ``figures/load_hist.png`` (connections and bytes sent per node, bootstrap servers marked).

:func:`compare_runs` puts two runs side by side: ``compare.md``, ``compare.csv`` and
``compare_cdf.png`` with both runs' latency CDFs.  Plots need matplotlib (``pip install
'dndm-p2p[sim]'``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from protocols.errors import ConfigError
from simnet.metrics import RunData, load_events, summarize

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["HEADLINE", "compare_runs", "format_value", "load_run", "write_report"]

#: The figures of the headline table: (key, label, unit); unit ``%`` shows ratios as percent.
HEADLINE: Final = (
    ("nodes", "nodes", ""),
    ("virtual_s", "virtual seconds", "s"),
    ("wall_s", "wall seconds", "s"),
    ("speedup", "speed-up over real time (whole run)", "x"),
    ("speedup_steady", "speed-up over real time (steady state)", "x"),
    ("peak_rss_mb", "peak RSS", "MB"),
    ("peak_rss_per_node_mb", "peak RSS per node", "MB"),
    ("join_s_p50", "node start (join) p50", "s"),
    ("join_s_p95", "node start (join) p95", "s"),
    ("subscriptions", "subscriptions", ""),
    ("discovery_success", "discovery success", "%"),
    ("discovery_s_p50", "discovery (subscribe to first message) p50", "s"),
    ("discovery_s_p95", "discovery p95", "s"),
    ("discovery_s_p99", "discovery p99", "s"),
    ("link_s_p50", "subscribe to first link p50", "s"),
    ("delivery_ratio_all", "delivery ratio (all pairs)", "%"),
    ("delivery_ratio_steady", "delivery ratio (subscriptions past the discovery window)", "%"),
    ("delivery_ratio_linked", "delivery ratio (pairs linked at publish time)", "%"),
    ("delivery_s_p50", "publish to deliver p50", "s"),
    ("delivery_s_p95", "publish to deliver p95", "s"),
    ("delivery_s_p99", "publish to deliver p99", "s"),
    ("delivery_s_max", "publish to deliver max", "s"),
    ("publishes", "messages published", ""),
    ("duplicates", "duplicate deliveries", ""),
    ("bytes_out_mean", "bytes sent per node (mean)", "B"),
    ("bytes_out_p95", "bytes sent per node (p95)", "B"),
    ("conns_mean", "connections per node (mean)", ""),
    ("conns_max", "connections per node (max)", ""),
    ("rt_mean", "routing-table size (mean)", ""),
    ("rt_p5", "routing-table size (p5)", ""),
    ("rt_empty", "empty routing tables", ""),
    ("dht_lookups", "DHT lookups", ""),
    ("dht_streams_per_op", "DHT streams per DHT operation", ""),
    ("dht_lookup_s_mean", "DHT lookup seconds (mean)", "s"),
    ("dials_failed", "failed dials", ""),
    ("crashes", "node crashes", ""),
    ("kills", "nodes killed", ""),
    ("restarts", "node restarts", ""),
)


def load_run(run_dir: Path) -> tuple[dict[str, Any], RunData]:
    """A run's manifest and its computed data (summary included)."""
    manifest_file = run_dir / "manifest.json"
    events_file = run_dir / "events.jsonl"
    if not manifest_file.exists() or not events_file.exists():
        raise ConfigError(f"{run_dir} is not a simulation run (no manifest.json/events.jsonl)")
    manifest = json.loads(manifest_file.read_text())
    workload = manifest.get("scenario_config", {}).get("workload", {})
    window = float(workload.get("discovery_window", 20.0))
    data = summarize(load_events(events_file), discovery_window=window)
    summary = data.summary
    for key in ("nodes", "wall_s", "cpu_s", "speedup", "peak_rss_mb", "peak_rss_per_node_mb"):
        summary[key] = manifest.get(key)
    steady = manifest.get("phases", {}).get("steady->end")
    summary["speedup_steady"] = steady["speedup"] if steady else None
    summary["scenario"] = manifest.get("scenario")
    summary["seed"] = manifest.get("seed")
    summary["config_hash"] = manifest.get("config_hash")
    return manifest, data


def format_value(value: Any, unit: str) -> str:
    """``value`` for a table: ``%`` as percent, ``B`` as bytes, ``x`` as a speed-up."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞"
    if unit == "%":
        return f"{100 * value:.2f} %"
    if unit == "B":
        return _bytes(float(value))
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
        return f"{text} {unit}".strip() if unit not in ("", "x") else text + unit
    return f"{value:,}" if isinstance(value, int) else str(value)


def _bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def write_report(run_dir: Path) -> dict[str, Any]:
    """Write the tables and plots of the run in ``run_dir``; return its summary."""
    manifest, data = load_run(run_dir)
    summary = data.summary
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    with (run_dir / "summary.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["metric", "value"])
        for key, value in summary.items():
            if not isinstance(value, dict | list):
                writer.writerow([key, "" if value is None else value])
    by_class = summary["discovery_by_class"]
    with (run_dir / "by_class.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["class", "eligible", "succeeded", "success"])
        for cls, row in by_class.items():
            writer.writerow([cls, row["eligible"], row["succeeded"], row["success"]])
    boots = summary["bootstrap"]
    columns = ["node", "peak_conns", "conns", "bytes_out", "bytes_in", "dials_in", "kad_in"]
    with (run_dir / "bootstrap.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in boots:
            writer.writerow([row[c] for c in columns])
    parts = [
        f"# simnet run: {manifest['scenario']} ({manifest['nodes']} nodes, seed "
        f"{manifest['seed']})",
        "",
        f"Config hash `{manifest['config_hash']}`; versions "
        + ", ".join(f"{k} {v}" for k, v in manifest["versions"].items())
        + (f". **Aborted: {manifest['aborted']}**" if manifest.get("aborted") else "."),
        "",
        _markdown_table(
            ["metric", "value"],
            [[label, format_value(summary.get(key), unit)] for key, label, unit in HEADLINE],
        ),
        "",
        "## Phases",
        "",
        _markdown_table(
            ["phase", "virtual s", "wall s", "CPU s", "speed-up"],
            [
                [
                    name,
                    format_value(p["virtual_s"], ""),
                    format_value(p["wall_s"], ""),
                    format_value(p["cpu_s"], ""),
                    format_value(p["speedup"], "x"),
                ]
                for name, p in manifest["phases"].items()
            ],
        ),
        "",
        "## Discovery by node class",
        "",
        _markdown_table(
            ["class", "subscriptions", "succeeded", "success"],
            [
                [cls, str(r["eligible"]), str(r["succeeded"]), format_value(r["success"], "%")]
                for cls, r in by_class.items()
            ],
        ),
        "",
        "## Bootstrap servers",
        "",
        _markdown_table(
            [
                "node",
                "peak connections",
                "connections at end",
                "sent",
                "received",
                "dials in",
                "DHT streams served",
            ],
            [
                [
                    str(r["node"]),
                    format_value(r["peak_conns"], ""),
                    format_value(r["conns"], ""),
                    _bytes(r["bytes_out"]),
                    _bytes(r["bytes_in"]),
                    str(r["dials_in"]),
                    str(r["kad_in"]),
                ]
                for r in boots
            ],
        ),
        "",
        "![latency CDFs](figures/latency_cdf.png) "
        "![delivery over time](figures/delivery_over_time.png) "
        "![load](figures/load_hist.png)",
        "",
    ]
    (run_dir / "summary.md").write_text("\n".join(parts))
    _plot_run(run_dir / "figures", str(manifest["scenario"]), data)
    return summary


# -- plots ----------------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "plots need matplotlib: pip install 'dndm-p2p[sim]' (or matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cdf(axes: Axes, values: Sequence[float], label: str, **style: Any) -> None:
    if not values:
        return
    ordered = sorted(values)
    n = len(ordered)
    axes.plot(ordered, [(i + 1) / n for i in range(n)], label=f"{label} (n={n})", **style)


def _plot_run(figures: Path, title: str, data: RunData) -> None:
    plt = _pyplot()
    figures.mkdir(exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    _cdf(left, data.discovery, "subscriptions")
    left.set(xlabel="subscribe to first message (virtual s)", ylabel="CDF", title="discovery")
    _cdf(right, data.delivery, "deliveries")
    right.set(xlabel="publish to deliver (virtual s)", title="delivery latency")
    if data.delivery:
        right.set_xscale("log")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.set_ylim(0, 1.02)
        if axes.lines:
            axes.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(figures / "latency_cdf.png", dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(figsize=(10, 3.4))
    if data.ratio_bins:
        xs = [t for t, _, _ in data.ratio_bins]
        ys = [ok / n if n else math.nan for _, n, ok in data.ratio_bins]
        axes.step(xs, ys, where="post", label="delivered / expected")
    labelled: set[str] = set()
    for t, label in data.marks:
        if label in ("start", "end"):
            continue
        color = "tab:gray" if label in ("joined", "workload", "steady") else "tab:red"
        text = label if label not in labelled else None
        labelled.add(label)
        axes.axvline(t, color=color, linestyle="--", linewidth=0.8, alpha=0.7)
        if text is not None:
            axes.text(t, 1.04, text, rotation=90, fontsize=7, va="bottom", ha="center")
    axes.set(xlabel="virtual time of publish (s)", ylabel="delivery ratio", ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    fig.suptitle(f"{title}: delivery ratio over time", y=0.995)
    fig.tight_layout()
    fig.savefig(figures / "delivery_over_time.png", dpi=80)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    regular = [n for n in data.nodes if not n["boot"]]
    boots = [n for n in data.nodes if n["boot"]]
    left.hist([n["conns"] for n in regular], bins=30, color="tab:blue", label="nodes")
    for n in boots:
        left.axvline(n["conns"], color="tab:red", linestyle="--", label="bootstrap")
    left.set(xlabel="connections at end", ylabel="nodes", title="connections per node")
    right.hist([n["bytes_out"] / 1e3 for n in regular], bins=30, color="tab:green")
    for n in boots:
        right.axvline(n["bytes_out"] / 1e3, color="tab:red", linestyle="--")
    right.set(xlabel="KB sent", title="bytes sent per node (bootstrap: red)")
    handles, labels = left.get_legend_handles_labels()
    if handles:
        unique = dict(zip(labels, handles, strict=True))
        left.legend(unique.values(), unique.keys(), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(figures / "load_hist.png", dpi=80)
    plt.close(fig)


# -- comparison -----------------------------------------------------------------------------


def _delta(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or isinstance(a, bool):
        return ""
    if a == 0 or not math.isfinite(a) or not math.isfinite(b):
        return ""
    return f"{100 * (b - a) / abs(a):+.1f} %"


def compare_runs(run_a: Path, run_b: Path, out_dir: Path) -> Path:
    """Write ``compare.md``, ``compare.csv`` and ``compare_cdf.png`` for two runs into
    ``out_dir``; returns the Markdown file."""
    _, data_a = load_run(run_a)
    _, data_b = load_run(run_b)
    a, b = data_a.summary, data_b.summary
    out_dir.mkdir(parents=True, exist_ok=True)
    name_a, name_b = run_a.name, run_b.name
    rows = []
    with (out_dir / "compare.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["metric", name_a, name_b, "change"])
        for key, label, unit in HEADLINE:
            va, vb = a.get(key), b.get(key)
            shown_a, shown_b = ("" if v is None else v for v in (va, vb))
            writer.writerow([key, shown_a, shown_b, _delta(va, vb)])
            rows.append([label, format_value(va, unit), format_value(vb, unit), _delta(va, vb)])
    text = "\n".join(
        [
            f"# simnet comparison: {name_a} vs {name_b}",
            "",
            f"A: {a.get('scenario')} seed {a.get('seed')} (`{a.get('config_hash')}`); "
            f"B: {b.get('scenario')} seed {b.get('seed')} (`{b.get('config_hash')}`).",
            "",
            _markdown_table(["metric", "A", "B", "B vs A"], rows),
            "",
            "![latency CDFs](compare_cdf.png)",
            "",
        ]
    )
    target = out_dir / "compare.md"
    target.write_text(text)
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for data, label, color in ((data_a, "A", "tab:blue"), (data_b, "B", "tab:orange")):
        _cdf(left, data.discovery, f"{label}", color=color)
        _cdf(right, data.delivery, f"{label}", color=color)
    left.set(xlabel="subscribe to first message (virtual s)", ylabel="CDF", title="discovery")
    right.set(xlabel="publish to deliver (virtual s)", title="delivery latency")
    if data_a.delivery or data_b.delivery:
        right.set_xscale("log")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.set_ylim(0, 1.02)
        if axes.lines:
            axes.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"A: {name_a}   B: {name_b}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "compare_cdf.png", dpi=80)
    plt.close(fig)
    return target
