"""Ratios for benches/hll_speed.sh: medians in ms, against sum(id) and postgresql-hll."""
import sys

t = {}
for line in open(sys.argv[1]):
    if line.strip():
        name, ms = line.split()
        t[name] = float(ms)
n = int(sys.argv[2])
s = t["sum"]
print("\n=== hll speed (median ms; ratios against sum(id) in the same run) ===")
for k in ["count", "sum", "approx_count_distinct", "hll_add_agg", "phll_add_agg"]:
    print(f"{k:24s} {t[k]:9.1f} ms  {t[k] / s:5.2f}x sum(id)")
print(f"hll_add_agg is {t['phll_add_agg'] / t['hll_add_agg']:.2f}x faster than postgresql-hll's")
for suffix, label in (("_full", "well-filled (20k values each), default storage"),
                      ("", "3k values each (registers mostly empty; format 1 was pglz-compressed), default storage"), ("_lz4", "COMPRESSION lz4 on both columns"),
                      ("_plain", "STORAGE plain (no compression) on both columns")):
    ours, theirs = t["hll_union_agg" + suffix], t["phll_union_agg" + suffix]
    print(f"-- {n} stored p=12 sketches, {label}")
    print(f"{'hll_union_agg':24s} {ours:9.1f} ms  {ours * 1000 / n:6.2f} us/sketch")
    print(f"{'phll_union_agg':24s} {theirs:9.1f} ms  {theirs * 1000 / n:6.2f} us/sketch")
    print(f"hll_union_agg is {theirs / ours:.2f}x faster than postgresql-hll's")
print(f"profile, 3k values, default storage: reading each value (scan and detoast, no pglz in "
      f"format 2) takes {t['detoast_only'] * 1000 / n:.2f} us/sketch of the {t['hll_union_agg'] * 1000 / n:.2f}; "
      f"decoding and merging {(t['hll_union_agg'] - t['detoast_only']) * 1000 / n:.2f} us")
