"""A user's mistake on the command line is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixlab.cli import main


@pytest.mark.parametrize("extra", [[], ["--spike-factor", "0"], ["--spike-factor", "-1"], ["--tokens", "0"]])
def test_proxy_train_misuse_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           extra: list[str]) -> None:
    run = tmp_path / "no_such_run"
    assert main(["proxy", "train", str(run), "--config", "tiny", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert not run.exists()


def test_proxy_train_existing_checkpoints_without_resume(tiny_mixture: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "proxy"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "step-000004.pt").write_bytes(b"not really")
    assert main(["proxy", "train", str(tiny_mixture), "--config", "tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--resume" in err and "\n" not in err
    assert sorted(p.name for p in out.rglob("*")) == ["checkpoints", "step-000004.pt"]


def test_version_and_self_describing_help(capsys: pytest.CaptureFixture[str]) -> None:
    from mixlab import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"mixlab {__version__}"
    with pytest.raises(SystemExit):
        main(["filters", "--help"])
    out = capsys.readouterr().out
    assert "document filters" in out and "corpus stages" in out and "named chains" in out
