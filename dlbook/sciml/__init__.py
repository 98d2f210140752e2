"""Scientific machine learning: simulators, DMD and Koopman operators, physics-informed networks."""
