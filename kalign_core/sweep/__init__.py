"""Sweeps: a grid of settings (the spec), the backends that train its trials, the runner that saves
them as a resumable folder, and the width lab's lines against width."""
