"""Synthetic CT pulmonary angiography: phantoms, implanted emboli, hybrid real-anatomy cases, cohorts."""
