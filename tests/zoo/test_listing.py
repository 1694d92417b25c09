from mechscope.zoo.listing import layer_rows, model_rows


def test_model_rows_offer_random_weights_for_every_model():
    rows = model_rows()
    assert all("random" in r["weights"] for r in rows)
    assert next(r for r in rows if r["name"] == "attn-only-2l")["input"][0].endswith("tokens")


def test_layer_rows_of_a_language_model_are_its_hook_points():
    listing = layer_rows("attn-only-2l")
    assert listing.kind == "tokens" and listing.positions > 0
    names = [r["name"] for r in listing.rows]
    assert "blocks.1.attn.hook_pattern" in names
    assert next(r for r in listing.rows if r["name"] == "blocks.1.attn.hook_pattern")["shape"][-1] == listing.positions
