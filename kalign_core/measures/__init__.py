"""What kalign measures of a network: centered alignment, the tangent kernel, per-epoch tracking,
permutation null bands and kernel machines. Each takes tensors and returns numbers; none trains."""
