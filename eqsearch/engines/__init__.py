"""NSGA-II engines over a SearchProblem."""
