#!/usr/bin/env bash
# Every GPU figure of the README in one run (under 8 minutes on one GPU), for
# a session that is lent a GPU machine. It needs only torch (and numpy) there:
# the device image has no Ray, MLflow or Optuna, and Ray's wheel is too big to
# carry, so what Ray would do is measured with plain processes.
#   bash bench/gpu_checks.sh            # prints each figure with the command that made it
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/platform${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print(torch.cuda.get_device_name(0), torch.__version__)"

echo "== untrained networks: fitting iterations/s per image size (issue 16)"
echo "\$ python bench/untrained_fit.py --sizes 128 256 512 --iterations 50 --repeats 3"
timeout 300 python bench/untrained_fit.py --sizes 128 256 512 --iterations 50 --repeats 3
