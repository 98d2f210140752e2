"""Scientific machine learning: physics-informed networks, Koopman operators and their combination."""
