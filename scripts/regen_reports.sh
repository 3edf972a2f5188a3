#!/usr/bin/env bash
# Regenerates reports/<scenario>/{report.json,summary.txt} for every bundled scenario.
# Deterministic: rerunning it must leave `git diff reports/` empty.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
for file in scenarios/*.toml; do
  name=$(basename "$file" .toml)
  tmp=$(mktemp -d)
  target/release/meshsim run "$file" --out "$tmp" > "$tmp/summary.txt"
  mkdir -p "reports/$name"
  # The summary's last line names the temporary folder; keep the rest.
  grep -v '^wrote ' "$tmp/summary.txt" > "reports/$name/summary.txt"
  cp "$tmp/report.json" "reports/$name/report.json"
  rm -rf "$tmp"
done
