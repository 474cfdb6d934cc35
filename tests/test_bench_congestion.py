"""bench/congestion.py: router2's per-net congestion heatmaps summed per block and signal."""

import pytest


@pytest.fixture(scope="module")
def congestion(bench_module):
    return bench_module("congestion")


@pytest.mark.parametrize("name,block,signal", [
    ("core.pe1.arith.mul_w_TRELLIS_FF_Q_10_DI_LUT4_Z_D_PFUMX_Z_C0[3]", "pe*.arith", "mul_w"),
    ("core.pe12.layer__codebook[13][9]", "pe*", "layer__codebook"),
    ("core.ccu.lnzd.one_LUT4_C_Z_LUT4_Z_D_CCU2C_S0_CIN", "ccu.lnzd", "one"),
    ("core.pe0.accum.bias.0.0_DO[2]", "pe*.accum.bias.0", "0_DO"),   # a block RAM output
    ("rst$TRELLIS_IO_IN", "(top)", "rst"),
    ("core.glue14.host__w_en_LUT4_A_2_Z", "glue*", "host__w_en"),
])
def test_split_net(congestion, name, block, signal):
    assert congestion.split_net(name) == (block, signal)


def test_summary_of_the_last_iteration(congestion, tmp_path, capsys):
    (tmp_path / "heat_congestion_by_net_1.csv").write_text("core.pe0.arith.mul_w[0],50\n")
    (tmp_path / "heat_congestion_by_net_12.csv").write_text(
        "core.pe0.arith.mul_w[0],3\n"
        "core.pe7.arith.mul_w_LUT4_Z[1],5\n"
        "core.ccu.lnzd.one,2\n"
        "bus__r_data[3]$TRELLIS_IO_OUT,0\n")
    assert congestion.main([str(tmp_path / "heat"), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "router2 iteration 12: 10 overused wire uses" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("pe*", "ccu"))]
    assert ["pe*.arith", "8", "80.0%"] in rows
    assert ["ccu.lnzd", "2", "20.0%"] in rows
    assert ["pe*.arith.mul_w", "8", "80.0%"] in rows


def test_missing_heatmaps_are_a_clear_error(congestion, tmp_path, capsys):
    assert congestion.main([str(tmp_path / "heat")]) == 2
    err = capsys.readouterr().err
    assert "no heat_congestion_by_net_<iteration>.csv" in err and "--router2-heatmap" in err
    (tmp_path / "heat_congestion_by_net_3.csv").write_text("core.ccu.busy,1\n")
    assert congestion.main([str(tmp_path / "heat"), "--iteration", "9"]) == 2
    assert "iteration 9 has no heatmap; written: 3..3" in capsys.readouterr().err
