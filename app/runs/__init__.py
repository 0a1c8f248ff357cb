"""What runs: the supervisor (queue, placement, the lifecycle of each attempt), the executors that start a worker on
this machine or as a Slurm job, the sweeps and Optuna studies that make runs, and the hub that pushes changes to the
open pages. It imports app.storage, app.settings and app.gpus, never app.web."""
