#!/usr/bin/env python3
"""Tables and plots from the CPU benchmark JSON (bench/run_cpu.sh runs this).

Reads RESULTS/cpu_moe.json, RESULTS/cpu_e2e.json (Google Benchmark output) and
RESULTS/cpu_meta.json (machine and load, written by run_cpu.sh); writes

  RESULTS/cpu_summary.json   one record per benchmark point: median, min and max over the
                             repetitions of the wall time and of every counter
  IMG/cpu_moe_latency.png    latency vs tokens per shape: MoE block per routing distribution,
                             its dense equivalent and the hardware floor
  IMG/cpu_moe_floor_fraction.png   fraction of the hardware floor reached vs tokens
  IMG/cpu_moe_stages.png     time of each dispatch stage and of the whole layer (uniform routing)
  IMG/cpu_e2e.png            end-to-end prefill and decode tokens/s
  the tables, between the GENERATED markers of --doc (docs/benchmarks.md), or printed.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys

BEGIN = "<!-- BEGIN GENERATED CPU RESULTS (bench/plot.py) -->"
END = "<!-- END GENERATED CPU RESULTS -->"

MLP_SHAPES = ["jetmoe-8b-mlp", "mixtral", "fine-grained"]
MOA_SHAPE = "jetmoe-8b-moa"
DISTRIBUTIONS = ["uniform", "zipf", "one-expert"]
STAGES = ["router", "plan", "gather", "grouped_glu", "grouped_linear", "combine"]
SHAPE_TITLES = {
    "jetmoe-8b-mlp": "JetMoE-8B MLP (E=8, k=2, 2048→5632)",
    "mixtral": "Mixtral-like (E=8, k=2, 4096→14336)",
    "fine-grained": "fine-grained (E=128, k=8, 2048→768)",
    MOA_SHAPE: "JetMoE-8B MoA (E=8, k=2, 2048→2048)",
}
COLORS = {"uniform": "tab:blue", "zipf": "tab:orange", "one-expert": "tab:green"}
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
# Name parts Google Benchmark appends that are not ours.
RUN_SUFFIX = re.compile(r"^(min_time|iterations|repeats|threads):|^(process_time|real_time|manual_time)$")


def parse_name(run_name):
    """'moe_layer/mixtral/zipf/T:256/iterations:1/...' -> ('moe_layer', ['mixtral', 'zipf'], {'T': 256})."""
    parts = [p for p in run_name.split("/") if not RUN_SUFFIX.match(p)]
    params, labels = {}, []
    for part in parts[1:]:
        key, sep, value = part.partition(":")
        if sep and value.isdigit():
            params[key] = int(value)
        else:
            labels.append(part)
    return parts[0], labels, params


def load_benchmark_json(path):
    """Google Benchmark's JSON; one cut off by a killed run (the benchmarks so far, no closing
    brackets) is repaired by closing it after the last complete entry."""
    text = open(path).read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    end = len(text)
    for _ in range(500):
        end = text.rfind("}", 0, end)
        if end < 0:
            break
        for tail in ("]}", "}"):
            try:
                data = json.loads(text[:end + 1] + tail)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict):
                data.setdefault("context", {})["jetmoe_truncated_json"] = "repaired: the run was cut off"
                return data
    raise ValueError(f"{path}: not Google Benchmark JSON, and no complete entry to repair it from")


def summarise(path):
    """One record per run name, from the individual repetitions (not GB's aggregates, which are
    missing when a point ran once)."""
    if not os.path.exists(path):
        return {}, []
    data = load_benchmark_json(path)
    groups = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type") != "iteration":
            continue
        groups.setdefault(b["run_name"], []).append(b)
    skip = {"name", "run_name", "run_type", "family_index", "per_family_instance_index", "repetitions",
            "repetition_index", "threads", "iterations", "time_unit", "real_time", "cpu_time",
            "aggregate_name", "aggregate_unit", "error_occurred", "error_message"}
    records = []
    for run_name, runs in groups.items():
        kind, labels, params = parse_name(run_name)
        errors = [r.get("error_message", "") for r in runs if r.get("error_occurred")]
        record = {"name": run_name.split("/iterations")[0].split("/min_time")[0], "kind": kind, "labels": labels,
                  "params": params, "repetitions": len(runs)}
        if errors:
            record["error"] = errors[0]
            records.append(record)
            continue
        scale = UNIT_SECONDS[runs[0]["time_unit"]]
        for key, values in (("seconds", [r["real_time"] * scale for r in runs]),
                            ("cpu_seconds", [r["cpu_time"] * scale for r in runs])):
            record[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        counters = {}
        for key in runs[0]:
            if key in skip or not isinstance(runs[0][key], (int, float)):
                continue
            values = [r[key] for r in runs]
            counters[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        record["counters"] = counters
        records.append(record)
    return data.get("context", {}), records


def find(records, kind, labels, **params):
    for r in records:
        if r["kind"] == kind and r["labels"] == labels and all(r["params"].get(k) == v for k, v in params.items()):
            return r
    return None


def tokens_of(records, kind, labels):
    return sorted({r["params"]["T"] for r in records if r["kind"] == kind and r["labels"] == labels and "error" not in r})


def fmt_time(seconds):
    if seconds is None:
        return "–"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_spread(record):
    """median (min–max as ± % of the median) of the wall time."""
    s = record["seconds"]
    if record["repetitions"] < 2 or s["median"] == 0:
        return fmt_time(s["median"])
    spread = (s["max"] - s["min"]) / s["median"] * 100
    return f"{fmt_time(s['median'])} ±{spread / 2:.0f}%"


def counter(record, key):
    if record is None or "counters" not in record or key not in record["counters"]:
        return None
    return record["counters"][key]["median"]


def fmt_number(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def fmt_rate(stat):
    """median (min–max) of a rate counter; just the median when it ran once."""
    if stat["min"] == stat["max"]:
        return fmt_number(stat["median"])
    return f"{fmt_number(stat['median'])} ({fmt_number(stat['min'])}–{fmt_number(stat['max'])})"


def pct(x):
    return "–" if x is None else f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.1f}%"


# ---- tables ------------------------------------------------------------------------------------

def floor_range(records, ctx, key, unit):
    """Floors as measured at start-up and the best the suite found later (each point is held to
    the best measured before it)."""
    start = ctx.get(key + "_at_start", ctx.get(key))
    used = [r["counters"][key]["median"] for r in records if "counters" in r and key in r["counters"]]
    text = f"{float(start):.1f} {unit} at start-up" if start is not None else "?"
    if used and max(used) > float(start or 0) * 1.005:
        text += f", best later in the run {max(used):.1f} {unit}"
    return text


def suite_floors(suites, key, unit):
    """floor_range for each suite that ran, named: each binary measures its own floors."""
    parts = [f"{name}: {floor_range(records, ctx, key, unit)}" for name, ctx, records in suites if ctx]
    return "; ".join(parts) if parts else "?"


def machine_table(meta, moe_context, e2e_context, records, e2e_records):
    ctx = moe_context or e2e_context
    suites = [("bench_moe", moe_context, records), ("bench_e2e", e2e_context, e2e_records)]
    load = meta.get("load", {})
    rows = [
        ("CPU", f"{meta.get('cpu_model', ctx.get('cpu_model', '?'))}, {meta.get('cpus', ctx.get('num_cpus', '?'))} cores "
                f"@ {ctx.get('mhz_per_cpu', '?')} MHz, {meta.get('memory_gib', '?')} GiB"),
        ("library threads", ctx.get("jetmoe_threads", "?")),
        ("repetitions per point", meta.get("repetitions", "?")),
        ("measured copy bandwidth (floor)", suite_floors(suites, "floor_copy_GBps", "GB/s")),
        ("measured fp32 GEMM peak (floor)", suite_floors(suites, "floor_gemm_GFLOPs", "GFLOP/s")),
        ("load average (1, 5, 15 min)", "; ".join(f"{k.replace('_', ' ')}: {', '.join(v)}" for k, v in load.items())),
        ("date, commit", f"{meta.get('date_utc', '?')}, {meta.get('git_commit', '?')}"),
        ("compiler", meta.get("compiler", "?")),
        ("mode", f"{meta.get('mode', '?')}; points left out: {moe_context.get('jetmoe_left_out', '?')}"),
        ("Google Benchmark", f"Debian libbenchmark {ctx.get('library_build_type', '?')} build (its own bookkeeping only)"),
    ]
    out = ["| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(out)


def layer_tables(records):
    out = []
    for shape in MLP_SHAPES:
        tokens = tokens_of(records, "dense_mlp", [shape])
        if not tokens:
            continue
        out.append(f"**{SHAPE_TITLES[shape]}** — MoE layer: median time (± half the min–max spread), "
                   "×dense = layer / its dense equivalent timed in the same iterations, % floor = fraction of the "
                   "hardware floor reached. The dense column is the dense equivalent's own benchmark, run minutes "
                   "apart: compare ×dense, not the two columns")
        out.append("")
        head = "| T | dense equivalent | " + " | ".join(DISTRIBUTIONS) + " |"
        out += [head, "|---:|---|" + "---|" * len(DISTRIBUTIONS)]
        for t in tokens:
            dense = find(records, "dense_mlp", [shape], T=t)
            cells = [f"{fmt_spread(dense)} ({pct(counter(dense, 'floor_frac'))} floor)"]
            for d in DISTRIBUTIONS:
                r = find(records, "moe_layer", [shape, d], T=t)
                if r is None or "error" in r:
                    cells.append("–")
                    continue
                cells.append(f"{fmt_spread(r)}, ×{counter(r, 'dense_ratio'):.2f}, {pct(counter(r, 'floor_frac'))}")
            out.append(f"| {t} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def moa_table(records):
    tokens = tokens_of(records, "dense_moa_map", [MOA_SHAPE])
    if not tokens:
        return ""
    out = [f"**{SHAPE_TITLES[MOA_SHAPE]}** — map (router + per-expert query projection) and reduce "
           "(per-expert output projection + combine); same cell format", ""]
    out += ["| T | half | dense equivalent | " + " | ".join(DISTRIBUTIONS) + " |",
            "|---:|---|---|" + "---|" * len(DISTRIBUTIONS)]
    for t in tokens:
        for half in ("map", "reduce"):
            dense = find(records, f"dense_moa_{half}", [MOA_SHAPE], T=t)
            cells = [f"{fmt_spread(dense)} ({pct(counter(dense, 'floor_frac'))} floor)"]
            for d in DISTRIBUTIONS:
                r = find(records, f"moa_{half}", [MOA_SHAPE, d], T=t)
                cells.append("–" if r is None or "error" in r else
                             f"{fmt_spread(r)}, ×{counter(r, 'dense_ratio'):.2f}, {pct(counter(r, 'floor_frac'))}")
            out.append(f"| {t} | {half} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def stage_table(records):
    out = ["**Dispatch stages** (median wall time; % = fraction of the stage's own floor). The stages are "
           "timed one by one on the plan of the layer; the layer runs grouped_glu and grouped_linear fused per tile.", ""]
    out += ["| shape | distribution | T | " + " | ".join(STAGES) + " | whole layer |",
            "|---|---|---:|" + "---|" * (len(STAGES) + 1)]
    for shape in MLP_SHAPES:
        for d in DISTRIBUTIONS:
            for t in tokens_of(records, "moe_layer", [shape, d]):
                cells = []
                for stage in STAGES + ["moe_layer"]:
                    r = find(records, stage, [shape, d], T=t)
                    cells.append("–" if r is None or "error" in r else
                                 f"{fmt_time(r['seconds']['median'])} ({pct(counter(r, 'floor_frac'))})")
                out.append(f"| {shape} | {d} | {t} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def linear_rows_table(records):
    rows = [r for r in records if r["kind"] == "linear_rows" and "error" not in r]
    if not rows:
        return ""
    counts = sorted({r["params"]["T"] for r in rows})
    few_max = counter(rows[0], "few_rows_max")
    out = [f"**ops::linear on one expert projection** (bf16 weights from cold caches): GFLOP/s of `ops::linear`, "
           f"which takes the few-rows kernel up to {few_max:.0f} rows in this build, and in brackets its speed "
           "relative to the panel kernel called directly on the same data in the same iterations "
           "(≈ ×1 where both are the panel kernel, which only timing noise moves)", ""]
    out += ["| projection | " + " | ".join(f"T = {t}" for t in counts) + " |", "|---|" + "---:|" * len(counts)]
    for name in dict.fromkeys(r["labels"][0] for r in rows):
        cells = []
        for t in counts:
            r = find(rows, "linear_rows", [name], T=t)
            cells.append("–" if r is None else f"{counter(r, 'GFLOPs'):.0f} (×{counter(r, 'panel_ratio'):.2f})")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def e2e_table(records, context):
    rows = [r for r in records if r["kind"] == "generate"]
    if not rows:
        return ""
    out = ["**End to end** (generation::generate, greedy, bf16 weights; prefill = the prompt pass, decode = "
           "the following one-token steps; % floor as in the methodology)", ""]
    out += ["| model | batch | prompt + new | prefill tok/s | decode tok/s | prefill % floor | decode % floor | runs |",
            "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        model = r["labels"][0]
        batch = r["params"].get("B")
        if "error" in r:
            out.append(f"| {model} | {batch} | – | – | – | – | – | {r['error']} |")
            continue
        c = lambda key: counter(r, key)  # noqa: E731
        pre, dec = r["counters"]["prefill_tok_s"], r["counters"]["decode_tok_s"]
        out.append(f"| {model} | {batch} | {c('prompt'):.0f} + {c('new_tokens'):.0f} | "
                   f"{fmt_rate(pre)} | {fmt_rate(dec)} | "
                   f"{pct(c('prefill_floor_frac'))} | {pct(c('decode_floor_frac'))} | {r['repetitions']} |")
    if context.get("jetmoe_8b", "").startswith("not run"):
        out += ["", "The JetMoE-8B-shape model was not part of this run (`bench/run_cpu.sh --8b` adds it)."]
    return "\n".join(out) + "\n"


def ratio_summary(records):
    """The issue-3 check: MoE layer / dense equivalent at T ≥ 256, per shape and distribution."""
    out = ["| shape | distribution | T | ×dense | % floor |", "|---|---|---:|---:|---:|"]
    for shape in MLP_SHAPES:
        for d in DISTRIBUTIONS:
            for t in tokens_of(records, "moe_layer", [shape, d]):
                if t < 256:
                    continue
                r = find(records, "moe_layer", [shape, d], T=t)
                out.append(f"| {shape} | {d} | {t} | {counter(r, 'dense_ratio'):.2f} | {pct(counter(r, 'floor_frac'))} |")
    return "\n".join(out) + "\n"


# ---- plots -------------------------------------------------------------------------------------

def series(records, kind, labels, value):
    points = []
    for t in tokens_of(records, kind, labels):
        r = find(records, kind, labels, T=t)
        v = value(r)
        if v is not None:
            points.append((t, v))
    return points


def plot_all(records, e2e_records, img_dir, title_suffix):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(img_dir, exist_ok=True)
    written = []
    panels = MLP_SHAPES + [MOA_SHAPE]

    def block_kinds(shape):
        if shape == MOA_SHAPE:
            return [("moa_map", "map", "-"), ("moa_reduce", "reduce", "--")], [("dense_moa_map", "dense map", "-"),
                                                                               ("dense_moa_reduce", "dense reduce", "--")]
        return [("moe_layer", "layer", "-")], [("dense_mlp", "dense equivalent", "-")]

    # Latency vs tokens.
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    for ax, shape in zip(axes.flat, panels):
        blocks, dense = block_kinds(shape)
        for kind, label, style in blocks:
            for d in DISTRIBUTIONS:
                pts = series(records, kind, [shape, d], lambda r: r["seconds"])
                if not pts:
                    continue
                t = [p[0] for p in pts]
                med = [p[1]["median"] * 1e3 for p in pts]
                err = [[(p[1]["median"] - p[1]["min"]) * 1e3 for p in pts], [(p[1]["max"] - p[1]["median"]) * 1e3 for p in pts]]
                ax.errorbar(t, med, yerr=err, fmt="o" + style, color=COLORS[d], capsize=3, label=f"{label}, {d}")
        # The dense equivalent as timed alongside the uniform-routing block (same iterations),
        # so that the two lines share the machine's state of the moment.
        for (kind, _, _), (_, label, style) in zip(blocks, dense):
            pts = series(records, kind, [shape, "uniform"], lambda r: counter(r, "dense_ms"))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "k" + style, marker="s", label=label + " (timed alongside)")
        floor_kind = blocks[0][0]
        pts = series(records, floor_kind, [shape, "uniform"], lambda r: counter(r, "floor_us"))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] * 1e-3 for p in pts], ":", color="grey", label=f"hardware floor ({blocks[0][1]}, uniform)")
        if not ax.lines:
            ax.text(0.5, 0.5, "not in this run", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(SHAPE_TITLES[shape], fontsize=10)
            continue
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens T")
        ax.set_ylabel("time per call (ms)")
        ax.set_title(SHAPE_TITLES[shape], fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("MoE / MoA blocks on CPU: latency vs tokens" + title_suffix, fontsize=11)
    fig.tight_layout()
    path = os.path.join(img_dir, "cpu_moe_latency.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # Fraction of floor.
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), sharey=True)
    for ax, shape in zip(axes.flat, panels):
        blocks, dense = block_kinds(shape)
        for kind, label, style in blocks:
            for d in DISTRIBUTIONS:
                pts = series(records, kind, [shape, d], lambda r: counter(r, "floor_frac"))
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o" + style, color=COLORS[d], label=f"{label}, {d}")
        for kind, label, style in dense:
            pts = series(records, kind, [shape], lambda r: counter(r, "floor_frac"))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "k" + style, marker="s", label=label)
        if not ax.lines:
            ax.text(0.5, 0.5, "not in this run", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(SHAPE_TITLES[shape], fontsize=10)
            continue
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.05)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xlabel("tokens T")
        ax.set_ylabel("fraction of hardware floor")
        ax.set_title(SHAPE_TITLES[shape], fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Fraction of the floor max(bytes / copy bandwidth, FLOPs / GEMM peak)" + title_suffix, fontsize=11)
    fig.tight_layout()
    path = os.path.join(img_dir, "cpu_moe_floor_fraction.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # Stage times (uniform routing), log scale: the routing stages sit orders of magnitude below
    # the expert GEMMs, which a stacked share would hide.
    fig, axes = plt.subplots(1, len(MLP_SHAPES), figsize=(15, 4.8), sharey=True)
    stage_colors = plt.get_cmap("tab10")
    for ax, shape in zip(axes, MLP_SHAPES):
        for i, stage in enumerate(STAGES + ["moe_layer"]):
            pts = series(records, stage, [shape, "uniform"], lambda r: r["seconds"]["median"] * 1e3)
            if pts:
                style = dict(color="k", lw=2, marker="s") if stage == "moe_layer" else dict(color=stage_colors(i), marker="o")
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label="whole layer" if stage == "moe_layer" else stage, **style)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(SHAPE_TITLES[shape], fontsize=9)
        ax.set_xlabel("tokens T")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("time per call (ms)")
    axes[-1].legend(fontsize=7)
    fig.suptitle("Dispatch stages and the whole MoE layer (uniform routing)" + title_suffix, fontsize=11)
    fig.tight_layout()
    path = os.path.join(img_dir, "cpu_moe_stages.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # End to end.
    rows = [r for r in e2e_records if r["kind"] == "generate" and "error" not in r]
    if rows:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        labels = [f"{r['labels'][0]}\nbatch {r['params']['B']}" for r in rows]
        x = range(len(rows))
        for offset, key, name in ((-0.2, "prefill_tok_s", "prefill"), (0.2, "decode_tok_s", "decode")):
            med = [r["counters"][key]["median"] for r in rows]
            lo = [m - r["counters"][key]["min"] for m, r in zip(med, rows)]
            hi = [r["counters"][key]["max"] - m for m, r in zip(med, rows)]
            ax.bar([i + offset for i in x], med, width=0.4, yerr=[lo, hi], capsize=3, label=name)
            for i, m in zip(x, med):
                ax.text(i + offset, m, f"{m:,.0f}" if m >= 10 else f"{m:.2g}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("tokens / s")
        ax.legend()
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.set_title("End-to-end generation on CPU (bf16 weights)" + title_suffix, fontsize=10)
        fig.tight_layout()
        path = os.path.join(img_dir, "cpu_e2e.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def rounded(value):
    """4 significant digits: the runs' own spread is far wider."""
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def write_summary(path, meta, moe_context, e2e_context, moe, e2e):
    """The kept record of a run: one benchmark point per line, values rounded."""
    with open(path, "w") as f:
        f.write("{\n" + f'"meta": {json.dumps(meta)},\n"context": {json.dumps({"moe": moe_context, "e2e": e2e_context})},\n')
        for key, records in (("moe", moe), ("e2e", e2e)):
            f.write(f'"{key}": [\n' + ",\n".join(json.dumps(rounded(r), ensure_ascii=False) for r in records) + "\n]")
            f.write(",\n" if key == "moe" else "\n")
        f.write("}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="bench/results")
    parser.add_argument("--img", default="docs/img")
    parser.add_argument("--doc", help="markdown file whose GENERATED block is replaced (else the tables are printed)")
    args = parser.parse_args()

    meta_path = os.path.join(args.results, "cpu_meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    moe_context, moe = summarise(os.path.join(args.results, "cpu_moe.json"))
    e2e_context, e2e = summarise(os.path.join(args.results, "cpu_e2e.json"))
    if not moe and not e2e:
        sys.exit(f"plot.py: no results in {args.results}")

    write_summary(os.path.join(args.results, "cpu_summary.json"), meta, moe_context, e2e_context, moe, e2e)

    cpu = meta.get("cpu_model", moe_context.get("cpu_model", ""))
    suffix = f"\n{cpu}, {moe_context.get('jetmoe_threads', '?')} threads"
    images = plot_all(moe, e2e, args.img, suffix)

    doc_dir = os.path.dirname(os.path.abspath(args.doc)) if args.doc else os.getcwd()
    image_links = "\n\n".join(f"![{os.path.basename(p)}]({os.path.relpath(os.path.abspath(p), doc_dir)})" for p in images)
    block = "\n\n".join(part for part in [
        "### Machine and conditions\n\n" + machine_table(meta, moe_context, e2e_context, moe, e2e),
        "### MoE layer / dense equivalent at T ≥ 256\n\n" + ratio_summary(moe),
        "### MoE MLP layer\n\n" + layer_tables(moe),
        "### Mixture of attention (MoA)\n\n" + moa_table(moe),
        "### Dispatch stages\n\n" + stage_table(moe),
        "### ops::linear near the few-rows boundary\n\n" + linear_rows_table(moe),
        "### End to end\n\n" + e2e_table(e2e, e2e_context),
        "### Plots\n\n" + image_links,
    ] if part.strip())

    if args.doc:
        text = open(args.doc).read()
        if BEGIN not in text or END not in text:
            sys.exit(f"plot.py: {args.doc} has no '{BEGIN}' … '{END}' block to fill")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        open(args.doc, "w").write(head + BEGIN + "\n\n" + block + "\n\n" + END + tail)
        print(f"plot.py: tables written into {args.doc}")
    else:
        print(block)
    for p in images:
        print(f"plot.py: wrote {p}")


if __name__ == "__main__":
    main()
