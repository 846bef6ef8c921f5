#!/usr/bin/env bash
# Every GPU figure of the README in one run (each step capped, 7.3 minutes at most), for
# a session that is lent a GPU machine. It needs only torch (and numpy) there:
# the device image has no Ray, MLflow, Optuna or scikit-image, and Ray's wheel
# is too big to carry, so what Ray would do is measured with plain processes.
# The photographs travel as arrays; once, here, before the run:
#   echo /.photos/ >> .git/info/exclude; python bench/paper_fits.py --save-photos .photos
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
echo "\$ python bench/paper_fits.py --nets decoder:64 decoder:128 dip"
timeout 200 python bench/paper_fits.py --nets decoder:64 decoder:128 dip
echo "\$ python bench/paper_fits.py --nets decoder:128 --sigma 30"
timeout 45 python bench/paper_fits.py --nets decoder:128 --sigma 30
