"""Attribute edits: finding directions in a generator's latent space that make a face smile, age, go
blond … (supervised, unsupervised, conditional) and measuring them. Applying a direction to faces, and
the file the directions ship in, are facegan.sampling.directions and facegan.sampling.render."""
