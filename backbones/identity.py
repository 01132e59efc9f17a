"""How a weights source is named in results and keyed in caches: light (no TensorFlow), so a resume
check can compare a finished run's weights with the configured ones before anything heavy is imported."""

from pathlib import Path

from benchmark.files import file_sha256

IMAGENET_UNAVAILABLE = "random (imagenet unavailable)"  # weights_used of a run whose download failed


def weights_id_of_file(path: Path) -> str | None:
    """What caches and completed runs key a weights file on: its content, not its name."""
    return f"file-{file_sha256(path)}" if path.is_file() else None
