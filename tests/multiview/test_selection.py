"""View selection: BigStitcher-Spark's flags on the CLI, the flows' `views` parameter, AND semantics."""

from __future__ import annotations

import pytest

from flows.params import resolve
from rhapso_cli.main import _params, build_parser
from rhapso_core.pipeline.view_selection import ViewSelection, ViewSelectionError, select_views
from rhapso_core.spimdata import load_xml


@pytest.mark.parametrize("command", ["align", "fuse", "stitch", "detect", "match", "solve"])
def test_cli_flags_become_view_parameters(command):
    argv = [command, "in.xml", "--out", "o", "--channelId", "0,1", "--illumination-id", "1", "--tileId", "2",
            "--angleId", "0", "--timepointId", "3"]
    p = _params(build_parser().parse_args(argv))
    assert p.views == ViewSelection(channels=[0, 1], illuminations=[1], tiles=[2], angles=[0], timepoints=[3])


def test_cli_refuses_non_integer_ids(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fuse", "in.xml", "--out", "o", "--channelId", "a"])
    assert "comma-separated integer ids" in capsys.readouterr().err


def test_flow_parameter_overrides_file_and_params():
    p = resolve({"views": {"tiles": [0]}}, "deployments/presets/dev.yml", None, {"channels": [1]})
    assert p.views.channels == [1] and p.views.tiles is None
    assert resolve(None, None, ["views.timepoints=[0]"], ViewSelection(channels=[1])).views.timepoints == [0]


def test_selection_is_and_combined(multiview_dataset):
    sd = load_xml(str(multiview_dataset.xml))
    chosen = select_views(sd, ViewSelection(channels=[1], illuminations=[0], timepoints=[1]))
    assert len(chosen) == 2 and all(v[0] == 1 for v in chosen)
    assert {(sd.setup_of(v).channel, sd.setup_of(v).illumination) for v in chosen} == {(1, 0)}
    assert len(select_views(sd, ViewSelection(tiles=[1]))) == 8
    with pytest.raises(ViewSelectionError, match=r"dataset.xml: no view matches the selection \(tiles=\[5\]\)"):
        select_views(sd, ViewSelection(tiles=[5]))
