#!/usr/bin/env bash
# Rebuild the shipped default model (pipeline/default_model/) from the CMU-MOSI and CMU-MOSEI
# label files: the two recipes it combines, each a packed model of its own under WORK, then their
# combination. Every step resumes where it stopped (finished seeds and stages are reused).
#
#   bash scripts/rebuild_default_model.sh MOSI/label.csv MOSEI/label.csv [WORK]
#
# WORK defaults to runs/default_model; PYTHON to .venv/bin/python where it exists, else python.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 MOSI/label.csv MOSEI/label.csv [WORK]" >&2
    exit 2
fi
MOSI=$1
MOSEI=$2
WORK=${3:-runs/default_model}
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
# part 1: a preliminary MOSEI stage, then MOSI with utterance context, up to 15 epochs (seeds 1-3)
"$PY" bench/build_default_model.py --mosi "$MOSI" --mosei "$MOSEI" --work "$WORK/stage" --out "$WORK/part_stage"
# part 2: MOSEI's train split added to MOSI's in each run, 3 epochs (seeds 1-3)
"$PY" bench/build_default_model.py --mosi "$MOSI" --mosei "$MOSEI" --mosei-as extra --set epochs=3 \
    --work "$WORK/extra" --out "$WORK/part_extra" --name senbert-text-mpnet-lora-ctx1-extra
# the ensemble of both parts' members, calibrated on MOSI train, measured and carded
"$PY" bench/combine_default_model.py --mosi "$MOSI" --mosei "$MOSEI" --parts "$WORK/part_stage" "$WORK/part_extra" \
    --work "$WORK"
