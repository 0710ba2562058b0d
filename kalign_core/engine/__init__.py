"""The one training engine: a block of trials (slow and regular model pairs) trained in lockstep,
measured every epoch; a single run is a block of one trial."""
