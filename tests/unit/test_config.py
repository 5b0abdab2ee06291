"""Settings come from the config file, then the environment, then flags."""

from pathlib import Path

import pytest

from edgeinf.config import load_settings
from edgeinf.errors import ConfigError


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("EDGEINF_CONFIG", str(path))
    for var in ("EDGEINF_N_CTX", "EDGEINF_THREADS", "EDGEINF_DEFAULT_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return path


def test_environment_overrides_file_and_flags_override_both(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text('n_ctx = 1024\nthreads = 3\ndefault_model = "from-file"\n')
    assert load_settings().n_ctx == 1024
    monkeypatch.setenv("EDGEINF_N_CTX", "2048")
    settings = load_settings(threads=1)
    assert (settings.n_ctx, settings.threads, settings.default_model) == (2048, 1, "from-file")
    assert load_settings(n_ctx=None).n_ctx == 2048  # an absent flag leaves the others alone


def test_invalid_value_names_the_setting_and_where_to_fix_it(config_file: Path) -> None:
    config_file.write_text("n_ctx = -4\n")
    with pytest.raises(ConfigError, match=r"n_ctx.*EDGEINF_N_CTX"):
        load_settings()


def test_unknown_key_is_refused(config_file: Path) -> None:
    config_file.write_text("n_cxt = 4096\n")
    with pytest.raises(ConfigError, match="n_cxt"):
        load_settings()


def test_unreadable_toml_is_a_config_error(config_file: Path) -> None:
    config_file.write_text("n_ctx = = 3\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings()
