#!/usr/bin/env bash
# The main job on embedded defaults: set up, train a pure DFT head (k = 10, labels on the circle by co-occurrence,
# the head-only recipe of --freeze-encoder) on frozen all-MiniLM-L6-v2 features of the bundled disaster-response
# messages, evaluate it, certify it, verify the certificate, and print the command that would publish it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUN="${RUN:-runs/disaster-dft}"
.venv/bin/hf-dft train --output-dir "$RUN" --overwrite --freeze-encoder --head dft --k 10
.venv/bin/hf-dft certify "$RUN" --split test  # on the data the run trained on (training_args.json)
.venv/bin/hf-dft verify "$RUN"
echo
echo "Certified checkpoint: $RUN. Publish it with:"
echo "    .venv/bin/hf-dft push $RUN YOUR_USER/disaster-dft-minilm"
