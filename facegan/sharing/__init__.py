"""Generators to and from elsewhere: the ones shipped in the package (pretrained), the Hugging Face
Hub layout (hub) and ONNX export (onnx)."""
