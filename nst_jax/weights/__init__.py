"""VGG weights: the strict .npz format, converters from published checkpoints, known sources and fetching."""
