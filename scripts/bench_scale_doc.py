"""The "Scale" section of docs/benchmarks.md, rendered from what ``scripts/bench_scale.py`` measured and stored: the
tables of its round, real and agreement parts, and the projection to 10,000 nodes (arithmetic on those figures).
``bench_scale.py doc`` writes it; this module runs nothing.
"""

from __future__ import annotations


def _f(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def scale_section(r: dict, tiny_d: int) -> str:
    """The section's text from the stored results ``r``; ``tiny_d``: the tiny SmolVLA's dimension (the round part's)."""
    lines = []
    rounds = [r[k] for k in sorted((k for k in r if k.startswith("round-")), key=lambda k: int(k.split("-")[1]))]
    if rounds:
        dates = sorted({x["date"] for x in rounds})
        lines += [f"Measured by `scripts/bench_scale.py round` on {dates[0][:10]}, 2 cores shared with other engineers "
                  f"(load {', '.join(str(x['load']) for x in rounds)} at the ends of the runs). Tiny SmolVLA dimension "
                  f"(d = {tiny_d:,}), the tiny statement circuit (A=6, H=48, m=16), the full gate in "
                  f"{rounds[0]['workers']} worker threads (no validation score), f = n/10, m = n/2, "
                  f"{rounds[0]['sketch_dim']:,}-bucket sketches. Distinct proofs: "
                  f"{', '.join(f'{x[chr(110)]:,} replies: {x[chr(112) + "roofs_distinct"]}' for x in rounds)} (replies "
                  "beyond reuse them in turn; each reply's slice is committed again). Every reply here is honest and "
                  "alike, so exact and sketched Krum differ only in which near-equal replies fill the m places "
                  "(\"same selection\"). The spread run hands the replies over one every 1.25 × (burst wall / n) s.",
                  "",
                  "| n | gate, all replies at once: wall (cpu) s | after the last reply s | spread arrivals: window s |"
                  " after the last reply s | verify per reply s | proofs / s / core | sketch s (sum) | Krum exact s |"
                  " Krum sketch s | same selection | aggregation s |"
                  " chain: records + close s (cpu s; transactions, gas per record) |"
                  " peak RSS MB |", "|" + "---|" * 14]
        for x in rounds:
            b, sp, ch = x["burst"], x.get("spread"), x.get("chain")
            chain = "-" if not ch else (f"{_f(ch['wall'], 2)} ({_f(ch['cpu'], 2)}; {ch.get('transactions', '?')}, "
                                        f"{ch['gas_total'] // ch['records']:,})" if ch.get("gas_total")
                                        else _f(ch["wall"], 1))
            lines.append(f"| {x['n']:,} | {_f(b['wall'], 1)} ({_f(b['cpu'], 1)}) | {_f(b['after_last_reply'])} | "
                         f"{_f(sp and sp['arrival_window'], 1)} | {_f(sp and sp['after_last_reply'])} | "
                         f"{_f(b['verify_mean'], 3)} | {_f(x['proofs_per_s_per_core'], 1)} | {_f(b['sketch_sum'])} | "
                         f"{_f(x['selection_exact_s'], 3)} | {_f(x['selection_sketch_s'], 3)} | "
                         f"{'yes' if x['selected_same'] else f'{x[chr(115) + "elected_overlap"]:.0%} overlap'} | "
                         f"{_f(x['aggregation_s'], 3)} | {chain} | {_f(x['peak_rss_mb'], 0)} |")
        lines.append("")
    reals = [r[k] for k in sorted((k for k in r if k.startswith("real-")), key=lambda k: int(k.split("-")[1]))]
    if reals:
        lines += [f"Real SmolVLA dimension (d = {reals[0]['d']:,}, {reals[0]['d'] * 4 / 1e6:,.0f} MB an update), "
                  "synthetic updates (one sign-flipped), each reply handed over as Flower's pull leaves it (inflated "
                  "from its chunks) once the gate has room, the structural gate (decode, finite values, hash) in 2 "
                  "worker threads, each update sketched and kept as it is gated (`disk`: spilled to a file; `regen`: "
                  "regenerated from its seed when read back, its time left out of the aggregation), Krum on "
                  "sketches, the m = n/2 chosen updates summed a block at a time and the result serialized for "
                  "Flower. Peak RSS is the whole process's, the maker of the replies included:", "",
                  "| n | store | sketch dim | hash the sketch's buckets s | gate per reply s | sketch per reply s | "
                  "keep per reply s | gate after the last reply s | Krum on sketches s | aggregation s (per chosen "
                  "update) | sign-flipper selected | peak RSS MB (replies arriving / aggregating) | load | commit |",
                  "|" + "---|" * 14]
        for x in reals:
            phases = x.get("rss_by_phase_mb", {})
            rss = f"{_f(x['peak_rss_mb'], 0)}"
            if phases:
                rss += f" ({phases.get('replies arriving, gated', 0):,} / {phases.get('aggregation', 0):,})"
            lines.append(f"| {x['n']} | {x['store']} | {x['sketch_dim']:,} | {_f(x['codes_s'], 1)} | "
                         f"{_f(x['gate_mean'])} | {_f(x['sketch_mean'])} | {_f(x['store_mean'])} | "
                         f"{_f(x['after_last_reply'])} | {_f(x['selection_s'], 3)} | {_f(x['aggregation_s'], 1)} "
                         f"({_f(x['aggregation_s'] / x['m'])}) | {'yes' if x['attacker_selected'] else 'no'} | "
                         f"{rss} | {x['load']} | {x.get('commit', 'before 07cc6f2')} |")
        lines.append("")
    lines += aggregate_table(r)
    if "agreement" in r:
        a = r["agreement"]
        lines += [f"Selection agreement: Multi-Krum (n = {a['n']}, f = {a['f']}, m = {a['m']}) on sketches vs on "
                  f"the full vectors (d = {a['d']:,}), {a['trials']} seeded rounds of each of docs/security.md's "
                  "update patterns (sign-flip, collude, IPM, noisy free-rider, poison-shuffle; 1, 2 and 3 "
                  "attackers of 7; `attacks.library.synthetic_updates`), a fresh sketch seed each round"
                  + (f" (measured {a['date']} at {a['commit']}; the sketch has not changed since)"
                     if a.get("copied_from_doc") else "") + ":", "",
                  "| sketch dim | rounds | selected set differs | attackers selected differ (sketch lets in more) | "
                  "exact Krum's margin at the cut in those rounds, at most | largest squared-distance error |",
                  "|---|---|---|---|---|---|"]
        for dim, st in a["dims"].items():
            share = st["set_differs"] / st["rounds"]
            lines.append(f"| {int(dim):,} | {st['rounds']} | {st['set_differs']} ({share:.0%}) | "
                         f"{st['attackers_differ']} ({st['more_attackers']}) | "
                         f"{st['cut_gap_max']:.1%} | {st['score_err_max']:.1%} |")
        lines.append("")
    lines += projection(r)
    return "\n".join(lines).rstrip()


def aggregate_table(r: dict) -> list[str]:
    """The m = n/2 mean of real-size spilled updates (``bench_scale.py aggregate``), float32 and float16 spills."""
    keys = [k for k in r if k.startswith("aggregate-")]  # aggregate-<n>-<precision>: float32 (as before) first
    runs = [r[k] for k in sorted(keys, key=lambda k: (int(k.split("-")[1]), not k.endswith("float32")))]
    if not runs:
        return []
    lines = [f"The aggregation after the last reply at real size (`bench_scale.py aggregate`, d = {runs[0]['d']:,}): "
             "the n updates spilled in arrival order as the intake keeps them, then the mean of m = n/2 of them (drawn "
             "with a fixed seed among the honest ones) read back a block at a time and the result serialized for "
             "Flower; timed as the page cache was left, and again with the files dropped from it (`cold`: every byte "
             "from the disk). The error is the mean's largest distance from the exact (float64) mean of the chosen "
             "updates, as a share of its stated bound (`aggregator.protocol.updates.half_error_bound`), and in "
             "absolute terms beside the float32 rounding of the exact mean (which the float32 mean has). Peak RSS: the "
             "whole process while it aggregates (its global model, the mean and its serialized copy in it):", "",
             "| n | m | spill | spilled GB | keep per reply s (cpu s) | page cache | read from disk GB | mean s | "
             "serialize s | **aggregation s** (cpu s) | per chosen update s | largest error / bound | "
             "largest error (float32 rounding) | peak RSS MB aggregating | load before → after | date, commit |",
             "|" + "---|" * 16]
    for x in runs:
        phases = x.get("rss_by_phase_mb", {})
        rss = max((v for k, v in phases.items() if k.startswith("aggregation")), default=x["peak_rss_mb"])
        for cache, run in x["runs"].items():
            error = "-" if "error_over_bound" not in run else f"{run['error_over_bound']:.2f}"
            absolute = ("-" if "max_abs_error" not in run
                        else f"{run['max_abs_error']:.1e} ({run['float32_rounding']:.1e})")
            lines.append(f"| {x['n']} | {x['m']} | {x['precision']} | {_f(x['spilled_gb'], 1)} | "
                         f"{_f(x['keep_per_reply_s'])} ({_f(x['keep_per_reply_cpu'])}) | {cache} | "
                         f"{_f(run['read_from_disk_gb'], 1)} | {_f(run['mean_s'], 1)} | {_f(run['serialize_s'], 1)} | "
                         f"**{_f(run['wall'], 1)}** ({_f(run['cpu'], 1)}) | {_f(run['mean_s'] / x['m'])} | {error} | "
                         f"{absolute} | {_f(rss, 0)} | {run['load_before']} → {run['load_after']} | "
                         f"{x['date']}, {x['commit']} |")
    return lines + [""]


def projection(r: dict, nodes: int = 10_000, cores: int = 16) -> list[str]:
    """10,000 nodes, by arithmetic on the measured per-unit costs (not a measurement)."""
    big = r.get("round-1000") or r.get("round-100")
    real = r.get("real-100-regen") or r.get("real-10-disk")
    disk = r.get("real-10-disk")
    spilled = r.get("aggregate-100-float16")
    cold = spilled and spilled["runs"].get("cold")
    if not big or not real:
        return []
    proof_cpu = big["burst"]["cpu"] / big["n"]
    per_reply_real = real["round_cpu"] / real["n"]  # cpu: the wall per reply depends on the machine's load
    sel = real["selection_s"] * (nodes / real["n"]) ** 2
    read_add, where = ((disk["aggregation_s"] / disk["m"]), "n = 10, float32 spill") if disk else (None, "")
    if cold:  # the m = n/2 mean of float16 steps, every byte from the disk
        read_add, where = cold["wall"] / spilled["m"], f"n = 100, m = {spilled['m']}, float16 steps, cold cache"
    chain = big.get("chain")
    out = [f"Projection to {nodes:,} nodes (arithmetic on the figures above, not measured):", ""]
    out.append(f"- **Gate**: {proof_cpu:.3f} cpu s per proven reply (tiny statement, measured at n = {big['n']:,}; "
               f"{1 / proof_cpu:.1f} proofs per second per core) → {nodes * proof_cpu / 60:,.0f} cpu min for "
               f"{nodes:,} replies: {nodes * proof_cpu / cores / 60:,.1f} min on {cores} cores. Replies arriving over "
               "a longer window than that are gated as they come, and the gate's time after the last one stays one "
               "reply's; a burst of all of them at once is that long on its own.")
    out.append(f"- **Real-size intake** (decode, finite check, hash, sketch, keep: {per_reply_real:.1f} cpu s per "
               f"reply at n = {real['n']}, an upper bound: the bench's making of each reply is in it) → "
               f"{nodes * per_reply_real / 3600:,.1f} cpu h a round, "
               f"{nodes * per_reply_real / cores / 60:,.0f} min on {cores} cores, and {nodes * 0.4 / 1000:,.0f} TB "
               "received (400 MB a reply): at this scale the updates themselves must shrink (sparse or compressed "
               "updates, as Psyche and Prime Intellect send), not only the aggregator's work.")
    out.append(f"- **Krum on sketches**: O(n²·k); {real['selection_s']:.3f} s at n = {real['n']:,} (real size, "
               f"{real['sketch_dim']:,} buckets) → ~{sel:,.0f} s, and {nodes ** 2 * 8 / 1e9:.1f} GB for the distance "
               f"matrix (the sketches: {nodes * real['sketch_dim'] * 8 / 1e9:.1f} GB).")
    if read_add:
        half = nodes / 2 * read_add / 60
        out.append(f"- **Aggregation**: {read_add:.2f} s per chosen real-size update read back and added ({where}) "
                   f"→ m = 100: {100 * read_add:,.0f} s; m = n/2 = {nodes // 2:,}: {half:,.0f} min (then the "
                   "sum must be split over cores, or m kept small: the federation's default is 2).")
    if chain and chain.get("records"):
        per = chain["wall"] / chain["records"]
        gas = ((chain.get("gas_total") or 0) + chain.get("close_gas", 0)) / chain["records"]
        out.append(f"- **Chain** (batched records, measured at n = {big['n']:,}): {per * 1000:,.1f} ms and "
                   f"{gas:,.0f} gas per record with the close → {nodes * per:,.0f} s and "
                   f"{nodes * gas / 1e6:,.0f} M gas a round ({nodes * gas / 30e6:,.1f} blocks of 30 M gas; "
                   f"{-(-nodes // 200)} transactions of 200).")
    return out + [""]
