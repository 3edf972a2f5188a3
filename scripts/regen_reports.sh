#!/usr/bin/env bash
# Regenerates reports/<scenario>/{summary.txt,report.json,timeseries.csv,report.html,
# plots/*.svg} for every
# bundled scenario. `cargo test golden` compares the same outputs against these files,
# so a change to any number shows up as a diff in review: run this on purpose, and say
# in the commit why the numbers moved.
# Deterministic: rerunning it must leave `git diff reports/` empty.
set -euo pipefail
cd "$(dirname "$0")/.."
# MESHSIM_PROFILE=dev-opt builds faster while iterating; the outputs are the same.
profile=${MESHSIM_PROFILE:-release}
cargo build --profile "$profile" --quiet
bin=target/$profile/meshsim
for file in scenarios/*.toml; do
  name=$(basename "$file" .toml)
  tmp=$(mktemp -d)
  # Exit 1 (an expectation failed) still writes the reports; 2 is an error.
  rc=0
  "$bin" run "$file" --out "$tmp" > "$tmp/summary.txt" || rc=$?
  if [ "$rc" -ge 2 ]; then echo "$file: exit $rc" >&2; exit "$rc"; fi
  mkdir -p "reports/$name"
  # The summary's last lines name the temporary folder; keep the rest.
  grep -v '^wrote ' "$tmp/summary.txt" > "reports/$name/summary.txt"
  cp "$tmp/report.json" "$tmp/timeseries.csv" "$tmp/report.html" "reports/$name/"
  rm -rf "reports/$name/plots"
  mkdir -p "reports/$name/plots"
  cp "$tmp"/plots/*.svg "reports/$name/plots/"
  rm -rf "$tmp"
done
