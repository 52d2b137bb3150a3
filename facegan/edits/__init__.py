"""Attribute edits: directions in a generator's latent space that make a face smile, age, go blond …"""
