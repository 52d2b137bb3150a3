"""`python -m bench.gpu_check --out DIR`: one prepared command that turns GPU minutes into measured rows.

It runs every row (the seeds' reference recipe, `facegan train`'s default, the fastest combination
found, r3gan and dcgan-plus, generation and the page's latency, 2-rank torchrun where there are two
GPUs) in a child process of its own with a time limit taken from a budget (`--budget-s`, 480 s by
default), and rewrites `DIR/gpu-check.json` and `DIR/gpu-check.md` after every row, so a run cut short
still leaves every finished row. `--smoke` runs the same rows on the CPU at tiny sizes (CI runs it).

Modules: `plan` (the rows and the budget), `worker` (one row, in its child process), `report` (the
JSON document and its Markdown table), `cli` (staging the data, running the plan).
"""
