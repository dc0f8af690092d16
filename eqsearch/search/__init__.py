"""The search problem and what both solver families share (import it from eqsearch.problem)."""
