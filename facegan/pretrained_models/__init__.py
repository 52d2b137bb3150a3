"""Data package: shipped generator weights (*.safetensors) and their model cards (*.md)."""
