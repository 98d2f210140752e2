"""The generated tasks have the answers they claim."""

import pytest
import torch

from dlbook.sequences.tasks import (
    LengthCurriculum, adding_problem, copy_task, delay_stream, pattern_task, sine_task, sort_task, word_end_tags,
)


def test_adding_problem_target_is_the_sum_of_the_marked_values():
    x, y = adding_problem(50, 12, seed=3)
    assert x.shape == (50, 12, 2)
    assert (x[..., 1].sum(1) == 2).all()
    assert (x[:, :6, 1].sum(1) == 1).all()  # one marker per half
    torch.testing.assert_close((x[..., 0] * x[..., 1]).sum(1), y)
    torch.testing.assert_close(adding_problem(50, 12, seed=3)[1], y)  # seeded


def test_copy_task_targets_the_first_symbols_at_the_end():
    x, y = copy_task(10, delay=5, k=3, symbols=8)
    assert x.shape == y.shape == (10, 11)
    assert (y[:, -3:] == x[:, :3]).all()
    assert (y[:, :-3] == -100).all()
    assert (x[:, 8] == 9).all()  # the go marker after k + delay steps


def test_delay_stream_and_pattern_and_sort():
    x, y = delay_stream(30, 4)
    assert (y[4:] == x[:-4]).all() and (y[:4] == -100).all()
    x, y = pattern_task(200, 15, seed=1)
    has = ((x[:, :-1] == 3) & (x[:, 1:] == 7)).any(1).long()
    assert (has == y).all() and y.sum() == 100
    src, tgt = sort_task(20, 6)
    assert (tgt[:, :-1] == src.sort(1).values).all() and (tgt[:, -1] == 11).all()
    seed, wave = sine_task(4, 9)
    torch.testing.assert_close(wave[:, 0, 0], torch.sin(2 * torch.pi * seed[:, 1]))


def test_word_end_tags():
    assert word_end_tags("to be, or").tolist() == [0, 1, 0, 0, 1, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="text"):
        word_end_tags("")


def test_length_curriculum_covers_its_range_and_is_seeded():
    cur = LengthCurriculum(adding_problem, 5, 40, batch_size=3, steps=60, seed=1)
    lengths = [x.shape[1] for x, _ in cur]
    assert len(lengths) == 60 and min(lengths) >= 5 and max(lengths) <= 40
    assert min(lengths) < 10 and max(lengths) > 25
    assert lengths == [x.shape[1] for x, _ in cur]
    with pytest.raises(ValueError, match="high"):
        LengthCurriculum(adding_problem, 10, 5, batch_size=3, steps=2)


@pytest.mark.parametrize("call, name", [
    (lambda: adding_problem(0, 10), "n"), (lambda: adding_problem(5, 1), "length"),
    (lambda: copy_task(5, delay=-1), "delay"), (lambda: pattern_task(5, 10, pattern=(3, 12)), "pattern"),
    (lambda: delay_stream(3, 5), "n"),
])
def test_bad_sizes_are_clear_errors(call, name):
    with pytest.raises(ValueError, match=name):
        call()
