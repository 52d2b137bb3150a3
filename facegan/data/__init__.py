"""Training data: image sources listed and decoded, packed once into a dataset folder (prepare), read
back as batches (dataset), procedurally drawn faces (synthetic), attribute labels, augmentation."""
