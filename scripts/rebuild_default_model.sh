#!/usr/bin/env bash
# Rebuild the shipped default model (pipeline/default_model/) from the CMU-MOSI and CMU-MOSEI
# label files: the two recipes it combines, each a packed model of its own under WORK
# (`senbert release build`), then their combination (`senbert release combine`). Every step
# resumes where it stopped (finished seeds and stages are reused).
#
#   bash scripts/rebuild_default_model.sh MOSI/label.csv MOSEI/label.csv [WORK]
#
# WORK defaults to runs/default_model. It runs .venv/bin/senbert where it exists, else
# `$PYTHON -m cli` (PYTHON: .venv/bin/python where it exists, else python); a PYTHON given wins.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 MOSI/label.csv MOSEI/label.csv [WORK]" >&2
    exit 2
fi
MOSI=$1
MOSEI=$2
WORK=${3:-runs/default_model}
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/senbert ]; then
    RELEASE=(.venv/bin/senbert release)
else
    RELEASE=("${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}" -m cli release)
fi
# part 1: a preliminary MOSEI stage, then MOSI with utterance context, up to 15 epochs (seeds 1-3)
"${RELEASE[@]}" build --mosi "$MOSI" --mosei "$MOSEI" --work "$WORK/stage" --out "$WORK/part_stage"
# part 2: MOSEI's train split added to MOSI's in each run, 3 epochs (seeds 1-3)
"${RELEASE[@]}" build --mosi "$MOSI" --mosei "$MOSEI" --mosei-as extra --set epochs=3 \
    --work "$WORK/extra" --out "$WORK/part_extra" --name senbert-text-mpnet-lora-ctx1-extra
# the ensemble of both parts' members, calibrated on MOSI train, measured and carded (its figures from
# speech: bench/bench_spoken.py, then `senbert release spoken`; docs/default-model.md)
"${RELEASE[@]}" combine --mosi "$MOSI" --mosei "$MOSEI" --parts "$WORK/part_stage" "$WORK/part_extra" \
    --work "$WORK"
