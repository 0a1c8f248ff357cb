"""The DCGAN trainer: config, models, data, the training loop, checkpoints and the worker process.

Importing it sets `OMP_WAIT_POLICY=PASSIVE` (unless set) for the processes that train (`python -m trainer.worker`,
`trainer.rank`, `trainer.sampler`: the package is imported before torch, which reads it when OpenMP starts). Training
on a CPU shares the cores with its side threads (trainer/sidework.py) and, often, other runs: with OpenMP's default
the training threads spin at every barrier while one of them is descheduled, so a side thread at nice 10 using 8% of
a core cut training to 0.26 of its rate; with PASSIVE they sleep and the same thread cost 0-3%. A whole quick run kept
0.94-0.99 of its step's rate instead of 0.43 (FID's budget excluded; bench/side_cost.py, bench/run_efficiency.py,
docs/quality.md), and the step alone is no slower (724 against 709 images/s).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
