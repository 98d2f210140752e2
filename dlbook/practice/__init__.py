"""The practice of training: checkpoints, resumption, crash safety."""
