"""Fusion of files and tensors (plain and task-customised), tiling, ONNX export, the demo."""
