#!/usr/bin/env python3
"""Cost per event across topologies, whole process: issue #10's goal 1.

Runs the generated shapes of benches/engine.rs (a chain of 4 or 400 services, one
`parallel` of 10 or 1000 calls) with the release binary, and prints the CPU time per
event of each (user + sys of the whole process, over the `events` of its report.json)
and its ratio to the 4-hop chain. The goal is every shape within 1.5x of the 4-hop
chain. With --vs, a second binary (the one before a change) runs in turn with the
first, run by run, so both see the same machine.

    MESHSIM_BENCH_DUMP=/tmp/topo cargo bench --bench engine -- topology   # writes the shapes
    python3 scripts/topology_cost.py --shapes /tmp/topo [--vs OLD_BINARY] [--runs 7]

The runs are larger than the criterion bench's (so the report's fixed cost, 400
endpoints' rows, is a small part): 200,000 requests on the 4-hop chain, 400 on the
400-hop chain, 40,000 and 400 on the fan-outs. Standard library only.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {
    "topology_chain_4": 200_000,
    "topology_chain_400": 400,
    "topology_fanout_10": 40_000,
    "topology_fanout_1000": 400,
}


def cpu_per_event(binary, shape, requests, out):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(binary), "run", str(shape), "-q", "--out", out,
                    "--set", f"simulation.requests={requests}"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    events = json.loads((Path(out) / "report.json").read_text())["events"]
    return cpu / events * 1e9, events


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", type=Path, required=True, help="folder of the dumped shapes (MESHSIM_BENCH_DUMP)")
    ap.add_argument("--meshsim", type=Path, default=ROOT / "target" / "release" / "meshsim")
    ap.add_argument("--vs", type=Path, default=None, help="a second binary, run in turn with the first")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    binaries = {"meshsim": a.meshsim}
    if a.vs:
        binaries["vs"] = a.vs
    missing = [s for s in SHAPES if not (a.shapes / f"{s}.toml").exists()]
    if missing:
        raise SystemExit(f"topology_cost.py: no {missing[0]}.toml in {a.shapes}; write the shapes with "
                         "MESHSIM_BENCH_DUMP=DIR cargo bench --bench engine -- topology")
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    cost, events = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.runs):
            for shape, requests in SHAPES.items():
                for name, binary in binaries.items():
                    ns, ev = cpu_per_event(binary, a.shapes / f"{shape}.toml", requests, tmp)
                    cost.setdefault((name, shape), []).append(ns)
                    events[shape] = ev
    load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"CPU per event, whole process, medians of {a.runs} run(s); ratio to the 4-hop chain (goal: <= 1.5x)\n")
    print("| shape | requests | events | " + " | ".join(f"{n} ns/event | {n} ratio" for n in binaries) + " |")
    print("|---|---:|---:|" + "---:|---:|" * len(binaries))
    for shape, requests in SHAPES.items():
        cells = []
        for name in binaries:
            base = statistics.median(cost[(name, "topology_chain_4")])
            ns = statistics.median(cost[(name, shape)])
            cells += [f"{ns:,.0f}", f"{ns / base:.2f}x"]
        print(f"| {shape} | {requests:,} | {events[shape]:,} | " + " | ".join(cells) + " |")
    print(f"\nLoad average (1, 5, 15 min; {os.cpu_count()} cores): before {load_before}, after {load_after}")


if __name__ == "__main__":
    main()
