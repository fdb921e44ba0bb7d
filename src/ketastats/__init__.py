"""ketastats: illness effects on IV ketamine outcomes, rigorously and reproducibly."""
