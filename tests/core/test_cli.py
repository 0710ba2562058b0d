"""The command line's progress bars (tqdm): on a terminal a bar with the time left runs below the
table and is gone at the end; in a log file there is none, only the table. With the linearized twin,
`train` ends with each model against its twin."""

import io

from kalign_core import ExperimentConfig, run_experiment
from kalign_core.cli import EpochTable, main


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def table_and_bar(err) -> tuple[str, str]:
    config = ExperimentConfig(width=16, epochs=2, probe_size=20, source="sample", device="cpu")
    out = io.StringIO()
    table = EpochTable(config, out=out, err=err)
    try:
        run_experiment(config, on_epoch=table)
    finally:
        table.close()
    return out.getvalue(), err.getvalue()


def test_a_terminal_gets_a_bar_below_the_table():
    out, err = table_and_bar(Terminal())
    assert [line.split("│")[0].strip() for line in out.splitlines()[1:]] == ["0", "1", "2"]
    assert "0/2" in err and "epoch/s" in err  # drawn (later states only as often as tqdm redraws)
    assert err.endswith(" \r")  # and wiped at the end


def test_a_log_file_gets_only_the_table():
    out, err = table_and_bar(io.StringIO())
    assert len(out.splitlines()) == 4 and err == ""  # the header and epochs 0 to 2


def test_train_with_the_linearized_twin_ends_with_each_model_against_its_twin(capsys):
    args = ["train", "--source", "sample", "--width", "16", "--epochs", "2", "--probe-size", "20", "--device", "cpu"]
    assert main([*args, "--linearized-twin"]) == 0
    lines = capsys.readouterr().out.splitlines()
    result = run_experiment(
        ExperimentConfig(width=16, epochs=2, probe_size=20, source="sample", device="cpu", linearized_twin=True)
    )
    for name, line in zip(("slow", "regular"), lines[-2:]):
        last = result.history[name][-1]
        assert line == (
            f"{name} vs its linearized twin: gap {last.linear_gap:.4f}, test error {last.test_error:.2f}% against "
            f"the twin's {last.linear_test_error:.2f}%"
        )
    assert main(args) == 0
    assert "twin" not in capsys.readouterr().out
