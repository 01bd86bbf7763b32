"""Benchmarks (`make bench`): not tests; they print figures and write results/ files."""
