"""The run machinery: the sweep over a plan's chains, the executors that run cells (in process,
isolated, Ray, Slurm), the runner and its measurements, and the run folder the records go to."""
