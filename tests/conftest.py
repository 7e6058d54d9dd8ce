"""Shared test setup."""
import torch

# Test inputs are tiny: one thread is faster than several fighting over busy cores
# (a 2-thread efficientnet forward took 2 s instead of 20 ms beside a training job).
torch.set_num_threads(1)
