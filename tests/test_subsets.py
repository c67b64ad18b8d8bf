"""--train_images / --val_images: fixed class-balanced subsets of the training and validation splits."""

import numpy as np
import pytest

from cnas.data import loader_labels
from cnas.errors import ConfigError
from cnas.evaluation import EvalSettings, load_run_data, setup
from cnas.finetune import FINETUNE_RECIPE, RECIPE_KEYS

ARCH = {"ks": [3] * 10, "e": [3] * 10, "d": [2] * 5, "r": 32}


def _run(**kw):
    run = setup(ARCH, EvalSettings(epochs=1, **kw))
    load_run_data(run)
    return run


def test_subsets_are_balanced_fixed_and_shuffled_by_the_seed():
    full = _run()
    run = _run(train_images=200, val_images=100, seed=1)
    assert len(run.loaders.train.dataset) == 200 and len(run.loaders.val.dataset) == 100
    assert np.bincount(loader_labels(run.loaders.val)).tolist() == [10] * 10
    assert np.bincount(loader_labels(run.loaders.train)).tolist() == [20] * 10
    assert len(run.loaders.test.dataset) == len(full.loaders.test.dataset)  # the test split is never cut
    other = _run(train_images=200, val_images=100, seed=2)
    # the same images whatever the seed; the seed only changes the batch order
    assert np.array_equal(run.loaders.val.dataset.images.numpy(), other.loaders.val.dataset.images.numpy())
    assert np.array_equal(np.sort(loader_labels(run.loaders.train)), np.sort(loader_labels(other.loaders.train)))
    first = [y.tolist() for _, y in run.loaders.train]
    assert first != [y.tolist() for _, y in other.loaders.train]
    assert first == [y.tolist() for _, y in _run(train_images=200, val_images=100, seed=1).loaders.train]


def test_zero_or_more_than_the_split_means_the_whole_split():
    full = _run()
    run = _run(train_images=10 ** 6, val_images=0)
    assert len(run.loaders.train.dataset) == len(full.loaders.train.dataset)
    assert len(run.loaders.val.dataset) == len(full.loaders.val.dataset)


def test_negative_counts_are_refused():
    with pytest.raises(ConfigError, match="val_images"):
        EvalSettings(val_images=-1).validate()


def test_the_finetune_recipe_uses_the_whole_splits():
    assert FINETUNE_RECIPE.train_images == 0 and FINETUNE_RECIPE.val_images == 0
    assert {"train_images", "val_images"} <= RECIPE_KEYS  # a search's subsets never reach the fine-tune
