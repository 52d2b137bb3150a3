"""The training-throughput benchmark behind `bench/throughput.py`, one job per module.

reference   the PyTorch DCGAN example's recipe (row a; also what tests/training/test_step.py checks against)
runners     the timed workloads: reference, facegan training (via facegan.training.build), G inference
timing      warm-up, timed windows, interleaved rounds, the table's rows
screening   candidate speed settings probed, the fastest kept warm (rows c, gen-fastest)
flops       FLOPs per image (torch's FlopCounterMode)
memory      peak host RSS while training, in a fresh process
env         device, versions, load and peak FLOP/s
staging     the same images packed for facegan and as an ImageFolder for the reference
profiling   torch.profiler tables of one step
report      the printed report
session     one run's rows: built, warmed up, timed; the memory runs
cli         the command line
"""
