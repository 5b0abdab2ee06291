"""The README's configuration reference lists every setting there is."""

from pathlib import Path

from edgeinf.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented() -> None:
    text = README.read_text()
    missing = [name for name in Settings.model_fields if f"| `{name}` |" not in text]
    assert not missing, f"add these settings to the README's configuration table: {missing}"
