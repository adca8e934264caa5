"""Every shipped weights file has a model card in docs/model_cards.md, naming its file or network and its SHA-256."""

from pathlib import Path

from cldyn.weights import read_manifest

CARDS = Path(__file__).resolve().parents[2] / "docs" / "model_cards.md"


def test_every_shipped_file_has_a_card_with_its_sha256():
    text = CARDS.read_text()
    missing = []
    for name, entry in read_manifest().items():
        network = name.removesuffix(".safetensors").removeprefix("task_")
        named = f"`{name}`" in text or f"`{network}`" in text or f"`{name.removesuffix('.safetensors')}`" in text
        if not named or entry["sha256"][:8] not in text:
            missing.append(name)
    assert missing == [], f"no model card (file or network name, and SHA-256 prefix) for {missing}"
