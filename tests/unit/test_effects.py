import pytest
import torch

import interp_audit as ia


@pytest.fixture
def eff(handbuilt, handbuilt_pairs):
    return ia.patch(handbuilt, handbuilt_pairs, sites="heads")


def test_labels_lookup_top_and_frame(eff):
    assert eff.dims == ("layer", "head")
    assert eff.components == ["L0H0", "L0H1", "L1H0", "L1H1"]
    assert eff["L1H0"] == pytest.approx(0.75)
    assert eff.top(2) == [("L0H0", pytest.approx(1.0)), ("L1H0", pytest.approx(0.75))]
    frame = eff.to_frame()
    assert list(frame.columns) == ["layer", "head", "component", "value"]
    assert frame.set_index("component").loc["L1H0", "value"] == pytest.approx(0.75)
    assert tuple(eff.per_example.shape) == (2, 2, 3)
    with pytest.raises(ia.SiteError, match="no component 'L1H9'"):
        eff["L1H9"]


def test_plot_and_html(eff, handbuilt, handbuilt_pairs):
    fig = eff.plot()
    assert fig.data[0].type == "heatmap"
    assert list(fig.data[0].z[1]) == pytest.approx([0.75, 0.0])
    assert fig.layout.xaxis.title.text == "head" and fig.layout.yaxis.title.text == "layer"
    assert "L0H0" in eff._repr_html_()
    pos = ia.patch(handbuilt, handbuilt_pairs, sites="resid_pre", per_position=True)
    # position 2 holds x in two pairs and y in one: the label names both
    assert list(pos.plot().data[0].x) == ["0 <bos>", "1 A", "2 x|y", "3 ->"]
    bars = ia.patch(handbuilt, handbuilt_pairs, sites=["L0H0", "L1H0"]).plot()
    assert bars.data[0].type == "bar" and list(bars.data[0].y) == pytest.approx([1.0, 0.75])


def test_save_load_round_trip(eff, tmp_path):
    eff.save(tmp_path / "e")
    back = ia.Effects.load(tmp_path / "e")
    assert torch.equal(back.values, eff.values) and back.components == eff.components
    assert back.baseline == eff.baseline and back.dims == eff.dims
    assert torch.equal(back.per_example, eff.per_example)
