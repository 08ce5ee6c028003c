"""VGG weights: the strict .npz format, converters from published checkpoints, known sources and fetching; and
finding the project's trained decoder files by name."""
