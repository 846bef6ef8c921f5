#!/usr/bin/env bash
# Every GPU figure of docs/results.md in one run (each step capped, 7.3 minutes at most), for
# a session that is lent a GPU machine. It needs only torch (and numpy) there:
# the device image has no Ray, MLflow, Optuna or scikit-image, and Ray's wheel
# is too big to carry, so what Ray would do is measured with plain processes.
# The photographs travel as arrays, and the deep decoder paper's own astronaut
# (its repository's test_data/astronaut.png, not scikit-image's) as a file;
# once, here, before the run:
#   echo /.photos/ >> .git/info/exclude; python bench/paper_fits.py --save-photos .photos
#   cp <reinhardh/supplement_deep_decoder checkout>/test_data/astronaut.png .photos/astronaut_dd.png
#   python bench/ct_speed.py --save-matrices .photos/ct   # ASTRA's projection matrices (no astra there)
# then on the device (carry: [".photos"]):
#   bash bench/gpu_checks.sh            # prints each figure with the command that made it
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/platform${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export RECONLAB_PHOTO_DIR="${RECONLAB_PHOTO_DIR:-$PWD/.photos}"
python -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print(torch.cuda.get_device_name(0), torch.__version__)"
date -u

echo "== untrained networks: fitting iterations/s per image size (issue 16)"
echo "\$ python bench/untrained_fit.py --sizes 128 256 512 --iterations 50 --repeats 3"
timeout 90 python bench/untrained_fit.py --sizes 128 256 512 --iterations 50 --repeats 3

echo "== untrained networks: 8 stacked deep decoders vs 8 sequential fits (goal >= 3x image-iterations/s)"
echo "\$ python bench/untrained_fit.py --batched 8 --k 64 --sizes 128 256 512 --iterations 50 --repeats 2"
timeout 60 python bench/untrained_fit.py --batched 8 --k 64 --sizes 128 256 512 --iterations 50 --repeats 2
echo "\$ python bench/untrained_fit.py --batched 8 --k 128 --sizes 512 --iterations 50 --repeats 2"
timeout 45 python bench/untrained_fit.py --batched 8 --k 128 --sizes 512 --iterations 50 --repeats 2

echo "== the papers' anchors: astronaut 512^2, sigma 25, 1,900 iterations (decoder k=64/128 within 0.5 dB, DIP within 1 dB)"
DD="$RECONLAB_PHOTO_DIR/astronaut_dd.png"  # the decoder's figures are on this file
[ -f "$DD" ] || { echo "($DD missing: the decoder runs on scikit-image's astronaut, not the paper's image)"; DD=astronaut; }
echo "\$ python bench/paper_fits.py --image $DD --nets decoder:64 decoder:128"
timeout 85 python bench/paper_fits.py --image "$DD" --nets decoder:64 decoder:128
echo "\$ python bench/paper_fits.py --image $DD --nets decoder:128 --sigma 30"
timeout 45 python bench/paper_fits.py --image "$DD" --nets decoder:128 --sigma 30
echo "\$ python bench/paper_fits.py --image $DD --nets dip   # DIP's 29.22 dB is its paper's colour-image figure"
timeout 85 python bench/paper_fits.py --image "$DD" --nets dip

echo "== CT (issue 15): batched SIRT through ASTRA's matrix on CUDA, and the hybrid's cost over SIRT-only (goal <= 3x)"
echo "\$ python bench/ct_speed.py --matrices .photos/ct --device cuda"
timeout 30 python bench/ct_speed.py --matrices "$RECONLAB_PHOTO_DIR/ct" --device cuda

echo "== adversarial denoising (issue 13): N2N U-Net training images/s on the GPU (bare loop; Ray Train's ratio is measured on CPU)"
echo "\$ python bench/n2n_throughput.py --synthetic --no-ray --epoch-images 8192 --epochs 3"
timeout 25 python bench/n2n_throughput.py --synthetic --no-ray --epoch-images 8192 --epochs 3
