import pytest

from mechscope.errors import MechscopeError
from mechscope.transformer.tables import circuit_table, composition_table, head_table
from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer


def _model(n_layers):
    return AttnOnlyTransformer(AttnOnlyConfig(n_layers=n_layers, d_model=16, n_heads=2, d_head=4, n_ctx=11,
                                              d_vocab=30), seed=0)


def test_composition_refuses_an_unknown_kind_and_a_one_layer_model():
    with pytest.raises(MechscopeError, match="q, k or v"):
        composition_table(_model(2), "x")
    with pytest.raises(MechscopeError, match="one layer"):
        composition_table(_model(1), "k")


def test_tables_name_heads_and_columns():
    t = head_table(_model(1))
    assert [r["head"] for r in t.rows] == ["0.0", "0.1"] and set(t.scores) == {"previous_token", "duplicate_token",
                                                                           "induction", "copying"}
    qk = circuit_table(_model(1), "qk", 0, 1, top=2)
    assert qk["head"] == "0.1" and set(qk["top"][0]) == {"query", "key", "value"} and "copying_score" not in qk
    with pytest.raises(MechscopeError, match="'ov' or 'qk'"):
        circuit_table(_model(1), "vo", 0, 0)
