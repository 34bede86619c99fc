"""Datasets: the base class, the sources (CelebA, SynthFaces, MNIST), the names table and an
experiment's inputs from its saved config."""
