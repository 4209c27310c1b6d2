"""Layer choice with hysteresis: down at once, up only after the estimate held a margin for the hold time."""

from __future__ import annotations

import pytest
from callsd.core.video import Layer, LayerChoice, LayerPolicy, choose_layer

LAYERS = (Layer(rid="q", bitrate=150_000), Layer(rid="h", bitrate=500_000), Layer(rid="f", bitrate=1_500_000))
POLICY = LayerPolicy(up_margin=1.2, hold_ms=3000)


def test_first_choice_is_the_highest_layer_that_fits() -> None:
    assert choose_layer(2_000_000, LAYERS, None, 0, POLICY).index == 2
    assert choose_layer(600_000, LAYERS, None, 0, POLICY).index == 1
    assert choose_layer(10_000, LAYERS, None, 0, POLICY).index == 0  # nothing fits: the lowest layer


def test_down_at_once() -> None:
    assert choose_layer(400_000, LAYERS, LayerChoice(index=2), 0, POLICY) == LayerChoice(index=0)


def test_up_only_after_the_hold_and_with_the_margin() -> None:
    choice = LayerChoice(index=0)
    choice = choose_layer(550_000, LAYERS, choice, 0, POLICY)  # above 500k but not 600k: no upgrade pending
    assert choice == LayerChoice(index=0)
    choice = choose_layer(700_000, LAYERS, choice, 1000, POLICY)
    assert choice == LayerChoice(index=0, up_since_ms=1000)
    choice = choose_layer(700_000, LAYERS, choice, 3999, POLICY)
    assert choice.index == 0
    choice = choose_layer(700_000, LAYERS, choice, 4000, POLICY)
    assert choice == LayerChoice(index=1)


def test_a_dip_resets_the_hold() -> None:
    choice = choose_layer(700_000, LAYERS, LayerChoice(index=0), 0, POLICY)
    choice = choose_layer(300_000, LAYERS, choice, 2000, POLICY)
    assert choice == LayerChoice(index=0)
    choice = choose_layer(700_000, LAYERS, choice, 2500, POLICY)
    assert choose_layer(700_000, LAYERS, choice, 5000, POLICY).index == 0
    assert choose_layer(700_000, LAYERS, choice, 5500, POLICY).index == 1


def test_bad_layer_lists_are_refused() -> None:
    with pytest.raises(ValueError):
        choose_layer(1, (), None, 0)
    with pytest.raises(ValueError):
        choose_layer(1, tuple(reversed(LAYERS)), None, 0)
