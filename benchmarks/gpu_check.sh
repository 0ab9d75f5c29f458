#!/usr/bin/env bash
# CUDA check of every backend in one command (< 8 minutes on one GPU): train each briefly from scratch on
# generated patches (--device cuda), segment the tiles of a generated slide with the trained model, and print
# a table of training time, tile throughput and F1 at IoU 0.5 on the slide's tiles.
#
#   bash benchmarks/gpu_check.sh                     # PYTHON=.venv/bin/python, CPSAM_PYTHON=.venv-cpsam/bin/python
#   EPOCHS=5 TILE=512 SLIDE=3072 OUT=results/gpu_check bash benchmarks/gpu_check.sh
#
# cpsam runs only when its own venv exists and has its weights locally (it cannot train from scratch).
# Each backend has its own time cap (CAP seconds, train + segment), so one slow backend cannot sink the run.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
CPSAM_PYTHON=${CPSAM_PYTHON:-.venv-cpsam/bin/python}
OUT=${OUT:-results/gpu_check}
EPOCHS=${EPOCHS:-5}
TILE=${TILE:-512}
SLIDE=${SLIDE:-3072}
CAP=${CAP:-90}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu BACKENDS=cellpose SLIDE=1024 EPOCHS=1: a dry run of this script without a GPU
BACKENDS=${BACKENDS:-cellpose stardist cellbin cellvit cpsam}
export CSREFINER_QUIET=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2

if [ "$DEVICE" = cuda ]; then
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_check: torch sees no CUDA device; nothing measured"; exit 1; }
  "$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
fi
rm -rf "$OUT" && mkdir -p "$OUT"
csr() { local py=$1; shift; "$py" -m csrefiner "$@"; }

# Data: 16 annotated 256 px patches, one SLIDE x SLIDE slide with its truth, cut into TILE px tiles.
csr "$PYTHON" synth --out "$OUT/train" --n 16 --size 256 --style hard --seed 0 >/dev/null || exit 1
csr "$PYTHON" synth --out "$OUT/slide" --n 1 --size "$SLIDE" --style hard --seed 100 --name gpuslide >/dev/null || exit 1
IMG=$(ls "$OUT"/slide/*-img.tif | head -1)
csr "$PYTHON" tile --image "$IMG" --out "$OUT/tiles" --tile-size "$TILE" --overlap 64 >/dev/null || exit 1
NTILES=$(ls "$OUT"/tiles/*-img.tif | wc -l)
"$PYTHON" - "$OUT" <<'PY' || exit 1
import sys
from pathlib import Path
from csrefiner.io import read_labels, write_labels
from csrefiner.wsi.manifest import Manifest
out = Path(sys.argv[1])
truth = read_labels(next((out / "slide").glob("*-mask.tif")))
m = Manifest.load(out / "tiles" / "manifest.json")
(out / "truth").mkdir()
for t in m.tiles:  # each tile's ground truth, named so `evaluate` pairs it with the tile's prediction
    write_labels(out / "truth" / f"{m.key(t)}-mask.tif", truth[t.box])
PY

printf '%s\n' "| backend | train s ($EPOCHS epochs, 16 x 256 px) | segment s ($NTILES tiles of $TILE px) | tiles/s | Mpx/s | F1 @ 0.5 | note |" \
              "|---|---|---|---|---|---|---|" > "$OUT/table.md"
run_backend() {  # name python pretrained
  local name=$1 py=$2 base=$3 dir="$OUT/$1" t0 t1 t2 f1 note=""
  mkdir -p "$dir"
  t0=$(date +%s.%N)
  if ! timeout "$CAP" "$py" -m csrefiner finetune --model "$name" --train "$OUT/train" --pretrained "$base" \
       --out "$dir/model" --epochs "$EPOCHS" --eval-every "$EPOCHS" --device "$DEVICE" --seed 0 > "$dir/train.log" 2>&1; then
    echo "| $name | failed | - | - | - | - | $(tail -1 "$dir/train.log" | cut -c1-120) |" >> "$OUT/table.md"; return
  fi
  t1=$(date +%s.%N)
  if ! timeout "$CAP" "$py" -m csrefiner segment --model-dir "$dir/model" --input "$OUT/tiles" --out "$dir/masks" \
       --tile-manifest "$OUT/tiles/manifest.json" --device "$DEVICE" > "$dir/segment.log" 2>&1; then
    echo "| $name | $("$PYTHON" -c "print(round($t1 - $t0, 1))") | failed | - | - | - | $(tail -1 "$dir/segment.log" | cut -c1-120) |" >> "$OUT/table.md"; return
  fi
  t2=$(date +%s.%N)
  "$PYTHON" -m csrefiner evaluate --gt "$OUT/truth" --pred "$dir/masks" --out "$dir/eval" > "$dir/eval.log" 2>&1
  f1=$("$PYTHON" -c "import json,sys; m=json.load(open(sys.argv[1]))['methods']; print(round(next(iter(m.values()))['micro']['f1'], 3))" "$dir/eval/summary.json" 2>/dev/null || echo "-")
  "$py" -c "import json,sys; c=json.load(open(sys.argv[1])); sys.exit(0 if sys.argv[2] in str(c.get('device', '')) else 1)" "$dir/model/model.json" "$DEVICE" \
    || note="model card says device $("$py" -c "import json,sys; print(json.load(open(sys.argv[1])).get('device'))" "$dir/model/model.json")"
  "$PYTHON" - "$name" "$t0" "$t1" "$t2" "$NTILES" "$TILE" "$f1" "$note" >> "$OUT/table.md" <<'PY'
import sys
name, t0, t1, t2, n, tile, f1, note = sys.argv[1:]
t0, t1, t2, n, tile = float(t0), float(t1), float(t2), int(n), int(tile)
seg = t2 - t1
print(f"| {name} | {t1 - t0:.1f} | {seg:.1f} | {n / seg:.2f} | {n * tile * tile / seg / 1e6:.2f} | {f1} | {note} |")
PY
}

for backend in $BACKENDS; do
  if [ "$backend" != cpsam ]; then
    run_backend "$backend" "$PYTHON" scratch
  elif [ -x "$CPSAM_PYTHON" ]; then
    run_backend cpsam "$CPSAM_PYTHON" cpsam
  else
    echo "| cpsam | - | - | - | - | - | skipped: no $CPSAM_PYTHON |" >> "$OUT/table.md"
  fi
done
cat "$OUT/table.md"
