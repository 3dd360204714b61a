"""Every setting is documented: in ``run --help`` and in the README's configuration table."""

from __future__ import annotations

from pathlib import Path

from processor import settings_table
from processor.cli_args import build_parser
from processor.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_a_description() -> None:
    """No setting is left to be guessed from its name."""
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []


def test_run_help_documents_every_setting_with_its_variable() -> None:
    """`ncd-processor run --help` lists each setting's flag and environment variable."""
    parser = build_parser()
    run = next(
        a
        for a in parser._subparsers._group_actions[0].choices.items()
        if a[0] == "run"  # type: ignore[union-attr]
    )[1]
    text = " ".join(run.format_help().split())
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in text
        assert f"NCD_{name.upper()}" in text


def test_readme_table_is_generated_from_the_settings() -> None:
    """The README's table equals `python -m processor.settings_table` (run it to update)."""
    assert settings_table.embedded_in(README) == settings_table.render()


def test_secret_defaults_are_not_shown() -> None:
    """The table shows the password's default as a placeholder, never a value."""
    row = next(line for line in settings_table.render().splitlines() if "SASL_PASSWORD" in line)
    assert "(none)" in row or "(secret)" in row
