"""The doctor: a failing run's numbers -> findings (evidence, mechanism, prescription) -> a search space."""
