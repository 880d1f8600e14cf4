"""Corpora and their tokenized train/validation/test splits."""
