"""Foundations every other package stands on, torch-free: the error base, argparse types, the
device and thread choice, progress steps of long work."""
