"""Where and how fast the networks run: the device (device) and the speed settings resolved for it:
precision, memory layout, torch.compile, the inference wrapper (perf)."""
